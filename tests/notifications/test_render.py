"""Rendering: every kind has a title, a priority, the facts, local times and exactly what to do."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from notifications import (
    KINDS,
    Context,
    LevelInfo,
    Recipient,
    RecipientInfo,
    RenderError,
    SopInfo,
    render_for,
    render_message,
)
from notifications.samples import sample
from notifications.urgency import notify_type

NO_OVERRIDES = "/nonexistent/templates"


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_a_prefixed_title_and_the_facts(kind: str) -> None:
    message = render_message(kind, sample(kind), overrides_dir=NO_OVERRIDES)
    assert message.title.startswith("[P1] ")
    assert "\n" not in message.title
    assert (message.priority, message.kind) == (1, kind)
    for fact in ("Crisis PR response", "`crisis-pr`", "r-20250301-0001", "http://127.0.0.1:8000/runs/r-20250301-0001"):
        assert fact in message.body
    if kind in ("assigned", "reminder", "escalated", "overdue", "step_done"):
        assert "Assess scope and sentiment" in message.title
        assert "Due:** 2025-03-01 14:20 (Asia/Shanghai)" in message.body  # 06:20 UTC, in Wang Fang's zone


@pytest.mark.parametrize("kind", ["assigned", "reminder", "escalated", "overdue"])
def test_a_message_asking_for_work_gives_the_command_and_the_api_call(kind: str) -> None:
    body = render_message(kind, sample(kind), overrides_dir=NO_OVERRIDES).body
    link = "**Open your step:** http://127.0.0.1:8000/s/sample-link-for-wang-fang"
    assert link in body
    command = "sop done r-20250301-0001 assess --as wang-fang -f severity=<low|medium|high> --evidence <link>"
    assert body.index(link) < body.index(command)  # the responder's path first: the link, then the terminal
    assert "curl -X POST 'http://127.0.0.1:8000/v1/runs/r-20250301-0001/steps/assess'" in body
    payload = body.split("-d '", 1)[1].split("'", 1)[0]
    assert json.loads(payload) == {  # exactly what POST /v1/runs/{run}/steps/{step} accepts
        "values": {"severity": "low", "note": "<text>"},
        "evidence": ["https://link-to-your-evidence"],
    }
    assert "`severity`: one of low, medium, high — how bad it is" in body
    assert "`note`: string (optional)" in body
    assert "Read the top 50 negative mentions" in body  # the step's own instructions


@pytest.mark.parametrize("kind", ["assigned", "reminder", "escalated", "overdue", "handed_over"])
def test_on_a_phone_the_step_link_comes_first_and_the_terminal_and_curl_help_last(kind: str) -> None:
    lines = render_message(kind, sample(kind), overrides_dir=NO_OVERRIDES).body.splitlines()

    def first(start: str) -> int:
        return next(number for number, line in enumerate(lines) if line.startswith(start))

    link = first("**Open your step:** http://127.0.0.1:8000/s/sample-link-for-wang-fang")
    assert link <= 10, lines[:link + 1]  # the first screen: who, what, the one action and its link
    assert link < first("- **Priority:**") < first("### What to do") < first("### Or from a terminal")
    assert first("### Or from a terminal") < first("sop done ") < first("curl -X POST") < first("Or open the run:")


@pytest.mark.parametrize("kind", ["step_done", "run_started", "run_finished", "run_cancelled"])
def test_a_message_that_asks_nothing_says_so_and_how_to_follow(kind: str) -> None:
    body = render_message(kind, sample(kind), overrides_dir=NO_OVERRIDES).body
    assert "sop done" not in body
    assert "Nothing is asked of you. Follow the run with `sop status r-20250301-0001`" in body


def test_overdue_and_escalated_say_how_late_and_whose_step_it_is() -> None:
    escalated = render_message("escalated", sample("escalated"), overrides_dir=NO_OVERRIDES)
    assert (
        escalated.title == "[P1] Escalated to you: Assess scope and sentiment (Crisis PR response · lumi) is late, 5m overdue"
    )
    assert "is 12m late. It is assigned to pr-oncall" in escalated.body
    assert "It is with **wang-fang** (reach them at wang.fang@example.com)" in escalated.body
    assert "next on its escalation ladder (escalation stage 2)" in escalated.body  # words, not the key "level 2"
    repeat = replace(sample("escalated"), level=LevelInfo(key="3.4", message="escalated", late_by="1h"))
    body = render_message("escalated", repeat, overrides_dir=NO_OVERRIDES).body
    assert "(escalation stage 3, repeat 4)" in body and "3.4" not in body
    overdue = render_message("overdue", sample("overdue"), overrides_dir=NO_OVERRIDES)
    assert overdue.title == "[P1] Overdue: Assess scope and sentiment (Crisis PR response · lumi), 12m overdue"


def test_an_escalation_before_the_due_does_not_say_the_step_is_late() -> None:
    """crisis-pr's `legal` reaches the director at 20m of its 30m: "is late, 10m left" told her it was late."""
    early = sample("escalated")
    early = replace(early, step=replace(early.step, time_left="10m left", time_left_short="10m left", overdue=False),
                    level=LevelInfo(key="2", message="escalated"))
    message = render_message("escalated", early, overrides_dir=NO_OVERRIDES)
    assert message.title == ("[P1] Escalated to you: Assess scope and sentiment (Crisis PR response · lumi) is not done "
                             "yet, 10m left")
    assert " late" not in message.body.split("\n\n", 2)[1]  # "… is not done. It is assigned to …"
    at_due = replace(early, step=replace(early.step, time_left="due now", time_left_short="due now", overdue=True,
                                         due_now=True))
    assert render_message("escalated", at_due, overrides_dir=NO_OVERRIDES).title.endswith(" (Crisis PR response · lumi) is late")
    late = replace(early, step=replace(early.step, time_left="5m overdue", time_left_short="5m overdue", overdue=True))
    assert render_message("escalated", late, overrides_dir=NO_OVERRIDES).title.endswith(") is late, 5m overdue")


