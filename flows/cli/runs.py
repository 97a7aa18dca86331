"""Commands for ops managers and responders: run, done, reject, take, hand-over, update, snooze, need-help, cancel
(``sop status`` is in ``flows.cli.status``)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from flows.cli import app
from flows.cli.common import console, err_console, fail, fail_all, library, print_json
from flows.engine import participants
from flows.engine.transitions import InputRefused, StepNotActive, check_inputs
from flows.engine.view import RunNotFound
from flows.language.actors import Actor, TerminalRefused, UnknownPerson, terminal_actor
from flows.language.durations import SPEED_MAX, SPEED_MIN, check_speed
from flows.language.steps.human import HumanReport, ReportRefused
from flows.ledger.vocabulary import TERMINAL_STEP
from flows.prefect.launcher import LaunchError


def _pairs(items: list[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            fail(f"{what} `{item}` is not key=value", f"write it as {what} name=value")
        key, value = item.split("=", 1)
        key = key.strip()
        if key in out:  # the last would win silently: which one was meant is the user's to say
            fail(f"{what} `{key}` is given twice ({out[key]!r} and {value!r})", f"give {what} {key}=… once")
        out[key] = value
    return out


def _choice_ids(fields: dict[str, Any], given: dict[str, str]) -> dict[str, Any]:
    """``-p``/``-f`` values as given, but a choice named by its label as pages show it (``category="Product
    quality"``, in any case) is the choice itself (``product_quality``): what is recorded is always the id."""
    out: dict[str, Any] = {}
    for name, text in given.items():
        spec = fields.get(name)
        chosen = spec.choice_named(text) if spec is not None and spec.enum else None
        out[name] = text if chosen is None else chosen
    return out


def _form_of(engine: Any, run_id: str, step_id: str) -> dict[str, Any]:
    """The form of a run's step as its pinned SOP has it; {} when there is no such run or step (the report says)."""
    try:
        return getattr(engine.view(run_id).sop.step(step_id), "form", {})
    except (RunNotFound, KeyError):
        return {}


def _engine(prefect: bool = True, lenient: bool = True) -> Any:
    from flows import runtime
    from flows.cli import hold_warnings

    hold_warnings()  # a resume or a cancel Prefect refused is told in words at the end (flows.cli.main), not logged
    # runs under way run their pinned texts: a broken SOP file (a colleague's edit) is left out with a warning
    return runtime.engine(library=library(lenient=lenient), prefect=prefect)


def _follow_ups_loaded(engine: Any, run_id: str, nothing: str) -> None:
    """Refuse (before anything is recorded) what may end a run whose follow-ups' SOPs are in files left out: the
    run's end would find them unknown and never start them. Its step's page, on a stack that loaded them, can."""
    if not engine.library.left_out:
        return
    try:
        view = engine.view(run_id)
    except RunNotFound:
        return  # said by the action itself
    missing = [f.start for f in view.sop.follow_ups if f.start not in engine.library.sops]
    if missing:
        engine.pager.close()
        fail(f"run {view.id}'s follow-up {', '.join(f'`{m}`' for m in missing)} is in an SOP file that does not "
             f"validate (see the warning above): its end could not start it; {nothing}",
             "fix the file (`sop validate`), or act from the step's page")


def os_user() -> str | None:
    """The OS account this terminal runs as: its real user id's name (not $USER, which anyone can set); None in a
    container whose user id has no name."""
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a user id without a passwd entry (a container): recorded without a name
        return None


def terminal_person(site: Any, given: str | None, what: str = "--as", closing: Any = None) -> Actor:
    """Who acts from this terminal: the person whose OS account it runs as, else ``given`` (``--as``) or
    $SOP_ACTOR, a person of config/ (``flows.language.actors.terminal_actor``); the OS user is recorded too. A
    refusal says which of the two named them and exits 1 (``closing`` first, e.g. the engine's pager)."""
    from_env = os.environ.get("SOP_ACTOR") if not given else None
    try:
        return terminal_actor(site, given or from_env, os_user(), "$SOP_ACTOR" if from_env else what)
    except (TerminalRefused, UnknownPerson) as exc:
        if closing is not None:
            closing()
        fail(str(exc), getattr(exc, "hint", None))


def _actor(engine: Any, given: str | None, what: str = "--as") -> Actor:
    """:func:`terminal_person` on the engine's site; a refusal closes its pager first."""
    return terminal_person(engine.library.site, given, what, engine.pager.close)


def _operator(engine: Any, actor: Actor, theirs: str) -> Actor:
    """``actor`` when they are one of ``settings.web.operators`` (as on the pages: ``theirs`` are the operators'), else
    a refusal that records nothing."""
    from flows.language.steps.human import in_access_list

    if not in_access_list(engine.library.site, actor.person, "operators"):
        engine.pager.close()
        fail(f"{actor.person} is not one of settings.web.operators: {theirs} are theirs; nothing was recorded",
             f"operators in config/settings.yaml: {', '.join(engine.library.site.settings.web.operators) or 'none'}")
    return actor


#: how long `sop run` waits for Prefect to create the flow run before leaving it to `sop serve`
LAUNCH_WAIT_S = 20.0


def _launch(engine: Any, run_id: str) -> None:
    """Create the run's flow run, waiting at most LAUNCH_WAIT_S (a busy Prefect server can take a minute).

    The run is recorded and its people paged already; if Prefect is slow or fails, `sop serve`'s
    nudger creates the flow run (it retries runs without one), so nothing is lost.
    """
    import threading

    failed: list[BaseException] = []

    def work() -> None:
        try:
            engine.launcher.launch(run_id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failed.append(exc)

    thread = threading.Thread(target=work, name="launch", daemon=True)
    thread.start()
    thread.join(LAUNCH_WAIT_S)
    if thread.is_alive() or failed:
        why = f"failed: {failed[0]}" if failed else f"did not answer within {LAUNCH_WAIT_S:g}s"
        err_console.print(f"[yellow]warning:[/] creating the flow run {why}; `sop serve` creates it when "
                          "Prefect answers (the run is recorded and its people are paged)")


@app.command()
def run(
    sop_id: Annotated[str, typer.Argument(metavar="ID", help="SOP id (see `sop list`)")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="input as key=value (repeatable); a choice by its id or its label, e.g. -p area=PR")] = None,
    speed: Annotated[float | None, typer.Option(help=f"compress time, {SPEED_MIN:g} to {SPEED_MAX:g}: 3600 makes an hour a second")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="wait until the run finishes, showing progress")] = False,
    as_: Annotated[str | None, typer.Option("--as", help="who starts it: a person id in config/ (default: the person this OS account is, else $SOP_ACTOR)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    drill: Annotated[bool, typer.Option("--drill", help="a drill (a game day): its pages say [DRILL], it attaches to no real run, its http, command and notify steps are simulated, and people answer it as they would a real run (`sop drill` answers for them)")] = False,
    people: Annotated[str | None, typer.Option("--people", help="with --drill: who takes part, person ids (e.g. chen-jie,wang-fang); its pages to anyone else are not sent, each recorded as not sent (default: everyone the SOP reaches; who starts it takes part)")] = None,
) -> None:
    """Start a run of an SOP. Its owner is paged at once; repeats with the same dedup key attach."""
    if speed is not None and (problem := check_speed(speed)) is not None:
        fail(f"--{problem}", "e.g. --speed 3600 makes an hour a second")
    engine = _engine(lenient=False)  # a new run: its library as `sop serve` would load it, every file valid
    if sop_id not in engine.library.sops:
        fail(f"unknown SOP `{sop_id}`", f"known: {', '.join(sorted(engine.library.sops))}")
    inputs = _choice_ids(engine.library.get(sop_id).sop.inputs, _pairs(param, "-p"))
    try:  # the inputs first: a typo is told at once, whether or not the stack is up
        check_inputs(engine.library.get(sop_id).sop, inputs)
    except InputRefused as exc:
        engine.pager.close()
        fail_all(exc.problems, f"the inputs do not fit {sop_id}", f"see `sop show {sop_id}` for its inputs")
    taking_part = participants.named(people) if people is not None else None
    if taking_part is not None and (found := participants.problems(engine.library.site, taking_part, drill=drill)):
        engine.pager.close()
        fail_all(found, "nothing was started", "e.g. --drill --people chen-jie,wang-fang (ids of config/people.yaml)")
    try:
        with engine.launcher._client() as client:
            engine.launcher.deployment_id(client, sop_id)
    except LaunchError as exc:
        fail(str(exc), exc.hint or "start the stack with `sop serve` (or set PREFECT_API_URL)")
    except Exception as exc:
        fail(f"cannot reach the Prefect server at {engine.launcher.api_url}: {exc}", "start it with `sop serve`")
    who = _actor(engine, as_)
    try:
        result = engine.start(sop_id, inputs, initiator=who,
                              trigger={"kind": "drill" if drill else "manual", "by": who.person, "via": "cli",
                                       "os_user": who.os_user,
                                       **({participants.PEOPLE: taking_part} if taking_part else {})},
                              speed=speed, launch=False)
        if not result.attached and engine.view(result.run_id).is_open:
            _launch(engine, result.run_id)
    except InputRefused as exc:
        fail_all(exc.problems, f"the inputs do not fit {sop_id}", f"see `sop show {sop_id}` for its inputs")
    finally:
        engine.pager.close()
    if as_json:
        print_json({"run": result.run_id, "attached": result.attached, "repeats": result.repeats})
    elif result.attached:
        console.print(f"attached to open run [bold]{result.run_id}[/] (same dedup key; repeat #{result.repeats})")
    else:
        view = engine.view(result.run_id)
        what = f"drill run [bold]{result.run_id}[/] of {sop_id} at ×{view.speed:g}" if drill \
            else f"run [bold]{result.run_id}[/] of {sop_id}"
        paged = "owner paged"
        part = participants.taking_part(view)  # a drill naming its people pages no one else: its owner neither
        if part is not None and (owner := engine.person_for(view.sop.owner)) not in part:
            paged = f"its owner ({owner}) not paged: not in the drill"
        console.print(f"[green]✓[/] started {what}; {paged}"
                      + (f"; taking part: {', '.join(dict.fromkeys([*taking_part, who.person]))}" if taking_part else ""))
    if wait:
        _wait_for(engine, result.run_id)


def _wait_for(engine: Any, run_id: str) -> None:
    last = None
    with console.status(f"waiting for run {run_id}…") as status:
        while True:
            view = engine.view(run_id)
            states = {s: r["state"] for s, r in view.steps.items()}
            done = sum(1 for s in states.values() if s in TERMINAL_STEP)
            text = f"run {run_id}: {done}/{len(states)} steps finished"
            if text != last:
                status.update(text)
                last = text
            if not view.is_open:
                break
            time.sleep(0.5)
    console.print(f"run {run_id} {view.run['status']}: {view.run['outcome']}")


def _report(run_id: str, step_id: str, name: str | None, outcome: str, fields: list[str] | None, note: str,
            evidence: list[str] | None, as_json: bool) -> None:
    engine = _engine()
    actor = _actor(engine, name)
    _follow_ups_loaded(engine, run_id, "nothing was recorded")
    values = _choice_ids(_form_of(engine, run_id, step_id), _pairs(fields, "-f")) if fields else {}
    report = HumanReport(actor=actor, outcome=outcome, values=values, note=note or "", evidence=evidence or [])
    try:
        state = engine.report(run_id, step_id, report)
    except (RunNotFound, StepNotActive) as exc:
        fail(str(exc))
    except ReportRefused as exc:
        fail_all(exc.problems, f"report on `{step_id}` refused; nothing was recorded", f"see `sop status {run_id}`")
    finally:
        engine.pager.close()
    if as_json:
        print_json({"run": run_id, "step": step_id, "state": state})
    elif state == "active":
        console.print(f"[green]✓[/] approval by {actor.person} recorded on {step_id}; more approvers needed")
    else:
        console.print(f"[green]✓[/] {step_id} {state} by {actor.person}")


@app.command()
def done(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="run id (or a unique prefix)")],
    step_id: Annotated[str, typer.Argument(metavar="STEP", help="step id")],
    actor: Annotated[str | None, typer.Option("--as", "--actor", help="who did it: a person id in config/ (default: the person this OS account is, else $SOP_ACTOR)")] = None,
    field: Annotated[list[str] | None, typer.Option("--field", "-f", help="form value as name=value (repeatable); a choice by its id or, in any case, its label: -f category=product_quality or -f 'category=Product quality'")] = None,
    note: Annotated[str, typer.Option(help="free text for the record")] = "",
    evidence: Annotated[list[str] | None, typer.Option(help="a link or file reference (repeatable)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Report a human step done, with its form values. Bad input changes nothing."""
    _report(run_id, step_id, actor, "done", field, note, evidence, as_json)


@app.command()
def reject(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="run id (or a unique prefix)")],
    step_id: Annotated[str, typer.Argument(metavar="STEP", help="step id")],
    actor: Annotated[str | None, typer.Option("--as", "--actor", help="who decided: a person id in config/ (default: the person this OS account is, else $SOP_ACTOR)")] = None,
    note: Annotated[str, typer.Option(help="why it is rejected")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Report a human step rejected (e.g. an approval refused); steps after it are skipped."""
    if not note.strip():
        fail("a rejection needs a reason", "pass --note '…'")
    _report(run_id, step_id, actor, "rejected", None, note, None, as_json)


@contextmanager
def _acting(name: str | None, nothing: str) -> Iterator[tuple[Any, Actor]]:
    """An engine (no Prefect needed) and the person acting from this terminal; a refusal is printed with
    ``nothing`` (what was not done) and exits 1, and the engine's pager is closed either way."""
    engine = _engine(prefect=False)
    try:
        who = _actor(engine, name)
        yield engine, who
    except (RunNotFound, StepNotActive) as exc:
        fail(str(exc))
    except (ReportRefused, InputRefused) as exc:
        fail_all(exc.problems, nothing)
    finally:
        engine.pager.close()


@app.command()
def take(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="run id (or a unique prefix)")],
    step_id: Annotated[str, typer.Argument(metavar="STEP", help="step id")],
    actor: Annotated[str | None, typer.Option("--as", "--actor", help="who takes it: a person id in config/ (default: the person this OS account is, else $SOP_ACTOR)")] = None,
) -> None:
    """"I'll take it": hold a step of your role; the other members are told."""
    with _acting(actor, f"cannot take `{step_id}`; nothing was recorded") as (engine, who):
        engine.claim(run_id, step_id, who)
    console.print(f"[green]✓[/] {step_id} is yours, {who.person}; the others were told")


@app.command(name="hand-over")
def hand_over(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="run id (or a unique prefix)")],
    step_id: Annotated[str, typer.Argument(metavar="STEP", help="step id")],
    to: Annotated[str, typer.Option("--to", help="who takes it over: a person id in config/")],
    actor: Annotated[str | None, typer.Option("--as", "--actor", help="who hands it over: a person id in config/ (default: the person this OS account is, else $SOP_ACTOR)")] = None,
    note: Annotated[str, typer.Option(help="what they need to know")] = "",
) -> None:
    """Hand an active step to another member of its role (its lead: to anyone); they are paged."""
    with _acting(actor, f"cannot hand `{step_id}` over; nothing was recorded") as (engine, who):
        engine.hand_over(run_id, step_id, who, to, note)
    console.print(f"[green]✓[/] {step_id} handed to {to}; they were paged")


