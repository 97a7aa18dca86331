"""The responder's step page (through a personal link or a session), and what every page shares.

``GET /s/<token>`` opens a step's page from the link in a message, without a password; the
forms post back to the same link, and the first action through it uses it up (in the same
transaction as the action: ``link_uses``), then begins a session for that person so they
can go on (take the step, then report it). ``/runs/<run>/steps/<step>`` is the same page
for a signed-in person; ``/runs/<run>`` (the run) and ``/`` (what waits for you) are
``flows/web/runs.py``.

Every post is checked: the CSRF token of the session (or of the link), the person's right
to act on the step (``Engine.check_may_act``), the form against the SOP's field models
(problems shown beside their fields, nothing written). What is accepted goes through the
engine like any other report, recorded with ``via: link`` or ``via: web``. Putting a step
on hold and releasing it are two more of its actions (``flows/web/holds.py``).
"""

from __future__ import annotations

import hmac
import logging
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from flows.audit import Audit
from flows.audit.facts import Escalation, HandOver
from flows.engine.links import Claim, LinkRefused
from flows.engine.participants import taking_part
from flows.engine.transitions import StepHeld, StepNotActive
from flows.engine.view import RunNotFound, RunView, instructions
from flows.language.actors import Actor
from flows.language.fields import TEXT_MAX
from flows.language.steps.human import HumanReport, HumanStep, ReportRefused, evidence_problems, lead_chain, members
from flows.ledger.vocabulary import RecordKind, StepState
from flows.web.app import Web
from flows.web.forms import Refused, form_fields, read_form
from flows.web.holds import HOLD_ACTIONS, StepHold, hold_or_release, step_hold
from flows.web.identity import client_of
from flows.web.render import page
from flows.web.sessions import Session

log = logging.getLogger("sop.web")
router = APIRouter(include_in_schema=False)
ACTIONS = ("done", "reject", "claim", "help", "handover", *HOLD_ACTIONS)
#: every page: not cached (links and forms are personal), never framed by another site, types as sent
PAGE_HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff"}
#: the header's links: path, label, who sees it (None: anyone signed in)
NAV = (("/", "My steps", None), ("/board", "Board", "operators"), ("/oncall", "On call", "operators"),
       ("/silences", "Silences", "operators"),
       ("/desk", "Audit", "auditors"), ("/library", "Library", None), ("/people", "People", None))


def _web(request: Request) -> Web:
    return request.app.state.web


def html(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    """A page, with the cookie of a session begun during the request."""
    web = _web(request)
    session = web.session(request)
    nav = [(path, label) for path, label, access in NAV if access is None and session or web.may(session, access or "")]
    body = page(name, viewer=session, site=web.site, request=request, nav=nav, **context)
    response = HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)
    return web.finish(request, response)


def notice(request: Request, title: str, message: str, status: int, **context: Any) -> Response:
    """A page that only says something (a refused link, a missing run)."""
    return html(request, "notice.html.j2", status=status, title=title, message=message, **context)


