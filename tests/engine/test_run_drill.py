"""A game day from the terminal: `sop run … --drill` starts a drill that people answer (`sop drill` answers for them),
its pages say [DRILL] and it attaches to no real run. Without it, `sop run --speed 100` was the only way, and that is
a real run: no [DRILL] on its pages, and it attached to the real crisis of the same brand."""

from __future__ import annotations

import json
import uuid
from typing import Any

from notifications.inbox import read_inbox
from tests.engine.conftest import records, wait_for


def test_sop_run_drill_starts_a_drill_its_people_answer(sop: Any, project: Any, engine: Any) -> None:
    shell = {"SOP_HOME": str(project), "PREFECT_API_URL": engine.launcher.api_url}
    brand = f"gd-{uuid.uuid4().hex[:8]}"
    real = engine.start("crisis-pr", {"brand": brand}, initiator="alertmanager", launch=False).run_id  # a real crisis
    started = sop("run", "crisis-pr", "-p", f"brand={brand}", "--drill", "--speed", "100", "--as", "li-wei", env=shell)
    assert started.returncode == 0, started.stderr
    said = " ".join(started.stdout.split())
    assert "✓ started drill run " in said and " of crisis-pr at ×100; owner paged" in said, said
    drill = said.split("drill run ", 1)[1].split()[0]
    try:
        assert drill != real  # not attached to the real crisis
        [first] = records(engine, drill, "run_started")
        assert first["data"]["trigger"] == {"kind": "drill", "by": "li-wei", "via": "cli", "os_user": first["data"]["trigger"]["os_user"]}
        assert engine.view(drill).is_drill and not engine.view(real).is_drill
        inbox = project / "var" / "inbox"
        assigned = wait_for(lambda: [m for m in read_inbox("wang-fang", inbox)
                                     if drill in m["body"] and "Assigned to you" in m["title"]], 10,
                            "wang-fang's page for the drill's assess")
        assert assigned[0]["title"].startswith("[DRILL] [P1] Assigned to you: Assess scope")
        # nobody answers for her: assess goes past its 15m due (9 s at ×100) and up its ladder, still hers to do
        wait_for(lambda: [r for r in records(engine, drill, "step_overdue") if r["step_id"] == "assess"], 30,
                 "assess to go overdue in the drill")
        assert engine.view(drill).state("assess") == "active"
        assert not [r for r in records(engine, drill, "step_done") if r["step_id"] == "assess"]
        again = json.loads(sop("run", "crisis-pr", "-p", f"brand={brand}", "--drill", "--speed", "100", "--as",
                               "li-wei", "--json", env=shell).stdout)
        assert again == {"run": drill, "attached": True, "repeats": 1}  # a drill attaches to the open drill only
    finally:
        for run_id in (drill, real):
            engine.cancel(run_id, "test over", "li-wei")


def test_the_terminal_does_not_say_the_owner_was_paged_when_the_owner_is_not_in_the_drill(
        sop: Any, project: Any, engine: Any) -> None:
    """The review's finding: `sop run --drill --people …` printed "owner paged" though the owner's page was recorded
    as not sent (not in the drill)."""
    shell = {"SOP_HOME": str(project), "PREFECT_API_URL": engine.launcher.api_url}
    owner = engine.person_for(engine.library.get("crisis-pr").sop.owner)
    assert owner not in ("wang-fang", "li-wei")  # the premise: its owner is neither of the people taking part
    started = sop("run", "crisis-pr", "-p", f"brand=gd-{uuid.uuid4().hex[:8]}", "--drill", "--speed", "100",
                  "--people", "wang-fang", "--as", "li-wei", env=shell)
    assert started.returncode == 0, started.stderr
    said = " ".join(started.stdout.split())
    drill = said.split("drill run ", 1)[1].split()[0]
    try:
        assert f"its owner ({owner}) not paged: not in the drill" in said and "owner paged" not in said, said
    finally:
        engine.cancel(drill, "test over", "li-wei")
