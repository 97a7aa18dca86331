"""`sop status` tells a drill from a real incident: on a game day the ops manager watches both on one terminal, and a
real crisis run on compressed time (a site may run everything compressed) is no drill."""

from __future__ import annotations

import re
from typing import Any

from flows.engine.transitions import Engine


def _start(engine: Engine, brand: str, *, drill: bool) -> str:
    trigger = {"kind": "drill", "by": "li-wei"} if drill else {"kind": "manual", "by": "li-wei"}
    return engine.start("crisis-pr", {"brand": brand}, initiator="li-wei", trigger=trigger, speed=100,
                        launch=False).run_id


def test_every_status_view_marks_the_drill_and_only_it(sop: Any, site: tuple[Engine, dict[str, str]]) -> None:
    engine, env = site
    drill = _start(engine, "lumi", drill=True)
    real = _start(engine, "lumi", drill=False)  # the same subject: a drill never attaches to a real run
    assert drill != real

    long = sop("status", env=env)
    assert long.returncode == 0, long.stderr
    heads = {line.split()[1]: line for line in long.stdout.splitlines() if re.match(r"P1 \w+ crisis-pr", line)}
    assert "drill ×100" in heads[drill], heads[drill]
    assert "drill" not in heads[real] and "(speed ×100)" in heads[real], heads[real]

    short = {line.split()[1]: line for line in sop("status", "--short", env=env).stdout.splitlines()
             if line.startswith("P1 ")}
    assert re.search(rf"^P1\s+{drill}\s+drill: Crisis PR · lumi\s+running ", short[drill]), short[drill]
    assert "drill" not in short[real], short[real]

    mine = sop("status", "--for", "wang-fang", env=env)
    assert mine.returncode == 0, mine.stderr
    lines = {line.split()[1]: line for line in mine.stdout.splitlines() if line.startswith("P1 ")}
    assert "drill: Crisis PR · lumi" in lines[drill] and "drill" not in lines[real], mine.stdout