def sign_in_first(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/sign-in?{urlencode({'next': target})}", status_code=303)


def operator_only(request: Request, theirs: str = "the board, starting and cancelling runs"
                  ) -> tuple[Session | None, Response | None]:
    """The signed-in operator (``settings.web.operators``), or the page to answer with: sign in first, or
    403 naming what is ``theirs``."""
    web = _web(request)
    session = web.session(request)
    if session is None:
        return None, sign_in_first(request)
    if not web.may(session, "operators"):
        return session, notice(request, "Operators only", f"{theirs[:1].upper()}{theirs[1:]} are for "
                               f"{web.who_may('operators')}: ask them (settings.web.operators).", 403)
    return session, None


async def signed_form(request: Request, nothing: str, *, operators: str | None = None
                      ) -> tuple[Session, dict[str, str]] | Response:
    """The signed-in person and the fields they posted, the session's CSRF token checked; else the page to
    answer with (sign in first, 403 when ``operators`` names what only operators may do, or "this form has
    expired" saying that ``nothing`` was done)."""
    web = _web(request)
    if operators is not None:
        session, refused = await run_in_threadpool(operator_only, request, operators)
        if refused is not None:
            return refused
    else:
        session = await run_in_threadpool(web.session, request)
    if session is None:
        return sign_in_first(request)
    form = await request.form(max_files=0, max_fields=20)
    fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    if not session.csrf_ok(fields.get("csrf")):
        return notice(request, "This form has expired", f"Reload the page and try again. {nothing}", 403)
    return session, fields


# --- what a step page shows ----------------------------------------------------------------


@dataclass
class StepPage:
    """Everything the step template needs, read in one go from the engine's view."""

    view: RunView
    step: HumanStep
    row: dict[str, Any]
    person: str
    may_act: bool
    hold: StepHold
    #: the hand-over that gave the step to its holder now (None: nobody handed it to them)
    handed: HandOver | None = None
    #: who has it now: its holder, else the person its role's on-call answers with
    with_person: str | None = None
    #: the levels of its escalation ladder that fired (a reminder is one), oldest first
    escalations: tuple[Escalation, ...] = ()
    #: whom the latest "Need help" paged (empty: no level of the ladder was left, its role's lead was paged)
    help_paged: tuple[str, ...] = ()
    #: whom "Need help" would page now, each with the role they answer for (``Engine.help_would_page``)
    help_reach: tuple[tuple[str, str | None], ...] = ()
    #: the role each person paged by the latest level (and by the latest "Need help") answered for
    #: (``Engine.roles_paged``): the page names them "Chen Jie (PR Lead)", the backup too
    paged_as: dict[str, str] = field(default_factory=dict)

    @property
    def drill_only(self) -> bool:
        """A drill that names who takes part (:func:`reached`)."""
        return taking_part(self.view) is not None

    def reached(self, fired: Any) -> list[str]:
        """Whom a fired ladder level paged, as :func:`reached` says."""
        return reached(fired, self.drill_only)

    @property
    def active(self) -> bool:
        return self.view.is_open and self.row["state"] == StepState.ACTIVE

    @property
    def holder(self) -> str | None:
        return self.row.get("claimed_by")


def reached(fired: Any, drill_only: bool) -> list[str]:
    """Whom a fired ladder level (or "Need help") paged: the people its record names; a record naming none, the
    ladder's words (a record from before 2026-12, which named nobody), unless the run is a drill naming who takes
    part: then nobody taking part was reached."""
    return list(fired.paged or ([] if drill_only else fired.notify))


def step_page(web: Web, run_id: str, step_id: str, person: str) -> StepPage:
    """The step as ``person`` sees it (RunNotFound / KeyError when there is no such run or step)."""
    view = web.engine.view(run_id)
    step = view.sop.step(step_id)
    if not isinstance(step, HumanStep):
        raise KeyError(step_id)
    try:
        web.engine.check_may_act(view, step, Actor(person))
        may = True
    except ReportRefused:
        may = False
    row = view.steps[step.id]
    holder = row.get("claimed_by")
    if may and holder and holder != person and person not in web.engine.overseers(view, step):
        may = False  # taken by another member of the role: this reader's page shows what happened
    story = Audit(web.engine.ledger).run(view.id).steps[step.id]
    handed = story.hand_overs[-1] if story.hand_overs and story.hand_overs[-1].to == holder else None
    helped = _help_fired(story)
    return StepPage(view, step, row, person, may, step_hold(web.engine, view, step, person), handed=handed,
                    with_person=holder or web.engine.person_for(step.assignee), escalations=tuple(story.escalations),
                    help_paged=tuple(reached(helped, taking_part(view) is not None)) if helped else (),
                    help_reach=tuple(web.engine.help_would_page(view, step, person)) if may and view.is_open
                    and row["state"] == StepState.ACTIVE else (),
                    paged_as=_paged_as(web, view, step, story.escalations[-1] if story.escalations else None, helped))


def _paged_as(web: Web, view: RunView, step: HumanStep, *fired: Any) -> dict[str, str]:
    """The role each person the ``fired`` ladder levels paged answered for (None: a level not fired; one level is
    read once), as on call when it fired."""
    out: dict[str, str] = {}
    for i, level in enumerate(fired):
        if level is not None and all(level is not other for other in fired[:i]):
            out.update(web.engine.roles_paged(view, step, list(level.notify), level.at))
    return out


def _help_fired(story: Any) -> Any:
    """The ladder level the step's latest "Need help" fired (recorded after it; it says whom it paged), or None."""
    if not story.help or story.help[-1].level is None:
        return None
    asked = story.help[-1]
    return next((e for e in story.escalations if e.seq > asked.seq and e.level == asked.level), None)


def render_step(request: Request, sp: StepPage, *, action_url: str, csrf: str, status: int = 200,
                errors: dict[str, str] | None = None, problems: list[str] | None = None,
                posted: dict[str, str] | None = None, done: str | None = None, link: Claim | None = None,
                dropped: list[str] | None = None, told: str | None = None) -> Response:
    """The step's page; ``dropped``: the names of the files a refused report carried (a browser does not keep a
    chosen file across the answer: the page asks for them again by name); ``told``: a notice that is no
    failure (a used link showing what happened)."""
    web = _web(request)
    site = web.site
    view, step = sp.view, sp.step
    approvals = view.approvals(step.id)
    result = view.result(step.id)
    return html(
        request, "step.html.j2", status=status,
        sp=sp, run=view.run, sop=view.sop, step=step, fields=form_fields(step.form), action_url=action_url,
        csrf=csrf, errors=errors or {}, problems=problems or [], posted=posted or {}, done=done, link=link,
        dropped=dropped or [], told=told,
        tz=web.zone(sp.person), now=web.engine.clock.now(), speed=view.speed,
        approvals=approvals, result=result, role_members=sorted(members(site, step.assignee)),
        above_role=sp.person in lead_chain(site, step.assignee),
        instructions=instructions(view, step, site), handover_to=_handover_to(web, sp),
        next_steps=_next_steps(web, view, step.id) if done and done not in AT_THE_STEP else [],
        earlier=_earlier(view, step.id) if sp.active else [],
    )


def _earlier(view: RunView, current: str) -> list[dict[str, Any]]:
    """What the run's people reported before (their steps' values, notes and evidence): a step's instructions often
    build on them ("see the sign-off comments"). The steps this one ``needs`` come first (``needed``: the page shows
    them unfolded), then the others, each in the SOP's order."""
    needs = set(view.sop.step(current).needs)
    out = []
    for s in view.sop.steps:
        row = view.steps[s.id]
        if s.id == current or not isinstance(s, HumanStep) or row["state"] not in (StepState.DONE, StepState.REJECTED):
            continue
        out.append({"title": s.name, "state": row["state"], "actor": row["actor"], "at": row["finished_at"],
                    "note": row["note"], "result": view.result(s.id), "form": s.form, "needed": s.id in needs})
    return sorted(out, key=lambda e: not e["needed"])


def _handover_to(web: Web, sp: StepPage) -> list[tuple[str | None, list[str]]]:
    """Whom the reader may hand the step to (``Engine.hand_over_targets``, the rule the engine checks): the role's
    other members for its holder; anyone for a lead above the role, the run's owner or an operator; nobody else.

    Grouped as the reader looks for them: the step's role's members first (under its id), then everyone else (None),
    each group by name: a list of every person A-Z hid the one colleague who covers for her."""
    if not sp.active:
        return []
    site = web.site
    pool = web.engine.hand_over_targets(sp.view, sp.step, sp.person)
    role = set(members(site, sp.step.assignee)) if sp.step.assignee in site.roles else set()
    by_name = sorted(pool, key=lambda pid: site.people[pid].name.casefold())
    groups = [(sp.step.assignee, [p for p in by_name if p in role]), (None, [p for p in by_name if p not in role])]
    return [(label, people) for label, people in groups if people]


#: actions after which the reader is still at the step: no "who has it now" to tell
AT_THE_STEP = ("claim", "help", "hold", "release")


def _next_steps(web: Web, view: RunView, current: str) -> list[dict[str, Any]]:
    """After a report: the run's other steps waiting on people now, each with who has it (its holder, else the
    role's primary now) and the role it is for (None when it names a person): the page says which are the reader's."""
    out = []
    for s in view.sop.steps:
        row = view.steps[s.id]
        if s.id != current and row["state"] == StepState.ACTIVE and isinstance(s, HumanStep):
            person = row.get("claimed_by") or web.engine.person_for(row["assignee"])
            out.append({"id": s.id, "title": s.name, "person": person,
                        "role": row["assignee"] if row["assignee"] in web.site.roles else None})
    return out


# --- acting ----------------------------------------------------------------------------------


async def _read_post(request: Request, web: Web) -> tuple[dict[str, str], list[UploadFile]]:
    form = await request.form(max_files=5, max_fields=200, max_part_size=web.settings.upload_max_bytes)
    fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    files = [v for k, v in form.multi_items() if k == "evidence_file" and not isinstance(v, str) and v.filename]
    return fields, files


#: what one post may carry beside its form: a note's length, evidence links
MAX_NOTE = TEXT_MAX
MAX_LINKS = 20


async def _uploads(web: Web, files: list[UploadFile]) -> list[tuple[str, bytes]]:
    """The uploaded files, read (within the size limit) but not kept yet: only an accepted report keeps them."""
    out = []
    for upload in files:
        content = await upload.read(web.settings.upload_max_bytes + 1)
        if len(content) > web.settings.upload_max_bytes:
            raise Refused({"evidence": f"{upload.filename} is larger than {web.settings.upload_max_bytes:,} bytes"})
        if content:
            out.append((upload.filename or "file", content))
    return out


def _checked(posted: dict[str, str]) -> tuple[str, list[str]]:
    """The post's note and evidence links, refused when too long or carrying NUL characters."""
    errors = {name: "contains a NUL character" for name, value in posted.items() if "\x00" in value}
    if errors:
        raise Refused({("evidence" if name == "evidence_link" else name): message for name, message in errors.items()})
    note = (posted.get("note") or "").strip()
    if len(note) > MAX_NOTE:
        raise Refused({"note": f"at most {MAX_NOTE:,} characters ({len(note):,} given)"})
    links = [line.strip() for line in (posted.get("evidence_link") or "").splitlines() if line.strip()]
    if len(links) > MAX_LINKS or any(len(link) > 2000 for link in links):
        raise Refused({"evidence": f"at most {MAX_LINKS} links of 2,000 characters"})
    return note, links


def act(web: Web, sp: StepPage, actor: Actor, action: str, posted: dict[str, str],
        uploads: list[tuple[str, bytes]], link: Claim | None) -> str:
    """Carry out one action of the step page; the step's new state (Refused / LinkRefused otherwise).

    Uploaded evidence is kept (``var/evidence``) only once the person and the form are checked, and
    taken back when the engine still refuses the report.
    """
    engine, view, step = web.engine, sp.view, sp.step
    note, links = _checked(posted)
    if action in HOLD_ACTIONS:
        return hold_or_release(engine, view, step, actor, action, posted, note, link)
    if action == "claim":
        engine.claim(view.id, step.id, actor, link=link)
        return "claimed"
    if action == "help":
        engine.ask_for_help(view.id, step.id, actor, note, link=link)
        return "help"
    if action == "handover":
        to = (posted.get("to") or "").strip()
        if not to:
            raise Refused({"to": "choose who takes it over"})
        return engine.hand_over(view.id, step.id, actor, to, note, link=link)
    engine.check_may_act(view, step, actor)
    if action == "reject":
        if not note:
            raise Refused({"note": "a rejection needs a reason"})
        return engine.report(view.id, step.id, HumanReport(actor=actor, outcome="rejected", note=note), link=link)
    values, errors = read_form(step.form, posted)
    if step.evidence and not links and not uploads:
        errors["evidence"] = "this step needs evidence: a link, or a file to upload"
    elif bad := evidence_problems(links):  # said with the form's other mistakes, not on a second try
        errors["evidence"] = "; ".join(bad)
    if errors:
        raise Refused(errors)
    kept = [web.keep_evidence(name, content) for name, content in uploads]
    report = HumanReport(actor=actor, outcome="done", values=values, note=note,
                         evidence=[*links, *(e.reference for e in kept)])
    try:
        return engine.report(view.id, step.id, report, link=link)
    except Exception:
        web.forget_evidence([e for e in kept if e.new])
        raise


async def handle_post(request: Request, sp: StepPage, actor: Actor, *, csrf_ok: Any, action_url: str,
                      csrf: str, link: Claim | None) -> Response:
    """Read the post, act, and answer with the page: refusals beside their fields, success as a banner."""
    web = _web(request)
    posted, files = await _read_post(request, web)
    action = posted.get("action", "done")
    if not csrf_ok(posted.get("csrf")):
        return notice(request, "This form has expired", "The page was open too long or came from elsewhere: "
                      "reload it and try again. Nothing was recorded.", 403)
    if action not in ACTIONS:
        return render_step(request, sp, action_url=action_url, csrf=csrf, status=422, link=link, posted=posted,
                           problems=[f"unknown action `{action}` (one of {', '.join(ACTIONS)})"])
    dropped = [f.filename or "file" for f in files] if action == "done" else []
    try:
        uploads = await _uploads(web, files) if action == "done" else []
        state = await run_in_threadpool(act, web, sp, actor, action, posted, uploads, link)
    except Refused as exc:
        return render_step(request, sp, action_url=action_url, csrf=csrf, status=exc.status, link=link, posted=posted,
                           errors=exc.errors, problems=exc.problems, dropped=dropped)
    except ReportRefused as exc:
        errors, problems = _by_field(exc.problems, sp.step)
        return render_step(request, sp, action_url=action_url, csrf=csrf, status=422, link=link, posted=posted,
                           errors=errors, problems=problems, dropped=dropped)
    except (StepHeld, StepNotActive) as exc:
        fresh = await run_in_threadpool(step_page, web, sp.view.id, sp.step.id, sp.person)
        return render_step(request, fresh, action_url=action_url, csrf=csrf, status=409, link=link,
                           problems=[str(exc)])
    except LinkRefused as exc:
        return await run_in_threadpool(_link_refused, request, web, link, exc)
    log.info("event=page_action run=%s step=%s action=%s actor=%s state=%s", sp.view.id, sp.step.id, action,
             actor.described(), state)
    if link is not None:  # the link is used up: a session carries the person on, no longer than the link
        cookie, session = await run_in_threadpool(web.sessions.begin, link.person, "link", until=link.expires_at,
                                                  run=link.run_id, step=link.step_id)
        request.state.new_cookie = (cookie, session)
    target = f"/runs/{quote(sp.view.id)}/steps/{quote(sp.step.id)}?done={action}"
    return web.finish(request, RedirectResponse(target, status_code=303))


def _by_field(problems: list[str], step: HumanStep) -> tuple[dict[str, str], list[str]]:
    """The engine's problems that name a form field (``field `severity`: …``) go beside it."""
    errors: dict[str, str] = {}
    rest: list[str] = []
    for problem in problems:
        name = next((f for f in step.form if problem.startswith(f"field `{f}`")), None)
        if name:
            errors[name] = problem.split(":", 1)[-1].strip() if ":" in problem else problem
        elif problem.startswith("hand over to") or " is not a member of " in problem:
            errors["to"] = problem
        elif "evidence" in problem:
            errors["evidence"] = problem
        else:
            rest.append(problem)
    return errors, rest


# --- personal links --------------------------------------------------------------------------


def _link_refused(request: Request, web: Web, claim: Claim | None, exc: LinkRefused) -> Response:
    if claim is not None:  # one of our links, used again: the chain keeps it (a forged or expired one is only logged)
        with web.engine.ledger.transaction() as tx:
            # no actor: whoever holds a copy of the link sent it (a forwarded message, a browser's history), not
            # necessarily its person; the record names whose link it was
            tx.append(RecordKind.LINK_REFUSED, claim.run_id, claim.step_id, actor=None, link_of=claim.person,
                      reason=exc.reason, client=client_of(request))
    log.warning("event=link_refused reason=%s run=%s step=%s", exc.reason, claim.run_id if claim else "-",
                claim.step_id if claim else "-")
    if exc.reason == "used" and claim is not None:
        return _what_happened(request, web, claim, str(exc))
    if exc.reason == "expired" and exc.claim is not None and exc.claim.run_id and exc.claim.step_id:
        return _expired(request, web, exc.claim)
    status = 410 if exc.reason == "expired" else 403
    return notice(request, "This link cannot be used", str(exc), status)


def _expired(request: Request, web: Web, claim: Claim) -> Response:
    """An expired link of ours: which step it was for, when it expired in its person's time, and the way back in."""
    step_path = f"/runs/{claim.run_id}/steps/{claim.step_id}"
    try:
        view = web.engine.view(claim.run_id or "")
        what = f"“{view.sop.step(claim.step_id).name}” of run {view.id}"
    except (RunNotFound, KeyError):
        what = f"step {claim.step_id} of run {claim.run_id}"
    zone = web.zone(claim.person, web.site.settings.timezone)
    at = claim.expires_at.astimezone(ZoneInfo(zone))
    return notice(request, "This link has expired",
                  f"Your link to {what} expired at {at:%Y-%m-%d %H:%M} ({zone}). Sign in to open the step: "
                  "a sign-in link goes to your own contacts.", 410,
                  action=(f"/sign-in?{urlencode({'next': step_path})}", "Sign in to open the step"))


def _what_happened(request: Request, web: Web, claim: Claim, message: str) -> Response:
    try:
        sp = step_page(web, claim.run_id or "", claim.step_id or "", claim.person)
    except (RunNotFound, KeyError):
        return notice(request, "This link cannot be used", message, 410)
    return render_step(request, sp, action_url="", csrf="", status=410, told=message, link=claim)


#: what a chat app or a mail client glues to the end of a link it shows (a sentence's full stop, a bracket, a space)
TRAILING = ".,;:!?)]}>'\"” \t"


def _read_link(request: Request, web: Web, token: str) -> tuple[Claim | None, Response | None]:
    try:
        return web.links.read_step(token), None
    except LinkRefused as exc:
        clean = token.rstrip(TRAILING)
        if exc.reason == "forged" and clean != token:  # "…/s/eyJ….abc." copied with the sentence's full stop
            try:
                web.links.read_step(clean)
            except LinkRefused as again:
                if again.reason == "expired":  # ours, expired: the clean link's page says so
                    return None, RedirectResponse(f"/s/{clean}", status_code=303)
            else:
                return None, RedirectResponse(f"/s/{clean}", status_code=303)
        return None, _link_refused(request, web, None, exc)


#: what a used link did, in words (the link's action as the ledger keeps it)
USED_FOR = {"done": " to report the step done", "rejected": " to reject the step", "claim": " to take the step",
            "help": " to ask for help", "hand-over": " to hand the step over", "hold": " to put the step on hold",
            "release": " to release the step's hold"}


@router.get("/s/{token}")
def open_link(request: Request, token: str) -> Response:
    """A personal link from a message: the step's page, as its person, without a password."""
    web = _web(request)
    claim, refused = _read_link(request, web, token)
    if refused is not None:
        return refused
    assert claim is not None
    used = web.engine.link_used(claim.nonce)
    if used:
        how = USED_FOR.get(used, "")
        return _what_happened(request, web, claim, f"this link was already used{how}: here is what happened")
    try:
        sp = step_page(web, claim.run_id or "", claim.step_id or "", claim.person)
    except (RunNotFound, KeyError):
        return notice(request, "No such step", "The run or step of this link is gone.", 404)
    return render_step(request, sp, action_url=f"/s/{token}", csrf=web.link_csrf(claim), link=claim)


@router.post("/s/{token}")
async def act_through_link(request: Request, token: str) -> Response:
    web = _web(request)
    claim, refused = await run_in_threadpool(_read_link, request, web, token)
    if refused is not None:
        return refused
    assert claim is not None
    try:
        sp = await run_in_threadpool(step_page, web, claim.run_id or "", claim.step_id or "", claim.person)
    except (RunNotFound, KeyError):
        return notice(request, "No such step", "The run or step of this link is gone.", 404)
    expected = web.link_csrf(claim)
    actor = Actor(person=claim.person, via="link")
    return await handle_post(request, sp, actor, csrf_ok=lambda given: hmac.compare_digest(expected, given or ""),
                             action_url=f"/s/{token}", csrf=expected, link=claim)


# --- signed in -------------------------------------------------------------------------------


@router.get("/runs/{run}/steps/{step}")
def step_for_session(request: Request, run: str, step: str, done: str | None = None) -> Response:
    web = _web(request)
    session = web.session(request)
    if session is None:
        return sign_in_first(request)
    try:
        sp = step_page(web, run, step, session.person)
    except (RunNotFound, KeyError):
        return notice(request, "No such step", f"There is no step `{step}` in run `{run}`.", 404)
    return render_step(request, sp, action_url=f"/runs/{quote(sp.view.id)}/steps/{quote(step)}", csrf=session.csrf,
                       done=done if done in ACTIONS else None)


@router.post("/runs/{run}/steps/{step}")
async def act_in_session(request: Request, run: str, step: str) -> Response:
    web = _web(request)
    session: Session | None = await run_in_threadpool(web.session, request)
    if session is None:
        return notice(request, "Sign in first", "Your session ended: sign in again. Nothing was recorded.", 401)
    try:
        sp = await run_in_threadpool(step_page, web, run, step, session.person)
    except (RunNotFound, KeyError):
        return notice(request, "No such step", f"There is no step `{step}` in run `{run}`.", 404)
    return await handle_post(request, sp, web.actor(session), csrf_ok=session.csrf_ok,
                             action_url=f"/runs/{quote(sp.view.id)}/steps/{quote(step)}", csrf=session.csrf,
                             link=None)


@router.get("/evidence/{sha256}")
def evidence(request: Request, sha256: str) -> Response:
    """An uploaded evidence file, to signed-in people (its SHA-256 is in the ledger)."""
    web = _web(request)
    if web.session(request) is None:
        return sign_in_first(request)
    path = web.evidence_path(sha256)
    if path is None:
        return notice(request, "No such file", "No evidence file has that SHA-256.", 404)
    # downloaded, never shown inline (an uploaded page or SVG must not run as this site), under the name it was
    # uploaded with (?name=, from the ledger's reference) so a phone opens it with the right app
    given = re.sub(r"[\x00-\x1f\x7f/\\\"]", "_", request.query_params.get("name") or "").strip(" .")[-120:]
    return FileResponse(path, media_type="application/octet-stream", filename=given or f"evidence-{sha256[:12]}")
