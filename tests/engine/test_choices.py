"""One of a form's choices, as people read it and as programs read it: a responder picks "Rumour or fake news" (or
types it), the ledger records ``rumour_or_fake``, every ``when`` compares the id, and every page, message and audit
line a person reads says the label."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flows.engine.view import variables
from flows.language.actors import Actor
from flows.language.steps import KINDS, StepContext
from notifications import read_inbox
from tests.engine.conftest import local_engine_of, wait_for

ASSESSED = ["-f", "severity=HIGH", "-f", "category=rumour OR fake news", "-f", "topic=a fake recall notice",
            "-f", "platforms=weibo", "-f", "trend=Rising", "-f", "kol_involved=no"]


@pytest.fixture
def crisis(repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An engine (no Prefect) on the library's crisis-pr (and the review it follows up with), its own SQLite ledger
    and inbox."""
    sops = {name: (repo_root / "sops" / f"{name}.yaml").read_text() for name in ("crisis-pr", "post-incident-review")}
    yield from local_engine_of(repo_root, tmp_path / "site", monkeypatch, sops)


def inbox(engine: Any, person: str) -> list[dict[str, Any]]:
    return read_inbox(person, engine.library.root / "var" / "inbox")


def test_a_choice_given_by_its_label_is_recorded_as_its_id_and_read_by_people_as_its_label(crisis: Any, sop) -> None:
    engine = crisis
    env = {"SOP_HOME": str(engine.library.root)}
    run_id = engine.start("crisis-pr", {"brand": "lumi"}, initiator="li-wei", launch=False).run_id
    engine.ask_for_help(run_id, "assess", Actor("wang-fang", via="cli"), "a second pair of eyes")  # paged: told when done

    done = sop("done", run_id, "assess", "--as", "wang-fang", *ASSESSED, "--evidence", "https://dash.example/q/1",
               env=env)
    assert done.returncode == 0, done.stderr
    view = engine.view(run_id)
    result = view.result("assess")
    assert (result["severity"], result["category"], result["trend"]) == ("high", "rumour_or_fake", "rising")  # ids
    assert view.state("tell-director") == "ready"  # its `when: severity in ['high', 'critical']` read the id

    # the notify step's message to the director, as it is sent: each choice by its label
    step = view.sop.step("tell-director")
    KINDS["notify"].execute(step, StepContext(variables=variables(view, engine.site), run_id=run_id,
                                              pager=engine.pager))  # type: ignore[misc]
    [told] = [m for m in inbox(engine, "li-wei") if m["title"].startswith("[P1] Crisis PR (")]
    # inside the SOP's sentence a choice in words reads as the id is written; a label the SOP wrote, as written
    assert told["title"] == "[P1] Crisis PR (high): a fake recall notice"
    assert "category Rumour or fake news, trend rising," in " ".join(told["body"].split())
    assert "rumour_or_fake" not in told["body"]
    # who did a step, likewise: their id to a program (a command's argument, a `when`), their name in a sentence
    from flows.language.expressions import render, render_text

    context = variables(view, engine.site)
    assert render_text("{{ steps.assess.actor }} assessed it", context) == "Wang Fang 王芳 assessed it"
    assert render("{{ steps.assess.actor }}", context) == "wang-fang"
    assert render("{{ steps.assess.actor == 'wang-fang' }}", context) == "True"

    # the page to the owner that the step is done
    owners = wait_for(lambda: [m for m in inbox(engine, "chen-jie") if m["title"].startswith("[P1] Done:")], 10,
                      "the owner's page that assess is done")
    assert "- `category`: Rumour or fake news" in owners[0]["body"] and "- `severity`: High" in owners[0]["body"]

    # the audit says what was recorded, and what its reader was shown
    shown = " ".join(sop("audit", "show", run_id, env=env).stdout.split())
    assert 'category="rumour_or_fake" (Rumour or fake news)' in shown and 'severity="high" (High)' in shown
    assert 'topic="a fake recall notice",' in shown  # free text as it is
    exported = json.loads(sop("audit", "show", run_id, "--json", env=env).stdout)
    [assess] = [s for s in exported["steps"] if s["id"] == "assess"]
    assert assess["values"]["category"] == "rumour_or_fake"  # the export keeps the id


