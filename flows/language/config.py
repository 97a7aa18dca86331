"""The site's settings (``config/*.yaml``): people, roles and on-call, channels, variables.

Contacts are Apprise URLs that may hold ``${VAR}`` / ``${VAR:-default}`` placeholders; they
are expanded from the environment only at delivery time (``expand_env``), so secrets never
sit in a model that might be logged. Validation only checks that every variable exists.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from flows.language.cadence import Cadence
from flows.language.calendar import Calendar
from flows.language.durations import SPEED_MAX, SPEED_MIN, format_duration
from flows.language.fields import SLUG, Duration, OptionalDuration, Strict, check_timezone
from flows.language.rotation import Rotation

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def env_names(template: str) -> list[tuple[str, bool]]:
    """The ``${VAR}`` names a template uses, each with whether it has a default."""
    return [(m.group(1), m.group(2) is not None) for m in _PLACEHOLDER.finditer(template)]


def missing_env(template: str, env: Mapping[str, str] | None = None) -> list[str]:
    """Names of variables the template needs (no default) that the environment lacks or holds empty.

    An empty value counts as missing because :func:`expand_env` takes ``VAR=""`` as unset:
    passed here, it would fail only at send time.
    """
    env = os.environ if env is None else env
    return [name for name, has_default in env_names(template) if not has_default and not env.get(name)]


def unset_reason(name: str, env: Mapping[str, str] | None = None) -> str:
    """Why :func:`missing_env` lists ``name``: ``"is not set"`` or ``"is empty"``."""
    env = os.environ if env is None else env
    return "is empty" if name in env else "is not set"


def expand_env(template: str, env: Mapping[str, str] | None = None) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}``.

    A placeholder that is the whole string is taken as is (it holds a full URL); an
    environment value inside a larger URL is URL-quoted, so a password with ``@`` or ``/``
    cannot break the URL. A default is written in config/ as URL text and is never quoted.
    An empty variable counts as unset. Raises KeyError naming the variable when it is
    missing and has no default.
    """
    env = os.environ if env is None else env
    whole = _PLACEHOLDER.fullmatch(template.strip())

    def value(match: re.Match[str], quoted: bool) -> str:
        name, default = match.group(1), match.group(2)
        if env.get(name):
            return quote(env[name], safe="") if quoted else env[name]
        if default is not None:
            return default
        raise KeyError(name)

    if whole:
        return value(whole, quoted=False)
    return _PLACEHOLDER.sub(lambda m: value(m, quoted=True), template)


class Away(Strict):
    """A stretch when a person cannot be paged (a holiday): ``sop validate --oncall`` reports their shifts in it.

    A date is midnight in the person's time zone; ``until`` is when they are back.
    """

    starts: date | datetime = Field(alias="from")
    until: date | datetime
    reason: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Away:
        if type(self.starts) is type(self.until) and self.until <= self.starts:  # type: ignore[operator]
            raise self.field_error("until", f"`until` ({self.until}) must come after `from` ({self.starts})")
        return self


#: the longest ``digest`` a person may ask for: a page kept longer is no news
DIGEST_MAX = timedelta(hours=24)


