"""Run the benchmarks: every ``bench/*_bench.py`` module's ``main()``, or only those named.

python -m bench              # all
python -m bench validate     # bench/validate_bench.py only
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def discover() -> list[str]:
    """Names of the benchmark modules (``validate`` for ``bench/validate_bench.py``), sorted."""
    return sorted(path.stem.removesuffix("_bench") for path in Path(__file__).parent.glob("*_bench.py"))


def run(names: list[str]) -> int:
    """Import and run each named benchmark; exit status 1 if a name is unknown."""
    known = discover()
    unknown = [name for name in names if name not in known]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)} (known: {', '.join(known)})", file=sys.stderr)
        return 1
    for name in names or known:
        module = importlib.import_module(f"bench.{name}_bench")
        module.main()
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