def test_a_label_that_names_no_choice_is_refused_naming_the_choices(crisis: Any, sop) -> None:
    engine = crisis
    run_id = engine.start("crisis-pr", {"brand": "acme"}, initiator="li-wei", launch=False).run_id
    wrong = sop("done", run_id, "assess", "--as", "wang-fang", *ASSESSED[:2], "-f", "category=fake news",
                *ASSESSED[4:], "--evidence", "https://dash.example/q/1", env={"SOP_HOME": str(engine.library.root)})
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    said = " ".join(wrong.stderr.split())  # what the page calls each choice, and its id: either may be typed
    assert ("field `category`: expected one of Product quality (product_quality), Product safety (product_safety), "
            "service, delivery, Pricing or promotion (pricing_promotion), Staff conduct (staff_conduct), Rumour or "
            "fake news (rumour_or_fake), other, got 'fake news'") in said, said
    assert engine.view(run_id).state("assess") == "active"


def test_sop_run_takes_an_inputs_choice_by_its_label_too(sop, tmp_path: Path) -> None:
    # nothing listens on port 9: the inputs are checked first, whether or not the stack is up
    env = {"PREFECT_API_URL": "http://127.0.0.1:9/api", "SOP_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}"}
    review = ["run", "post-incident-review", "--as", "li-wei", "-p", "incident_run=r1", "-p", "incident_sop=crisis-pr"]
    wrong = sop(*review, "-p", "area=press", env=env)
    assert wrong.returncode == 1 and "input `area`: expected one of pr, sre, got 'press'" in wrong.stderr
    taken = sop(*review, "-p", "area=SRE", env=env)  # its label (and its id, in any case)
    assert taken.returncode == 1 and "is `sop serve` running?" in taken.stderr  # the inputs fit: then the stack


def test_a_run_about_a_choice_is_shown_by_its_label_and_still_dedups_by_its_id(repo_root: Path, tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch, sop) -> None:
    text = (repo_root / "sops" / "post-incident-review.yaml").read_text()
    text = text.replace('dedup: "{{ inputs.incident_run }}"', 'dedup: "{{ inputs.area }}"')  # one review per area
    text = text.replace("enum_labels: {pr: PR, sre: SRE}", "enum_labels: {pr: PR, sre: Site reliability}")
    engine = next(engines := local_engine_of(repo_root, tmp_path / "site", monkeypatch, {"post-incident-review": text}))
    try:
        inputs = {"incident_run": "r1", "incident_sop": "traffic-surge", "area": "sre"}
        run_id = engine.start("post-incident-review", inputs, initiator="li-wei", launch=False).run_id
        again = engine.start("post-incident-review", {**inputs, "incident_run": "r2"}, initiator="li-wei", launch=False)
        assert again.run_id == run_id  # the key is the id: a second start of the same area attaches to the run
        env = {"SOP_HOME": str(engine.library.root)}
        short = " ".join(sop("status", "--short", env=env).stdout.split())
        assert f"P4 {run_id} Post-incident review · Site reliability " in short, short
        assert f"{run_id} post-incident-review · Site reliability —" in " ".join(sop("status", env=env).stdout.split())
        [row] = json.loads(sop("status", "--json", env=env).stdout)
        assert (row["dedup_key"], row["subject"]) == ("sre", "Site reliability")  # programs read the key
    finally:
        next(engines, None)


def test_a_drills_live_message_is_marked_as_a_drill(crisis: Any, sop: Any) -> None:
    """The review's finding: a ``drill: live`` notify step (or ``sop drill --live``) sent its message as a real one,
    no ``[DRILL]``, though every page of the drill says it is one. The director must not take it for a real P1."""
    engine = crisis
    run_id = engine.start("crisis-pr", {"brand": "gd-live"}, initiator="li-wei", launch=False, speed=100,
                          trigger={"kind": "drill", "by": "li-wei"}).run_id
    done = sop("done", run_id, "assess", "--as", "wang-fang", *ASSESSED, "--evidence", "https://dash.example/q/1",
               env={"SOP_HOME": str(engine.library.root)})
    assert done.returncode == 0, done.stderr
    view = engine.view(run_id)
    KINDS["notify"].execute(view.sop.step("tell-director"), StepContext(variables=variables(view, engine.site),
                                                                         run_id=run_id, pager=engine.pager))  # type: ignore[misc]
    [told] = [m for m in inbox(engine, "li-wei") if "Crisis PR (" in m["title"]]
    assert told["title"].startswith("[DRILL] [P1] Crisis PR ("), told["title"]
    assert told["body"].startswith("**This is a drill** (time runs 100× faster)"), told["body"][:200]
