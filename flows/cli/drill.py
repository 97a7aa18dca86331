"""``sop drill`` and ``sop demo``: an SOP on compressed time with simulated responders."""

from __future__ import annotations

from contextlib import ExitStack
from datetime import timedelta
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from flows.audit.timeline import ladder_line
from flows.cli import app
from flows.cli.common import console, fail, fail_all, library
from flows.cli.runs import _pairs
from flows.engine import participants
from flows.engine.transitions import InputRefused, check_inputs
from flows.language.durations import SPEED_MAX, SPEED_MIN, check_speed, format_duration
from flows.language.steps.human import approvers_besides
from flows.runtime.drill import Drill, DrillRefused, DrillResult, TimelineEntry, hand_over_problems


def _clock(offset) -> str:  # noqa: ANN001 - timedelta
    seconds = int(offset.total_seconds())
    return f"+{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _print_entry(entry: TimelineEntry) -> None:
    colour = {"follow_up_skipped": "cyan", "follow_up_started": "cyan", "follow_up_refused": "red",
              "escalation": "magenta", "step_overdue": "red", "run_overdue": "red", "step_done": "green",
              "run_finished": "bold green", "step_failed": "red", "drill_error": "red", "drill_waits": "yellow"}.get(entry.kind, "white")
    console.print(f"[dim]{_clock(entry.offset)}[/] [cyan]{(entry.step or '·'):<16}[/] [{colour}]{escape(entry.detail)}[/]",
                  soft_wrap=True)


def _summary(result: DrillResult) -> None:
    table = Table(title=f"drill of run {result.run_id}: {result.outcome}", title_justify="left")
    for col in ("step", "state", "by", "due", "took", "deadline", "escalations"):
        table.add_column(col)
    for row in result.steps:
        met = {"met": "[green]met[/]", "missed": "[red]missed[/]", "pending": "[yellow]pending[/]"}.get(row["deadline"], "—")
        reworked = row.get("round", 1) > 1 or any(r["step"] == row["step"] and r is not row for r in result.steps)
        table.add_row(row["step"] + (f" (round {row['round']})" if reworked else ""), row["state"], row["actor"] or "", format_duration(row["due"]) if row["due"] else "",
                      format_duration(row["took"]) if row["took"] else "", met, str(row["escalations"] or ""))
    console.print(table)
    met = sum(1 for r in result.steps if r["deadline_met"] is True)
    missed = sum(1 for r in result.steps if r["deadline_met"] is False)
    deadline = {True: "met", False: "missed", None: "none set"}[result.deadline_met]
    updates = sum(1 for e in result.timeline if e.kind == "status_update")
    asked = sum(1 for e in result.timeline if e.kind == "status_asked")
    cadence = f"; status updates {updates} of {asked} asked" if asked else ""
    tta = format_duration(timedelta(seconds=result.time_to_acknowledge_s)) \
        if result.time_to_acknowledge_s is not None else "none (nobody answered)"
    console.print(f"deadlines met {met}, missed {missed}; escalations {result.escalations}; run deadline {deadline}"
                  f"{cadence}; time to acknowledge {tta}; {result.wall_seconds:.0f}s of wall time")
    if result.ladder:  # who was escalated to, when: the review's first question
        console.print("escalations (SOP time; → the ladder's targets: who they reached):")
        for row in result.ladder:
            console.print(f"  {escape(ladder_line(row))}", soft_wrap=True)
    # what the run's end started (or would have, outside a drill) is on the timeline above: not said twice


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _print_step_link(engine, run_id: str) -> None:  # noqa: ANN001 - Engine
    """The personal link of the run's first step waiting on a person: open it while the drill plays."""
    from flows.clock import scaled
    from flows.language.steps.human import HumanStep
    from flows.ledger.vocabulary import StepState

    view = engine.view(run_id)
    for step in view.sop.steps:
        if isinstance(step, HumanStep) and view.state(step.id) == StepState.ACTIVE:
            person = engine.person_for(step.assignee)
            link = engine.links.step_link(person, run_id, step.id, max_age=scaled(engine.links.max_age, view.speed))
            console.print(f"[bold]open the step page[/] of {step.id} as {person} (a responder's link; it works "
                          f"until the drill answers it):\n  {link}", soft_wrap=True)
            return


def _starter(given: str | None) -> tuple[Any, dict[str, Any]]:
    """Who starts a drill from this terminal: ``--as`` (or $SOP_ACTOR), a person of config/ (from an OS account
    given to a person, only that person), recorded with the OS user (``drill by li-wei (cli, os user ops)``);
    without one, ``drill`` with the OS user in its trigger."""
    import os

    from flows.cli.runs import os_user, terminal_person

    if not (given or os.environ.get("SOP_ACTOR")):
        # nobody named: `drill`, with the OS account (its person, when it is someone's, stays free to approve)
        account = os_user()
        return "drill", {"os_user": account} if account else {}
    return terminal_person(library().site, given), {}


