"""`sop done` / `sop reject` / `sop status` as a responder uses them: bad input is refused, nothing changes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

import pytest

from tests.engine.conftest import records, step_states, wait_for


def _copy_of(project: Path, tmp_path: Path) -> Path:
    """The package project's sops/ and config/ in a folder of the test's own (to add or break SOP files there)."""
    root = tmp_path / "project"
    shutil.copytree(project / "sops", root / "sops")
    shutil.copytree(project / "config", root / "config")
    return root


@pytest.fixture
def cli(sop, project, stack):
    def run(*args: str):
        return sop(*args, env={"SOP_HOME": str(project)})

    return run


@pytest.fixture
def waiting_run(engine):
    """A run at rest: its flow run suspended, its three pages (start, two assignments) recorded."""
    run_id = engine.start("t-parallel", initiator="li-wei").run_id
    wait_for(lambda: engine.view(run_id).run["suspends"] and len(records(engine, run_id, "notification")) >= 3, 90,
             "the run to page its people and suspend")
    return run_id


@pytest.mark.parametrize("args, message", [
    (["nosuchrun", "left"], "no run `nosuchrun`"),
    (["{run}", "nosuchstep"], "has no step `nosuchstep` (steps: left, right, join, only-if-yes)"),
    (["{run}", "join"], "step `join` is pending, not waiting for a report (waiting now: left, right)"),
    (["{run}", "left"], "field `choice` is required (one of yes, no)"),
    (["{run}", "left", "-f", "choice=maybe"], "field `choice`: expected one of yes, no, got 'maybe'"),
    (["{run}", "left", "-f", "choise=yes"], "field `choise` is not in the form of step `left`; did you mean `choice`?"),
    (["{run}", "left", "-f", "choice=yes", "-f", "count=many"], "field `count`: expected integer, got 'many'"),
    (["{run}", "left", "-f", "choice=yes", "-f", "colour=red"], "field `colour` is not in the form of step `left`"),
    (["{run}", "right"], "zhao-lei may not act on step `right`: it is for growth-lead"),  # as on the step's page
    (["{run}", "left", "-f", "choice=yes", "-f", "choice=no"], "-f `choice` is given twice ('yes' and 'no')"),
    # Python would read ٣ (Arabic-Indic) or ５ (full-width) as 3 and 5: refused, as the number field refuses them
    (["{run}", "left", "-f", "choice=yes", "-f", "count=٣"], "field `count`: expected integer in the digits 0-9"),
])
def test_bad_reports_are_refused_and_change_nothing(cli, engine, waiting_run, args, message):
    before = (len(records(engine, waiting_run)), step_states(engine, waiting_run))
    result = cli("done", *[a.format(run=waiting_run) for a in args], "--actor", "zhao-lei")
    assert result.returncode == 1, result.stdout
    assert message in result.stderr
    assert (len(records(engine, waiting_run)), step_states(engine, waiting_run)) == before


def test_a_good_report_moves_the_run_on(cli, engine, waiting_run):
    result = cli("done", waiting_run[:6], "left", "--actor", "zhao-lei", "-f", "choice=yes", "-f", "count=3",
                 "--note", "checked")
    assert result.returncode == 0, result.stderr
    assert "left done by zhao-lei" in result.stdout
    view = engine.view(waiting_run)
    assert view.steps["left"]["actor"] == "zhao-lei" and view.result("left") == {"choice": "yes", "count": 3,
                                                                                  "evidence": []}
    status = json.loads(cli("status", waiting_run, "--json").stdout)
    assert {s["step"]: s["state"] for s in status[0]["steps"]}["only-if-yes"] == "active"


def test_reject_needs_a_reason_and_cancel_stops_the_run(cli, engine, waiting_run):
    assert "a rejection needs a reason" in cli("reject", waiting_run, "right", "--actor", "zhang-min").stderr
    assert cli("reject", waiting_run, "right", "--actor", "zhang-min", "--note", "not ours").returncode == 0
    assert step_states(engine, waiting_run)["right"] == "rejected"
    result = cli("cancel", waiting_run, "--reason", "drill over", "--as", "li-wei")
    assert result.returncode == 0, result.stderr
    view = engine.view(waiting_run)
    assert view.run["status"] == "cancelled" and view.state("left") == "cancelled"
    cancelled = records(engine, waiting_run, "run_cancelled")[-1]
    assert cancelled["actor"] == "li-wei"
    assert "is cancelled" in cli("done", waiting_run, "left", "--actor", "zhao-lei", "-f", "choice=no").stderr


def test_the_cli_acts_only_as_a_person_of_config_and_records_how(cli, engine, waiting_run):
    before = (len(records(engine, waiting_run)), step_states(engine, waiting_run))
    nobody = cli("done", waiting_run, "left", "--as", "nobody", "-f", "choice=yes")
    assert nobody.returncode == 1 and "`nobody` is not a person in config/" in nobody.stderr
    unnamed = cli("done", waiting_run, "left", "-f", "choice=yes")
    assert unnamed.returncode == 1 and "who are you? pass --as <person id>" in unnamed.stderr
    assert (len(records(engine, waiting_run)), step_states(engine, waiting_run)) == before
    assert cli("done", waiting_run, "left", "--as", "zhao-lei", "-f", "choice=yes").returncode == 0
    done = records(engine, waiting_run, "step_done")[-1]
    assert done["actor"] == "zhao-lei" and done["data"]["via"] == "cli" and done["data"].get("os_user")


def test_a_report_while_prefect_is_away_answers_at_once_and_the_run_goes_on_when_it_is_back(sop, project, engine,
                                                                                           waiting_run):
    """`sop done` records the report, then leaves the resume to the nudger when Prefect does not answer (it used
    to sit about a minute in Prefect's client retries before printing its prompt back)."""
    suspends = engine.view(waiting_run).run["suspends"]
    with socket.socket() as hung:  # a Prefect server that takes connections and never answers (stuck, overloaded)
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        began = time.monotonic()
        result = sop("done", waiting_run, "left", "--actor", "zhao-lei", "-f", "choice=no",
                     env={"SOP_HOME": str(project), "PREFECT_API_URL": f"http://127.0.0.1:{hung.getsockname()[1]}/api"})
        took = time.monotonic() - began
    assert result.returncode == 0, result.stderr
    assert "left done by zhao-lei" in result.stdout
    assert "Prefect did not answer; the run goes on once it does" in result.stderr and "Traceback" not in result.stderr
    assert took < 30, f"sop done took {took:.0f} s with Prefect away"
    # the report is in the ledger; the stack's nudger (its Prefect is up) resumes the flow run, which suspends again
    assert engine.view(waiting_run).steps["left"]["state"] == "done"
    wait_for(lambda: engine.view(waiting_run).run["suspends"] > suspends and not engine.view(waiting_run).run["nudge"],
             90, "the nudger to resume the run and the flow run to wait again")


def test_a_report_while_prefect_is_down_says_so_in_one_note_not_a_log_line(sop, project, engine, waiting_run):
    """A Prefect that refuses the connection (stopped) fails the resume at once: the person is told in words, as
    when it does not answer, and the service's log line stays out of their terminal."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens once it is closed: connections are refused
    result = sop("done", waiting_run, "left", "--actor", "zhao-lei", "-f", "choice=no",
                 env={"SOP_HOME": str(project), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"})
    assert result.returncode == 0 and "left done by zhao-lei" in result.stdout, result.stderr
    assert "note: Prefect did not answer (" in result.stderr and "the run goes on once it does" in result.stderr
    assert "event=" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    wait_for(lambda: not engine.view(waiting_run).run["nudge"], 90, "the stack's nudger to resume the run")


def test_a_cancel_while_prefect_is_away_ends_the_flow_run_once_it_is_back(sop, project, engine, waiting_run):
    """The ledger says cancelled at once; the flow run Prefect could not be told of is ended by the nudger, so
    Prefect does not show a cancelled run Suspended for ever."""
    from uuid import UUID

    from flows.prefect.launcher import prefect_client

    result = sop("cancel", waiting_run, "--reason", "duplicate of another run", "--as", "li-wei",
                 env={"SOP_HOME": str(project), "PREFECT_API_URL": "http://127.0.0.1:9/api"})  # Prefect away
    assert result.returncode == 0, result.stderr
    assert engine.view(waiting_run).run["status"] == "cancelled"
    # the person reads one sentence in words; the log line goes to the log file, key=value
    assert "note: the run is cancelled; Prefect did not answer (" in result.stderr, result.stderr
    assert "event=" not in result.stderr and "nudger" not in result.stderr and "Traceback" not in result.stderr
    assert f"event=cancel_failed run={waiting_run}" in (project / "var" / "log" / "cli.log").read_text()

    def flow_run():
        with prefect_client(engine.launcher.api_url) as client:
            return client.read_flow_run(UUID(engine.view(waiting_run).run["flow_run_id"]))

    wait_for(lambda: flow_run().state.is_cancelled(), 90, "the flow run to end Cancelled",
             explain=lambda: flow_run().state)


def test_sop_run_of_an_sop_added_since_the_stack_started_says_what_to_do(sop, project, stack, tmp_path):
    root = _copy_of(project, tmp_path)
    text = (project / "sops" / "t-approval.yaml").read_text().replace("id: t-approval", "id: t-added-later", 1)
    (root / "sops" / "t-added-later.yaml").write_text(text)
    result = sop("run", "t-added-later", "--as", "li-wei", env={"SOP_HOME": str(root)})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "SOP `t-added-later` is not deployed to the Prefect server at" in result.stderr, result.stderr
    assert "hint: restart `sop serve`" in result.stderr and "(None)" not in result.stderr


def test_a_broken_sop_file_does_not_stop_a_responder_reporting_from_the_terminal(sop, project, engine, waiting_run,
                                                                                 tmp_path):
    """A colleague's half-edited SOP file mid-incident: commands acting on runs under way (each runs its pinned
    text) leave that file out with a warning saying where it is wrong; `sop validate` still refuses it."""
    root = _copy_of(project, tmp_path)
    broken = root / "sops" / "zz-half-edited.yaml"
    broken.write_text((project / "sops" / "t-approval.yaml").read_text()
                      .replace("id: t-approval", "id: zz-half-edited", 1).replace("due: ", "due: soon ", 1))
    env = {"SOP_HOME": str(root)}
    done = sop("done", waiting_run, "left", "--as", "zhao-lei", "-f", "choice=yes", env=env)
    assert done.returncode == 0 and "left done by zhao-lei" in done.stdout, done.stderr
    assert f"warning: {broken} is left out: it does not validate ({broken}:" in done.stderr
    assert engine.view(waiting_run).state("left") == "done"
    status = sop("status", waiting_run, env=env)
    assert status.returncode == 0 and "is left out" in status.stderr
    assert sop("validate", env=env).returncode == 1
    started = sop("run", "t-approval", "--as", "li-wei", env=env)  # a new run: every file must be valid
    assert started.returncode == 1 and f"{broken}:" in started.stderr and "is left out" not in started.stderr

    # a run whose follow-up is in the broken file: what may end it is refused, nothing recorded
    crisis = engine.start("crisis-pr", {"brand": "acme-follow"}, initiator="li-wei", launch=False).run_id
    review = root / "sops" / "post-incident-review.yaml"
    review.write_text(review.read_text().replace("due: ", "due: soon ", 1))
    def written() -> list[str]:  # (the start's pages are recorded as they are delivered, meanwhile)
        return [r["kind"] for r in records(engine, crisis) if r["kind"] != "notification"]

    before = written()
    cancelled = sop("cancel", crisis, "--reason", "test", "--as", "li-wei", env=env)
    assert cancelled.returncode == 1, cancelled.stdout
    assert "follow-up `post-incident-review` is in an SOP file that does not validate" in cancelled.stderr
    assert written() == before and engine.view(crisis).is_open


def test_status_names_who_has_each_waiting_step_and_keeps_its_heading_on_one_line(cli, engine, waiting_run):
    oncall, growth = engine.person_for("sre-oncall"), engine.person_for("growth-lead")
    shown = cli("status", waiting_run)
    assert shown.returncode == 0, shown.stderr
    assert f"sre-oncall ({oncall})" in shown.stdout and f"growth-lead ({growth})" in shown.stdout
    heading = next(line for line in shown.stdout.splitlines() if waiting_run in line)
    assert "Parallel probe" in heading or "t-parallel" in heading  # not cut at the table's width
    steps = {s["step"]: s for s in json.loads(cli("status", waiting_run, "--json").stdout)[0]["steps"]}
    assert (steps["left"]["person"], steps["join"]["person"]) == (oncall, None)  # join is not waiting on anyone yet


def _account() -> str:
    import os
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def _written(engine, run_id: str) -> list[str]:
    """The run's records but its pages' (the start's pages are recorded as they are delivered, meanwhile) and its flow
    run's (a run started without launching is given one by the stack's nudger whenever its sweep comes)."""
    return [r["kind"] for r in records(engine, run_id) if r["kind"] != "notification" and
            not r["kind"].startswith("flow_run_")]


def _give_account(root: Path, person: str | None, accounts: str | None = None) -> None:
    """config/people.yaml gives this process's OS account to ``person`` (None: to nobody); ``accounts``:
    settings.cli.accounts."""
    people = root / "config" / "people.yaml"
    if person:
        text = people.read_text()
        at = text.index(f"\n  {person}:\n") + len(f"\n  {person}:\n")
        people.write_text(text[:at] + f"    os_users: [{_account()}]\n" + text[at:])
    if accounts:
        settings = root / "config" / "settings.yaml"
        settings.write_text(settings.read_text() + f"\n  cli:\n    accounts: {accounts}\n")


def test_a_terminal_acts_as_the_person_its_os_account_is_and_only_as_them(sop, project, engine, tmp_path):
    """people.yaml gives an OS account to a person: `sop done` from it needs no --as, is recorded as proven by the
    account, and cannot act as anyone else; an account given to nobody names who acts, recorded as self-declared."""
    run_id = engine.start("t-parallel", initiator="li-wei", launch=False).run_id
    root = _copy_of(project, tmp_path)
    _give_account(root, "zhao-lei")
    env = {"SOP_HOME": str(root), "SOP_ACTOR": None}
    before = _written(engine, run_id)
    refused = sop("done", run_id, "right", "--as", "zhang-min", env=env)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"this terminal runs as OS account `{_account()}`, which is zhao-lei's" in refused.stderr, refused.stderr
    assert "acts as zhao-lei only, not as zhang-min (--as); nothing was recorded" in refused.stderr
    assert _written(engine, run_id) == before and engine.view(run_id).state("right") == "active"

    done = sop("done", run_id, "left", "-f", "choice=no", env=env)  # no --as: the account says who
    assert done.returncode == 0 and "left done by zhao-lei" in done.stdout, done.stderr
    record = next(r for r in records(engine, run_id, "step_done") if r["step_id"] == "left")
    assert (record["actor"], record["data"]["via"], record["data"]["os_user"], record["data"]["proof"]) == \
        ("zhao-lei", "cli", _account(), "account")
    shown = sop("audit", "show", run_id, env=env).stdout
    assert f"left done by zhao-lei (cli, os user {_account()})" in shown, shown

    # an account given to nobody: --as names who acts, and the audit says it was only said
    declared = sop("done", run_id, "right", "--as", "zhang-min", env={"SOP_HOME": str(project), "SOP_ACTOR": None})
    assert declared.returncode == 0, declared.stderr
    shown = sop("audit", "show", run_id, env={"SOP_HOME": str(project)}).stdout
    assert f"right done by zhang-min (cli, self-declared, os user {_account()})" in shown, shown


def test_a_site_can_require_every_terminal_to_be_someones_account(sop, project, engine, tmp_path):
    run_id = engine.start("t-parallel", initiator="li-wei", launch=False).run_id
    root = _copy_of(project, tmp_path)
    _give_account(root, None, accounts="required")
    before = _written(engine, run_id)
    refused = sop("done", run_id, "left", "--as", "zhao-lei", "-f", "choice=no", env={"SOP_HOME": str(root)})
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"OS account `{_account()}` is nobody's, and settings.cli.accounts is `required`" in refused.stderr
    assert f"os_users: [{_account()}]" in refused.stderr  # the hint says how to give it
    assert _written(engine, run_id) == before


def test_an_os_account_is_one_persons_in_one_file_or_across_files(sop, project, tmp_path):
    root = _copy_of(project, tmp_path)
    _give_account(root, "zhao-lei")
    _give_account(root, "li-wei")
    result = sop("validate", env={"SOP_HOME": str(root)})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"OS account `{_account()}` is already li-wei's" in result.stderr + result.stdout, result.stderr
    assert "people.yaml:" in result.stderr  # where

    root = _copy_of(project, tmp_path / "two-files")
    _give_account(root, "zhao-lei")
    (root / "config" / "night-shift.yaml").write_text(
        f"people:\n  night-op:\n    name: Night Operator\n    contacts: [\"inbox://night-op\"]\n"
        f"    os_users: [{_account()}]\n")
    result = sop("validate", env={"SOP_HOME": str(root)})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    # the files are read in order (night-shift.yaml first): the second owner is refused, naming where the first is
    assert f"people.zhao-lei.os_users[0]: OS account `{_account()}` is already night-op's" in result.stderr, \
        result.stderr
    assert "night-shift.yaml:5)" in result.stderr and "people.yaml:" in result.stderr


def test_an_e_mail_is_one_persons(sop, project, tmp_path):
    root = _copy_of(project, tmp_path)
    (root / "config" / "night-shift.yaml").write_text(  # the same mailbox as li-wei's, in another case
        "people:\n  night-op:\n    name: Night Operator\n    contacts: [\"inbox://night-op\"]\n"
        "    email: Li.Wei@lumi.example\n")
    result = sop("validate", env={"SOP_HOME": str(root)})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    # sign-in and single sign-on find a person by it: a link asked for li-wei's address went to night-op
    assert "people.li-wei.email: e-mail `li.wei@lumi.example` is already night-op's" in result.stderr, result.stderr
    assert "night-shift.yaml:5)" in result.stderr  # where the first is


def test_a_drill_from_an_account_given_to_a_person_is_started_by_drill_unless_it_names_that_person(
        project, tmp_path, monkeypatch, capsys):
    """With no --as a drill is started by `drill` (its person stays free to approve in it); --as names only the
    account's person."""
    import typer

    from flows.cli.drill import _starter

    root = _copy_of(project, tmp_path)
    _give_account(root, "chen-jie")  # an approver of crisis-pr
    monkeypatch.setenv("SOP_HOME", str(root))
    monkeypatch.delenv("SOP_ACTOR", raising=False)
    assert _starter(None) == ("drill", {"os_user": _account()})
    starter, _ = _starter("chen-jie")
    assert (starter.person, starter.proof) == ("chen-jie", "account")
    with pytest.raises(typer.Exit):
        _starter("li-wei")
    assert "acts as chen-jie only, not as li-wei (--as)" in capsys.readouterr().err
    monkeypatch.setenv("SOP_ACTOR", "li-wei")  # a leftover of the shell: named as such
    with pytest.raises(typer.Exit):
        _starter(None)
    assert "not as li-wei ($SOP_ACTOR)" in capsys.readouterr().err