@app.command(name="update")
def update(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="run id (or a unique prefix)")],
    text: Annotated[str, typer.Option("--text", "-t", help="the status: what is happening now, what comes next")],
    actor: Annotated[str | None, typer.Option("--as", "--actor", help="who posts it: a person id in config/ (default: the person this OS account is, else $SOP_ACTOR)")] = None,
) -> None:
    """Post a status update on an open run (it keeps the run's status cadence)."""
    with _acting(actor, "nothing was recorded") as (engine, who):
        engine.post_update(run_id, who, text)
    console.print(f"[green]✓[/] status update posted on {run_id} by {who.person}")


@app.command(name="snooze")
def snooze(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="run id (or a unique prefix)")],
    for_: Annotated[str, typer.Option("--for", help="how much later the next status ask comes (SOP time), e.g. 15m")],
    reason: Annotated[str, typer.Option(help="why (recorded)")],
    actor: Annotated[str | None, typer.Option("--as", "--actor", help="who snoozes: a person id in config/ (default: the person this OS account is, else $SOP_ACTOR)")] = None,
) -> None:
    """Push the next status-update ask of a run, by at most its cadence's max_snooze."""
    from flows.language.durations import parse_duration

    try:
        by = parse_duration(for_)
    except ValueError as exc:
        fail(f"--for: {exc}", "write a duration such as 10m or 30m (up to the SOP's max_snooze)")
    from flows.clock import local_time

    with _acting(actor, "nothing was snoozed") as (engine, who):
        until = engine.snooze(run_id, who, by, reason)
        zone = engine.site.settings.timezone
    console.print(f"[green]✓[/] the next status ask of {run_id} comes at {local_time(until, zone, seconds=True)}")