def test_run_finished_carries_the_summary_table() -> None:
    body = render_message("run_finished", sample("run_finished"), overrides_dir=NO_OVERRIDES).body
    assert "finished with status **completed**: 2 of 4 steps done, 2 late." in body
    assert "| Publish a holding statement (`holding-statement`) | done | chen-jie | no |" in body
    assert "| Rate-limit the gateway (`rate-limit`) | skipped | — | — |" in body


def test_run_finished_says_first_the_deadline_missed_and_the_steps_that_timed_out_or_were_skipped() -> None:
    message = render_message("run_finished", sample("run_finished"), overrides_dir=NO_OVERRIDES)
    assert message.title.endswith("(completed, deadline missed)"), message.title  # a lock screen shows this much
    first, timed_out, skipped = message.body.split("\n\n")[:3]  # the paragraphs before the table
    assert first.endswith("2 late. **Deadline missed:** it ended 18m after its deadline."), first
    assert timed_out == "**Timed out:** Legal and compliance check (skipped).", timed_out
    assert skipped == "**Skipped:** Rate-limit the gateway (branch of assess not taken).", skipped
    assert "| Legal and compliance check (`legal`) | skipped | — | no |" in message.body
    failed = replace(sample("run_finished"), run=replace(sample("run_finished").run, over_deadline=None))
    assert "**Deadline missed:** a run that failed does not meet its deadline, however early it ended." in \
        render_message("run_finished", failed, overrides_dir=NO_OVERRIDES).body
    met = replace(sample("run_finished"), run=replace(sample("run_finished").run, deadline_met=True,
                                                            over_deadline=None))
    body = render_message("run_finished", met, overrides_dir=NO_OVERRIDES).body
    assert "2 late. Deadline met.\n\n" in body and "missed" not in body