def test_sop_deploy_rings_only_a_sop_serve_of_its_own_project(tmp_path):
    """var/serve.pid names a pid: `sop deploy` signals it only while it is a `sop serve` serving this project (a
    stale file whose pid another project's `sop serve` reuses is not rung)."""
    import subprocess
    import sys

    from flows.cli.services import SERVE_PID, _serving

    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    for root in (mine, theirs):
        (root / "var").mkdir(parents=True)
    lookalike = subprocess.Popen([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)",
                                  "/opt/x/bin/sop", "serve"], env={"SOP_HOME": str(theirs), "PATH": "/usr/bin:/bin"},
                                 stdout=subprocess.PIPE, text=True)
    try:
        assert lookalike.stdout.readline() == "up\n"  # it has exec'd: /proc shows its own command line and env
        for root in (mine, theirs):
            (root / SERVE_PID).write_text(f"{lookalike.pid}\n")
        assert _serving(theirs) == lookalike.pid
        assert _serving(mine) is None  # its pid file is stale: that pid serves another project
        (theirs / SERVE_PID).write_text(f"{os.getpid()}\n")  # a live process that is no `sop serve`
        assert _serving(theirs) is None
    finally:
        lookalike.kill()
        lookalike.wait()
    assert _serving(mine) is None  # gone
