"""The README's drill, as a newcomer types it in a fresh clone: it finishes ``done`` and calls no real system.

``sop drill traffic-surge --speed 300 --late verify`` in a copy of the repo's ``sops/`` and
``config/`` (only the two ports moved off 4200 and 8000, which other stacks on this machine may
hold): no Prefect server answers, so the command starts the embedded stack itself. Nothing
listens on the gateway, cloud or status-page ports of the shipped config (127.0.0.1:9900…): a
drill that called them would fail with "connection refused".
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

from tests.conftest import SOP_COMMAND
from tests.support import free_port

README_DRILL = ["drill", "traffic-surge", "--speed", "300", "--late", "verify"]
#: traffic-surge's http steps (lift runs: the simulated sre-lead lifts the limits)
HTTP_STEPS = {"ratelimit", "breaker", "scaleout", "status-page", "lift", "status-resolved"}


def fresh_clone(repo_root: Path, target: Path) -> Path:
    """The repo's library and config as a clone has them, the Prefect and API ports moved to free ones."""
    for name in ("sops", "config"):
        shutil.copytree(repo_root / name, target / name)
    settings = target / "config" / "settings.yaml"
    text = settings.read_text()
    api = free_port()
    for shipped, moved in (("prefect: {port: 4200}", f"prefect: {{port: {free_port()}}}"),
                           ("port: 8000}", f"port: {api}}}"), ("base_url: http://127.0.0.1:8000", f"base_url: http://127.0.0.1:{api}")):
        assert shipped in text, f"config/settings.yaml no longer says {shipped!r}: update this test"
        text = text.replace(shipped, moved)
    settings.write_text(text)
    return target


def test_the_readme_drill_finishes_done_on_a_fresh_clone(repo_root, tmp_path):
    assert " ".join(["sop", *README_DRILL]) in (repo_root / "README.md").read_text()  # the command the README shows
    clone = fresh_clone(repo_root, tmp_path / "clone")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOP_", "PREFECT_"))}  # nothing of other stacks
    env.update({"NO_COLOR": "1", "COLUMNS": "200"})

    done = subprocess.run([*SOP_COMMAND, *README_DRILL], cwd=clone, env=env, capture_output=True, text=True,
                          timeout=300)

    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    run_id = re.search(r"drill of run (\w+): done", out)
    assert run_id, out
    for step in HTTP_STEPS:  # the timeline shows when each automated step's task began (the executor's latency)
        assert re.search(rf"\+\d+:\d\d:\d\d {re.escape(step)}\s+started", out), out
    assert re.search(r"│ verify\s+│ done\s+│ \S+\s+│ 30m\s+│ \S+\s+│ missed", out), out  # --late verify: answered late
    # and only verify: at the README's speed the other responders' answers are not pushed past their dues
    missed = re.findall(r"^│ (\S+)\s+│[^│\n]*│[^│\n]*│[^│\n]*│[^│\n]*│ missed", out, re.M)
    assert missed == ["verify"], out
    with sqlite3.connect(clone / "var" / "ledger.db") as db:
        rows = db.execute("SELECT kind, step_id, data FROM records WHERE run_id = ?", (run_id.group(1),)).fetchall()
    simulated = {step: json.loads(data) for kind, step, data in rows if kind == "step_simulated"}
    calls = {step: said["request"]["url"] for step, said in simulated.items() if "request" in said}
    assert set(calls) == HTTP_STEPS  # recorded with the request that would have been sent…
    assert all(url.startswith("http://127.0.0.1:99") for url in calls.values())  # …to the shipped config's systems
    # and the customers were not texted: the messages to them are recorded, not sent
    told = {step: said["message"]["to"] for step, said in simulated.items() if "message" in said}
    assert told["sms-users"] == ["channel users-sms"] and told["push-users"] == ["channel users-push"], told
    assert not (clone / "var" / "inbox" / "users-sms.jsonl").exists()
    assert not [step for kind, step, _ in rows if kind in ("step_attempt_failed", "step_failed")]
    # its end is in a checkpoint once it stops (the processes it started stopped with it): cutting the drill's last
    # records off the ledger is caught, with nothing more written after it (docs/audit.md, "The window")
    verified = subprocess.run([*SOP_COMMAND, "audit", "verify", "--json"], cwd=clone, env=env, capture_output=True,
                              text=True, timeout=120)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["past_head"] == 0, verified.stdout