def test_each_reader_gets_their_own_actor_and_time_zone() -> None:
    message_for = render_for("assigned", sample("assigned"), overrides_dir=NO_OVERRIDES)
    sara = message_for(Recipient("sara-lopez", "Sara Lopez", "person", ("inbox://sara-lopez",), "Europe/Madrid"))
    assert "--as sara-lopez" in sara.body
    assert "/s/sample-link-for-sara-lopez" in sara.body  # her own link, not wang-fang's
    assert "Sara Lopez, you are assigned" in sara.body
    assert "Due:** 2025-03-01 07:20 (Europe/Madrid)" in sara.body


def test_without_a_zone_the_person_zone_from_the_site_is_used(make_site) -> None:  # type: ignore[no-untyped-def]
    site = make_site({"kenji-sato": ["inbox://kenji-sato"]}, timezones={"kenji-sato": "Asia/Tokyo"})
    ctx = sample("reminder", recipient=RecipientInfo(id="kenji-sato", name="Kenji Sato"))
    assert "2025-03-01 15:20 (Asia/Tokyo)" in render_message("reminder", ctx, site=site, overrides_dir=NO_OVERRIDES).body


@pytest.mark.parametrize(
    ("sop_class", "kind", "status", "expected"),
    [
        ("complaint", "assigned", None, "failure"),
        ("outage", "assigned", None, "warning"),
        ("policy", "assigned", None, "info"),
        ("routine", "reminder", None, "info"),
        ("routine", "overdue", None, "warning"),
        ("policy", "escalated", None, "warning"),
        ("complaint", "escalated", None, "failure"),
        ("outage", "step_done", None, "success"),
        ("complaint", "run_finished", "completed", "success"),
        ("routine", "run_finished", "failed", "failure"),
        ("outage", "step_failed", "running", "warning"),  # the run goes on: as late as an escalation
        ("routine", "step_failed", "failed", "failure"),  # the one page of a run that ended failed: as its end
        ("outage", "run_cancelled", "cancelled", "info"),
        ("complaint", "run_started", None, "info"),  # its owner is told, not asked: the first steps' people are
        ("complaint", "step_claimed", None, "info"),  # taken by a colleague: nothing is asked of the others
        ("outage", "handed_away", None, "info"),
        ("complaint", "handed_over", None, "failure"),  # asks for work: the class's type
        ("routine", "status_missed", None, "warning"),  # late, as an escalation
    ],
)
def test_urgency_follows_the_class_and_the_kind(sop_class: str, kind: str, status: str | None, expected: str) -> None:
    assert notify_type(sop_class, kind, status) == expected


def test_a_digest_keeps_only_what_asks_nothing_and_a_backlog_goes_most_urgent_first() -> None:
    from flows.language.urgency import informational, queue_rank

    assert informational("step_done") and informational("run_finished", "completed")
    assert informational("step_claimed")
    assert not informational("run_finished", "failed")  # a failed run's end is news at once
    assert not informational("run_finished", "rejected")
    for kind in ("step_withdrawn", "handed_away", "step_held", "run_cancelled"):  # they stop someone's work: now
        assert not informational(kind), kind
    for kind in ("assigned", "escalated", "overdue", "run_started", "step_released", "status_due", "step_timed_out"):
        assert not informational(kind), kind
    ranked = sorted([("outage", "assigned"), ("complaint", "step_done"), ("outage", "step_done"),
                     ("complaint", "escalated"), ("routine", "overdue"), ("outage", "run_cancelled")],
                    key=lambda page: queue_rank(*page))
    assert ranked == [("complaint", "escalated"), ("complaint", "step_done"), ("outage", "assigned"),
                      ("outage", "run_cancelled"), ("outage", "step_done"), ("routine", "overdue")]
    assert queue_rank("outage", "run_finished", "failed") < queue_rank("outage", "run_finished", "done")


@pytest.mark.parametrize(
    ("sop_class", "prefix", "kind_type"), [("outage", "[P2]", "warning"), ("routine", "[P4]", "info")]
)
def test_title_prefix_and_type_come_from_the_class(sop_class: str, prefix: str, kind_type: str) -> None:
    ctx = replace(sample("assigned"), sop=SopInfo(id="traffic-drop", title="Traffic drop", class_=sop_class))
    message = render_message("assigned", ctx, overrides_dir=NO_OVERRIDES)
    assert message.title.startswith(prefix + " Assigned to you")
    assert message.notify_type == kind_type