@app.command(name="need-help")
def need_help(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="run id (or a unique prefix)")],
    step_id: Annotated[str, typer.Argument(metavar="STEP", help="step id")],
    actor: Annotated[str | None, typer.Option("--as", "--actor", help="who asks: a person id in config/ (default: the person this OS account is, else $SOP_ACTOR)")] = None,
    note: Annotated[str, typer.Option(help="what you need")] = "",
) -> None:
    """Escalate a step to its next level now (you stay on it)."""
    with _acting(actor, f"cannot ask for help on `{step_id}`; nothing was recorded") as (engine, who):
        paged = engine.ask_for_help(run_id, step_id, who, note)
    console.print(f"[green]✓[/] help asked on {step_id}: paged {', '.join(paged)}")


@app.command()
def cancel(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="run id (or a unique prefix)")],
    reason: Annotated[str, typer.Option(help="why (recorded and sent to the people involved)")],
    actor: Annotated[str | None, typer.Option("--as", "--actor", help="who cancels: a person id in config/ (default: the person this OS account is, else $SOP_ACTOR)")] = None,
) -> None:
    """Cancel an open run: steps stop, timers are disarmed, the people involved are told."""
    engine = _engine()
    who = _actor(engine, actor)
    _follow_ups_loaded(engine, run_id, "nothing was recorded")
    try:
        view = engine.cancel(run_id, reason, who)
    except (RunNotFound, StepNotActive, InputRefused) as exc:
        fail(str(exc))
    finally:
        engine.pager.close()
    console.print(f"[green]✓[/] run {view.id} cancelled")