class Person(Strict):
    """Someone who can be assigned, reminded and escalated to."""

    name: str
    timezone: str = "UTC"
    contacts: list[str] = Field(default_factory=list, description="Apprise URLs, tried in order")
    email: str | None = None
    away: list[Away] = Field(default_factory=list, description="when they cannot be paged (holidays)")
    os_users: list[str] = Field(default_factory=list, description="the OS accounts that are this person: a terminal "
                                                                 "running as one acts as them, and only as them")
    digest: OptionalDuration = Field(default=None, description="bundle the pages that ask nothing of them (a step "
                                     "done, a run finished, a status update…) into one message, sent this long after "
                                     "the "
                                     "first of them (15m); left out: each page at once (docs/notifications.md)")

    @field_validator("digest")
    @classmethod
    def _digest_bound(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("a digest of no time would send each page alone, later: leave `digest` out to have each "
                             "page at once, or give a duration, e.g. 15m")
        if value is not None and value > DIGEST_MAX:
            raise ValueError(f"a digest of {format_duration(value)} holds news past its use: at most "
                             f"{format_duration(DIGEST_MAX)}, e.g. 15m")
        return value

    def zone_or(self, site_zone: str) -> str:
        """The time zone their pages and times are shown in: their own ``timezone`` when config says one, else the
        site's (``settings.timezone``), not UTC."""
        return self.timezone if "timezone" in self.model_fields_set else site_zone

    @field_validator("contacts", "os_users", mode="before")
    @classmethod
    def _contacts_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class Role(Strict):
    """A role with members, who is on call (the A/B role rule) and a lead to escalate to.

    On call is either fixed (``primary`` and ``backup``) or a ``rotation``
    (:mod:`flows.language.oncall`); who answers at an instant is :func:`flows.language.oncall.on_call`'s
    to say, never ``primary`` read alone. Both ``backup`` (or a ``rotation``) and ``lead`` must be
    written: ``lead: none`` marks the top of the chain, so a forgotten lead is an error rather
    than a role whose escalations silently go nowhere.
    """

    title: str | None = None
    members: list[str] = Field(min_length=1)
    primary: str | None = None
    backup: str | None = None
    rotation: Rotation | None = Field(default=None, description="who is on call, shift by shift (instead of a "
                                                                "fixed primary and backup)")
    lead: str | None = Field(description="the role escalations go to; `none` at the top of the chain")

    @model_validator(mode="before")
    @classmethod
    def _backup_and_lead_written(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        rotating = "rotation" in data
        missing = {name: message for name, message in ROLE_MUST_SAY.items()
                   if name not in data and not (rotating and name in ("primary", "backup"))}
        if missing:
            raise ValidationError.from_exception_data(cls.__name__, [
                InitErrorDetails(type=PydanticCustomError("value_error", message), loc=(name,), input=data)
                for name, message in missing.items()])
        if isinstance(data.get("lead"), str) and data["lead"].strip().lower() == TOP_OF_CHAIN:
            data = {**data, "lead": None}
        return data

    @model_validator(mode="after")
    def _primary_backup(self) -> Role:
        if self.rotation is not None:
            for name in ("primary", "backup"):
                if getattr(self, name) is not None:
                    raise self.field_error(name, f"a role with a `rotation` takes its {name} from the rotation: "
                                                 f"leave `{name}` out")
            return self
        if self.primary not in self.members:
            raise self.field_error("primary", f"primary {self.primary!r} is not one of the members {self.members}")
        if self.backup not in self.members:
            raise self.field_error("backup", f"backup {self.backup!r} is not one of the members {self.members}")
        if self.backup == self.primary:
            raise self.field_error("backup", "backup must be a different person from primary (the A/B role rule)")
        return self


#: ``lead: none``: the role is the top of the chain (nobody to escalate to)
TOP_OF_CHAIN = "none"
ROLE_MUST_SAY = {
    "primary": "a role needs a `primary` (a member who answers first) or a `rotation`",
    "backup": "a role needs a `backup`: a member other than the primary, who is paged when the primary "
              "does not answer (the A/B role rule)",
    "lead": f"a role needs a `lead`: the role its late steps escalate to (write `lead: {TOP_OF_CHAIN}` "
            "for the top of the chain)",
}


class Channel(Strict):
    """A broadcast destination (a chat room, an SMS gateway…)."""

    title: str | None = None
    urls: list[str] = Field(min_length=1)


class ApiSettings(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    max_body_bytes: int = Field(default=1_000_000, gt=0)


class PrefectSettings(Strict):
    api_url: str | None = None
    port: int = Field(default=4200, ge=1, le=65535)
    pool: str = "sop-pool"
    #: executor processes `sop serve` starts (`sop executor`)
    workers: int = Field(default=1, ge=0, le=64)
    #: flow runs executing at once: the work pool's limit, and each executor's threads (a suspended run holds none)
    concurrency: int = Field(default=8, ge=1, le=256)


class ProxySettings(Strict):
    """Single sign-on through a trusted reverse proxy (oauth2-proxy style).

    The proxy authenticates people and passes who they are in ``header`` (a person id of
    ``config/``, or an e-mail matched to a person's ``email``). The header is believed only
    when the request also carries ``secret_header`` holding the secret of ``secret_env``, or
    comes from one of the ``trusted`` addresses; otherwise it is ignored and logged.
    """

    header: str = "X-Forwarded-User"
    secret_header: str = "X-Proxy-Secret"
    secret_env: str | None = Field(default=None, description="environment variable holding the proxy's shared secret")
    trusted: list[str] = Field(default_factory=list, description="addresses the proxy connects from")

    @model_validator(mode="after")
    def _some_proof(self) -> ProxySettings:
        if not self.secret_env and not self.trusted:
            raise self.field_error("secret_env", "a trusted proxy needs `secret_env` (a shared secret) or "
                                                 "`trusted` (the addresses it connects from): else anyone could "
                                                 "send the header")
        return self


class WebSettings(Strict):
    """The responders' pages: personal links, sign-in, sessions, uploads."""

    link_max_age: Duration = Field(default=timedelta(hours=24),
                                   description="a step link expires with its step, and at most after this")
    sign_in_ttl: Duration = Field(default=timedelta(minutes=15), description="how long a sign-in link works")
    session_max_age: Duration = Field(default=timedelta(hours=12), description="how long a signed-in session lasts")
    upload_max_bytes: int = Field(default=10_000_000, gt=0, description="the largest evidence file accepted")
    proxy: ProxySettings | None = None
    operators: list[str] = Field(default_factory=list, description="people or roles who run the board: start, "
                                                                   "cancel, watch every run")
    auditors: list[str] = Field(default_factory=list, description="people or roles who open the auditor's desk "
                                                                  "(read-only)")


class CliSettings(Strict):
    """Who the terminal's ``sop`` commands act as (docs/people.md)."""

    accounts: Literal["optional", "required"] = Field(
        default="optional",
        description="`required`: a terminal acts only from an OS account given to a person (`os_users` in "
                    "config/people.yaml); `optional`: an account given to nobody may still name who acts (`--as`), "
                    "recorded as self-declared")


class Settings(Strict):
    """Where things live and run."""

    database_url: str = "sqlite:///var/ledger.db"
    api: ApiSettings = Field(default_factory=ApiSettings)
    prefect: PrefectSettings = Field(default_factory=PrefectSettings)
    speed: float = Field(default=1.0, ge=SPEED_MIN, le=SPEED_MAX, description="compress time (see durations.SPEED_MIN/MAX)")
    timezone: str = "UTC"
    base_url: str = "http://127.0.0.1:8000"
    inbox_dir: str = "var/inbox"
    web: WebSettings = Field(default_factory=WebSettings)
    cli: CliSettings = Field(default_factory=CliSettings)
    cadences: dict[Literal["complaint", "outage", "policy", "routine"], Cadence] = Field(
        default_factory=dict, description="status cadences by class, for SOPs that declare none")
    class_calendars: dict[Literal["complaint", "outage", "policy", "routine"], str] = Field(
        default_factory=dict, description="the calendar (config/calendars.yaml) of each class's SOPs that name "
                                          "none: their due, deadline and ladder count business time")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        return check_timezone(value)


API_ROLES = ("operator", "responder", "auditor", "monitor")
#: the monitoring endpoints a monitor token may post to: ``POST /v1/alerts/alertmanager``, ``/v1/alerts/grafana``,
#: ``/v1/events``, ``/v1/metrics``
MONITOR_SOURCES = ("alertmanager", "grafana", "events", "metrics")


class HmacCheck(Strict):
    """A signature the token's sender adds to each webhook: hex HMAC-SHA256 of the body.

    Grafana's scheme: the signature in ``header``; with a ``timestamp_header``, the signed
    text is ``<timestamp>:<body>`` and a timestamp older than ``max_age`` is refused.
    """

    env: str = Field(description="environment variable holding the shared secret")
    header: str = "X-Grafana-Alerting-Signature"
    timestamp_header: str | None = None
    max_age: Duration = Field(default=timedelta(minutes=5), description="oldest timestamp accepted")


class ApiToken(Strict):
    """An API token: its secret comes from an environment variable, never from the repo.

    Roles: ``operator`` starts, cancels and reports; ``responder`` reports on steps assigned
    to its ``person`` or their roles; ``auditor`` reads; ``monitor`` posts alerts, events
    and metrics. A token whose variable is unset is inactive.

    A token that acts (operator, responder) acts as its ``person``, a person of ``config/``:
    what it does is recorded as theirs (``via: api``, with the token's name). An operator
    reporting for someone else names them in the body's ``actor``; the ledger keeps both
    (``li-wei for wang-fang``).
    """

    env: str
    role: Literal["operator", "responder", "auditor", "monitor"]
    person: str | None = None
    hmac: HmacCheck | None = None
    sources: list[Literal["alertmanager", "grafana", "events", "metrics"]] | None = Field(
        default=None, description="a monitor token: the monitoring endpoints it may post to (alertmanager, grafana, "
                                  "events, metrics); left out, every one (a warning says so)")

    @model_validator(mode="after")
    def _sources_are_a_monitors(self) -> ApiToken:
        if self.sources is not None and self.role != "monitor":
            raise self.field_error("sources", f"only a monitor token posts to monitoring endpoints: remove `sources` "
                                              f"from this {self.role} token, or make it `role: monitor`")
        if self.sources is not None and not self.sources:
            raise self.field_error("sources", "a monitor token with no source could post nowhere: name at least one "
                                              f"of {', '.join(MONITOR_SOURCES)}")
        return self

    def may_post_to(self, source: str) -> bool:
        """Whether this token may post to the monitoring endpoint ``source`` (one of :data:`MONITOR_SOURCES`)."""
        return self.role == "monitor" and (self.sources is None or source in self.sources)

    @model_validator(mode="after")
    def _acting_token_is_someone(self) -> ApiToken:
        if self.role == "responder" and self.person is None:
            raise self.field_error("person", "a responder token needs `person`: responders report on the steps "
                                             "assigned to that person or their roles")
        if self.role == "operator" and self.person is None:
            raise self.field_error("person", "an operator token needs `person`: the person of config/ it acts as "
                                             "(what it starts, reports and cancels is recorded as theirs; to "
                                             "report for someone else, the body names `actor`)")
        return self


class Site(Strict):
    """Everything in ``config/``, merged."""

    people: dict[str, Person] = Field(default_factory=dict)
    roles: dict[str, Role] = Field(default_factory=dict)
    channels: dict[str, Channel] = Field(default_factory=dict)
    vars: dict[str, Any] = Field(default_factory=dict)
    settings: Settings = Field(default_factory=Settings)
    tokens: dict[str, ApiToken] = Field(default_factory=dict)
    calendars: dict[str, Calendar] = Field(default_factory=dict, description="business calendars by name "
                                                                            "(config/calendars.yaml)")

    @field_validator("people", "roles", "channels", "calendars")
    @classmethod
    def _slug_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not re.match(SLUG, name):
                raise ValueError(f"name {name!r} must be a slug (lower-case letters, digits, dashes)")
        return value

    def token_warnings(self) -> dict[str, str]:
        """What the tokens allow that a site may not mean, by token name: a monitor token without ``sources`` may
        post to every monitoring endpoint, Grafana's too, unsigned, whatever token Grafana itself was given."""
        return {name: f"tokens.{name}: a monitor token without `sources` may post to every monitoring endpoint "
                      f"({', '.join(MONITOR_SOURCES)})"
                      + (", Grafana's too, unsigned" if token.hmac is None else "")
                      + "; name the ones it posts to, e.g. "
                      f"`sources: [{'grafana' if token.hmac is not None else 'alertmanager'}]` (docs/running.md, "
                      "\"Which token posts where\")"
                for name, token in self.tokens.items() if token.role == "monitor" and token.sources is None}

    def account_owner(self, account: str | None) -> str | None:
        """The person whose OS account ``account`` is (``os_users`` in config/people.yaml), None when nobody's."""
        if not account:
            return None
        return next((name for name, person in self.people.items() if account in person.os_users), None)

    @field_validator("roles")
    @classmethod
    def _top_of_chain_is_no_name(cls, value: dict[str, Any]) -> dict[str, Any]:
        if TOP_OF_CHAIN in value:
            raise ValueError(f"a role cannot be named `{TOP_OF_CHAIN}`: `lead: {TOP_OF_CHAIN}` marks the top of the chain")
        return value

    def near(self, name: str, tables: tuple[str, ...] = ("roles", "people", "channels")) -> str:
        """``"; did you mean `sara-lopez`?"`` for a name that is none of ``tables``: ids spelled nearly alike
        (``sara-lopes``), and a person by the name people call them or a part of it (``Sara Lopez``, ``李伟``
        for "Li Wei 李伟"); "" when nothing is near."""
        import difflib

        ids = [key for table in tables for key in getattr(self, table)]
        wanted = name.strip().casefold()
        slug = "-".join(wanted.split())
        found = [key for key in ids if key == slug]
        shown: dict[str, str] = {}
        if "people" in tables and wanted:
            for key, person in self.people.items():
                display = person.name.casefold()
                if wanted == display or wanted in display.split() or (len(wanted) > 1 and not wanted.isascii()
                                                                       and wanted in display):
                    found.append(key)
                    shown[key] = person.name
        found += difflib.get_close_matches(slug or name, ids, n=3, cutoff=0.75)
        found = list(dict.fromkeys(found))[:3]
        if not found:
            return ""
        return "; did you mean " + " or ".join(f"`{key}`" + (f" ({shown[key]})" if key in shown else "")
                                               for key in found) + "?"

    def kind_of(self, name: str) -> str | None:
        """Whether a bare name is a ``role``, a ``person`` or a ``channel`` (None: unknown)."""
        for kind, table in (("role", self.roles), ("person", self.people), ("channel", self.channels)):
            if name in table:
                return kind
        return None