def test_a_site_file_replaces_the_packaged_template(tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "assigned.md.j2").write_text("Do {{ step.title }} now\n\nRun: `{{ action.command }}`\n", encoding="utf-8")
    message = render_message("assigned", sample("assigned"), overrides_dir=folder)
    assert message.title == "[P1] Do Assess scope and sentiment now"  # the prefix is added even so
    assert message.body == (
        "Run: `sop done r-20250301-0001 assess --as wang-fang -f severity=<low|medium|high> --evidence <link>`"
    )
    other = render_message("reminder", sample("reminder"), overrides_dir=folder)
    assert other.title.startswith("[P1] Reminder:")  # kinds without a site file stay packaged


def test_a_template_that_fails_at_render_time_names_the_file_and_line(tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "reminder.md.j2").write_text("Reminder\n\n{% for f in step.form %}\n{{ f.nme }}\n{% endfor %}\n")
    with pytest.raises(RenderError) as caught:
        render_message("reminder", sample("reminder"), overrides_dir=folder)
    assert caught.value.file == str(folder / "reminder.md.j2")
    assert caught.value.line == 4
    assert "nme" in str(caught.value)


def test_a_step_kind_needs_a_step() -> None:
    ctx = sample("run_started")
    with pytest.raises(ValueError, match="`assigned` notifications are about a step"):
        Context(kind="assigned", sop=ctx.sop, run=ctx.run, recipient=ctx.recipient, api_base_url="http://x")


def test_a_run_past_its_deadline_lists_its_open_steps_for_the_owner() -> None:
    message = render_message("run_overdue", sample("run_overdue"), overrides_dir=NO_OVERRIDES)
    assert message.title == "[P1] Run deadline passed: Crisis PR response · lumi, run r-20250301-0001"
    assert "is still open: 1 of 3 steps are not done" in message.body
    assert "| Publish a holding statement (`holding-statement`) | active | — |" in message.body
    assert "Assess scope" not in message.body.split("| open step")[1].split("- **Priority")[0]  # done steps left out
    assert message.notify_type == "failure"


def test_a_claim_tells_the_others_who_holds_the_step_and_asks_nothing() -> None:
    message = render_message("step_claimed", sample("step_claimed"), overrides_dir=NO_OVERRIDES)
    assert message.title == "[P1] Taken: Assess scope and sentiment (Crisis PR response · lumi) is held by wang-fang"
    assert "(reach them at wang.fang@example.com)" in message.body
    assert "sop done" not in message.body and "/s/" not in message.body  # no personal link: nothing to do


def test_whom_a_step_was_handed_away_from_is_told_who_has_it_now_and_asked_nothing() -> None:
    message = render_message("handed_away", sample("handed_away"), overrides_dir=NO_OVERRIDES)
    assert message.title == ("[P1] Handed to sara-lopez by chen-jie: Assess scope and sentiment (Crisis PR response); "
                             "you no longer need to act")
    assert "to **sara-lopez** (reach them at sara.lopez@example.com). You no longer need to act on it" in message.body
    assert "sop done" not in message.body and "/s/" not in message.body  # no personal link: nothing to do


def test_a_title_with_a_long_value_in_it_is_cut_and_the_body_keeps_it() -> None:
    """A run titled by what someone typed (a 20,000-character topic) pages a title a phone can show."""
    ctx = sample("assigned")
    long_title = "Crisis PR " + "x" * 20_000  # no dash or colon: no shorter name to page (short_title)
    message = render_message("assigned", replace(ctx, sop=replace(ctx.sop, title=long_title)),
                             overrides_dir=NO_OVERRIDES)
    assert len(message.title) <= 200 and message.title.endswith("…") and message.title.startswith("[P1] ")
    assert "x" * 1000 in message.body  # nothing lost: the body still has it