def drill_sop(sop_id: str, speed: float, late: list[str], params: dict[str, str], seed: int | None,
              reject: list[str] | None = None, hand_over: dict[str, str] | None = None, live: bool = False,
              as_: str | None = None, people: list[str] | None = None) -> DrillResult:
    """Run a drill, starting the embedded stack first when no Prefect server answers."""
    from flows import runtime
    from flows.api.auth import SecretsRefused
    from flows.prefect.names import prefect_api_url
    from flows.runtime.serve import Stack, StackError, healthy

    lib = library()
    starter, facts = _starter(as_)
    if sop_id not in lib.sops:
        fail(f"unknown SOP `{sop_id}`", f"known: {', '.join(sorted(lib.sops))}")
    if not isinstance(starter, str):  # four-eyes: the starter approves nothing of their run
        for step in lib.sops[sop_id].sop.steps:
            approval = getattr(step, "approval", None)
            if approval is None or approval.distinct_from != "initiator":
                continue
            if len(others := approvers_besides(lib.site, approval, starter.person)) < approval.count:
                fail(f"{starter.person} started it, so only {', '.join(sorted(others)) or 'nobody'} may approve "
                     f"`{step.id}` ({approval.count} needed: the four-eyes rule)", "start the drill --as someone else")
    unknown = [s for s in late if s not in {st.id for st in lib.sops[sop_id].sop.steps}]
    if unknown:
        fail(f"--late names unknown step(s) {', '.join(unknown)} of {sop_id}")
    unknown = [s for s in reject or [] if s not in {st.id for st in lib.sops[sop_id].sop.steps}]
    if unknown:
        fail(f"--reject names unknown step(s) {', '.join(unknown)} of {sop_id}")
    if people is not None and (problems := participants.problems(lib.site, people, drill=True)):
        fail_all(problems, "nothing was started", "e.g. --people chen-jie,wang-fang (ids of config/people.yaml)")
    if problems := hand_over_problems(lib.site, lib.sops[sop_id].sop, hand_over or {}):
        fail_all(problems, "nothing was started", "write it as --hand-over STEP=PERSON, PERSON another member of the "
                                                  f"step's role (`sop show {sop_id}`)")
    try:  # the inputs first, as `sop run` does: a missing or mistyped one is told before the stack starts
        check_inputs(lib.sops[sop_id].sop, params)
    except InputRefused as exc:
        fail_all(exc.problems, f"the inputs do not fit {sop_id}", f"give them with -p name=value; see `sop show {sop_id}`")
    with ExitStack() as stack:
        if not healthy(prefect_api_url(lib)):
            pages = _port_free(lib.site.settings.api.host, lib.site.settings.api.port)  # the step pages, if we may
            embedded = Stack(library=lib, api=pages, progress=lambda m: console.print(f"[dim]stack:[/] {m}"))
            stack.callback(embedded.stop)
            try:
                embedded.start()
            except (StackError, SecretsRefused) as exc:
                fail(str(exc))
            engine = embedded.engine
        else:
            engine = runtime.engine(library=lib)
            engine.ledger.keep_checkpoints()  # its end is in a checkpoint when it stops (docs/audit.md, "The window")
        console.print(f"[bold]drill[/] {sop_id} at ×{speed:g} (1h of playbook = {3600 / speed:.0f}s)"
                      + (f", late: {', '.join(late)}" if late else "")
                      + (f", rejected once: {', '.join(reject)}" if reject else "")
                      + (f", taking part: {', '.join(people)}" if people else ""))
        drill = Drill(engine, sop_id, speed, late=set(late), inputs=params, seed=seed, on_entry=_print_entry,
                      on_start=lambda run_id: _print_step_link(engine, run_id), reject=set(reject or []),
                      hand_over=hand_over, live=live, starter=starter, facts=facts, people=people)
        try:
            result = drill.run()
        except DrillRefused as exc:
            fail(str(exc))
        finally:
            engine.pager.close()
    _summary(result)
    from flows.cli.notes import say_digests_waiting

    say_digests_waiting(engine, "; a pager process sends each when it is due (`sop serve`, `sop pager`)")
    return result


@app.command()
def drill(
    sop_id: Annotated[str, typer.Argument(metavar="ID", help="SOP id")],
    speed: Annotated[float, typer.Option(help=f"time compression, {SPEED_MIN:g} to {SPEED_MAX:g}: 120 plays 2 hours in 1 minute")] = 120.0,
    late: Annotated[list[str] | None, typer.Option(help="a step answered after its due (repeatable)")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="input as key=value")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed for the responders' delays")] = None,
    reject: Annotated[list[str] | None, typer.Option(help="a step whose first answer is a rejection (repeatable)")] = None,
    hand_over: Annotated[list[str] | None, typer.Option("--hand-over", help="STEP=PERSON: its holder hands it over at once (repeatable)")] = None,
    live: Annotated[bool, typer.Option("--live", help="http, command and notify steps call the real systems and send their messages (default: simulated)")] = False,
    as_: Annotated[str | None, typer.Option("--as", help="who starts the drill: a person id in config/ (default $SOP_ACTOR; "
                                                          "without one, the OS user is recorded)")] = None,
    people: Annotated[str | None, typer.Option("--people", help="who takes part, person ids (e.g. chen-jie,wang-fang): its pages to anyone else are not sent, each recorded as not sent (default: everyone the SOP reaches)")] = None,
) -> None:
    """Play an SOP on compressed time with simulated responders; print a timeline and a summary."""
    if (problem := check_speed(speed)) is not None:
        fail(f"--{problem}", "e.g. --speed 120 plays 2 hours in 1 minute")
    result = drill_sop(sop_id, speed, late or [], _pairs(param, "-p"), seed, reject or [], _pairs(hand_over, "--hand-over"),
                       live=live, as_=as_, people=participants.named(people) if people is not None else None)
    if result.outcome not in ("done", "rejected"):
        raise typer.Exit(1)


@app.command()
def demo() -> None:
    """The crisis-PR playbook, 2 hours in about a minute: one step late and escalated, the statement sent back
    once, the CS briefing handed over, the owner's status updates."""
    drill_sop("crisis-pr", 120.0, ["facts"], {"brand": "lumi", "mentions_per_day": "140"}, seed=7, reject=["approve"],
              hand_over={"brief-cs": "wang-fang"})
