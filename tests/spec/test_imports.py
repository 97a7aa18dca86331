"""The SOP language is a layer of its own: loading and checking SOPs imports nothing that runs them.

``flows/spec.py`` promises it for the model; the loader, the checks and the library keep it too.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO_ROOT

LANGUAGE = ("flows.spec", "flows.loader", "flows.checks", "flows.library")
RUNTIME = ("prefect", "fastapi", "apprise", "sqlalchemy")


def test_the_language_modules_load_no_runtime_package() -> None:
    # a fresh interpreter: this test process has long imported everything
    code = (
        "import json, sys\n"
        + "".join(f"import {module}\n" for module in LANGUAGE)
        + "print(json.dumps(sorted(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout))
    assert set(LANGUAGE) <= loaded
    assert sorted(name for name in loaded if name.split(".")[0] in RUNTIME) == []