def test_a_reported_yes_or_no_reads_yes_or_no_not_python() -> None:
    """A done step's checkbox read "approved: True" on the phone; the step's page says yes."""
    ctx = sample("step_done")
    values = {"approved": True, "rolled_back": False, "note": None, "channels": ["weibo", "wechat"]}
    message = render_message("step_done", replace(ctx, step=replace(ctx.step, values=values)),
                             overrides_dir=NO_OVERRIDES)
    assert "- `approved`: yes\n" in message.body
    assert "- `rolled_back`: no\n" in message.body
    assert "- `note`: —\n" in message.body  # nothing reported, as the page shows it
    assert "- `channels`: weibo, wechat\n" in message.body  # not ['weibo', 'wechat']
    assert "True" not in message.body and "None" not in message.body


def test_a_site_template_still_tests_the_value_itself(tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "step_done.md.j2").write_text(
        "Done: {{ step.title }}\n\n{% if step['values'].rolled_back %}ROLLED BACK{% else %}kept{% endif %}, "
        "approved: {{ step['values'].approved }}, by {{ step.actor }}{{ '' if step.actor else ' (nobody)' }}\n",
        encoding="utf-8")
    ctx = sample("step_done")
    message = render_message("step_done", replace(ctx, step=replace(
        ctx.step, actor=None, values={"rolled_back": False, "approved": False})), overrides_dir=folder)
    assert message.body == "kept, approved: no, by — (nobody)"  # False tests false; an empty text stays empty


def test_a_list_or_a_mapping_printed_by_a_template_reads_as_text_not_python(tmp_path: Path) -> None:
    """A site template printing the approvers (a list) or the API body (a mapping) got "['pr-lead']" and
    "{'values': {…}}"; the title too."""
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "assigned.md.j2").write_text(
        "Approval by {{ step.approval.approvers }} for {{ step.title }}\n\n"
        "Fields: {{ step.form | map(attribute='name') | list }}\n\nBody: {{ action.api_body }}\n", encoding="utf-8")
    ctx = sample("assigned")
    ctx = replace(ctx, step=replace(ctx.step, approval=replace(ctx.step.approval, approvers=("pr-lead", "legal"))))
    message = render_message("assigned", ctx, overrides_dir=folder)
    assert message.title == "[P1] Approval by pr-lead, legal for Assess scope and sentiment"
    assert message.body == ("Fields: severity, note\n\n"
                            "Body: values: severity: low, note: <text>, evidence: https://link-to-your-evidence")


def test_a_title_names_the_sop_shortly_and_what_the_run_is_about() -> None:
    """zhao-lei's two assignments in two crisis-PR runs read apart: the brand comes right after the SOP's short name
    (its title up to the first dash), before the time left; a run with no subject is the short name alone."""
    ctx = sample("assigned")
    sop = replace(ctx.sop, title="Crisis PR - negative mentions spike (more than 100 a day)")
    titles = [render_message("assigned", replace(ctx, sop=sop, run=replace(ctx.run, subject=subject)),
                             overrides_dir=NO_OVERRIDES).title for subject in ("lumi", "lumi-kids", None)]
    assert titles == ["[P1] Assigned to you: Assess scope and sentiment (Crisis PR · lumi), 18m left",
                      "[P1] Assigned to you: Assess scope and sentiment (Crisis PR · lumi-kids), 18m left",
                      "[P1] Assigned to you: Assess scope and sentiment (Crisis PR), 18m left"]


@pytest.mark.parametrize(("kind", "last"), [("step_released", "Establish the facts"), ("run_overdue_holder", "Answer the KOL")])
def test_in_an_email_the_readers_own_steps_are_a_list_of_their_own_not_the_first_facts(kind: str, last: str) -> None:
    """Markdown makes one list of two with only a blank line between: the reader's steps read as facts of the run."""
    from notifications.markup import html

    mail = html(render_message(kind, sample(kind), overrides_dir=NO_OVERRIDES).body)
    steps, facts = mail.split(last, 1)
    assert "</ul>" in facts.split("<strong>Priority:</strong>", 1)[0], mail
    assert "<li>" in steps


def test_a_run_past_its_deadline_tells_whom_a_step_is_with_which_of_theirs_keep_it_open() -> None:
    one = replace(sample("run_overdue_holder"), yours=sample("run_overdue_holder").yours[:1])
    message = render_message("run_overdue_holder", one, overrides_dir=NO_OVERRIDES)
    assert message.title == ("[P1] Run deadline passed: Crisis PR response · lumi, your step Publish a holding statement "
                             "is still open")
    assert ("the P1 run of **Crisis PR response** was due to finish by 2025-03-01 16:00 (Asia/Shanghai) and is still "
            "open: your step **Publish a holding statement** is among what keeps it open (due 2025-03-01 15:30 "
            "(Asia/Shanghai), 30m overdue).") in message.body
    assert message.notify_type == "failure"  # late, in a complaint's run


def test_the_urgency_table_in_the_docs_is_what_is_sent() -> None:
    """docs/notifications.md "Urgency": each column names its kinds, each row a class and its types; the code agrees."""
    text = (Path(__file__).parents[2] / "docs" / "notifications.md").read_text(encoding="utf-8")
    head, _, *rows = text.split("## Urgency", 1)[1].split("\n| class |", 1)[1].split("\n\n", 1)[0].splitlines()
    columns = [re.findall(r"`(\w+)`", cell) for cell in head.split("|")[1:-1]]  # after "prefix"
    assert sorted(kind for kinds in columns for kind in kinds) == sorted(
        set(KINDS) - {"step_done", "run_finished"}), "every kind but the closing ones is in the table once"
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        for kinds, expected in zip(columns, cells[2:], strict=True):
            for kind in kinds:
                assert notify_type(cells[0], kind, None) == expected, (cells[0], kind)


@pytest.mark.parametrize("kind", ["assigned", "escalated", "step_done", "run_finished"])
def test_a_drills_page_says_so_in_its_first_words_and_a_real_ones_never(kind: str) -> None:
    """A title is cut on a lock screen and by mail clients; the body's first line is what is read next. Sara Lopez,
    paged at 9:10 in Madrid for a game day she is not running, must not take it for a crisis."""
    context = sample(kind)
    drill = replace(context, run=replace(context.run, drill=True, speed=100.0))
    message = render_message(kind, drill, overrides_dir=NO_OVERRIDES)
    note = "**This is a drill** (time runs 100× faster): act as you would in a real incident; nothing real is at stake."
    assert message.title.startswith("[DRILL] [P1] ")
    assert message.body.splitlines()[0] == note
    assert (message.phone_body or message.body).splitlines()[0] == note
    real = render_message(kind, context, overrides_dir=NO_OVERRIDES)
    assert "This is a drill" not in real.body and not real.title.startswith("[DRILL]")


def test_time_left_says_due_now_at_the_due_instant_not_0s() -> None:
    """A rung at 100% of a step's due fires at its due instant, a few milliseconds late: "0s left" or "0s overdue"
    read as a glitch (a compressed run's second is less than a hundredth of one); the step is late then."""
    from datetime import UTC, datetime, timedelta

    from flows.engine.page_context import due_now, overdue, time_left

    due = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    for late_by, speed, said, is_overdue in [(timedelta(0), 1, "due now", True),
                                             (timedelta(milliseconds=400), 1, "due now", True),
                                             (timedelta(milliseconds=5), 100, "due now", True),
                                             (timedelta(milliseconds=-400), 1, "due now", True),
                                             (timedelta(seconds=-90), 1, "1m30s left", False),
                                             (timedelta(seconds=2), 1, "2s overdue", True),
                                             (timedelta(seconds=3), 100, "5m overdue", True)]:
        assert (time_left(due, due + late_by, speed), overdue(due, due + late_by, speed)) == (said, is_overdue), late_by
        assert due_now(due, due + late_by, speed) == (said == "due now"), late_by
    assert time_left(None, due, 1) is None and not overdue(None, due, 1) and not due_now(None, due, 1)
