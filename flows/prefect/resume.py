"""Resumes carry only what the engine signs: a suspended flow run waits for a resume token.

A report is written to the ledger by the engine (``sop done``, the API, a person's page or
link) and only then is the run's flow run resumed, with a token the engine signs with the
site's secret (:func:`flows.engine.secrets.site_secret`), bound to the run, its flow run and
the suspension it ends. The flow body checks it (:meth:`ResumeTokens.check`). Any other
resume — the Prefect UI's resume form, an API call by someone holding the Prefect auth
string, an empty form, a token of another run or of an earlier suspension — carries no
report: it is recorded (``resume_refused``) and logged, and the run keeps waiting on its
people. The Prefect UI is the engineers' view, not a way to act as someone.

The engine's resume also names its suspension (``suspension``); each suspension's input schema
accepts only its own number there, so Prefect itself turns away an engine resume that arrives
late, for a suspension that has ended (two services resuming at once), and nothing false is
recorded. A run that starts on its people has its flow run created already suspended
(:func:`born_suspended`), with the same schema stored (:func:`expect_resume_input`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

from itsdangerous import BadSignature, URLSafeSerializer
from pydantic import ConfigDict, Field, create_model

SALT = "sop-resume"


@lru_cache(maxsize=1)
def _resume_input_base() -> type[Any]:
    """``ResumeInput``, made when first needed: Prefect's ``RunInput`` costs a second of imports, which the commands
    that never resume a flow run (``sop status``, ``sop silence``…) do not pay."""
    from prefect.input import RunInput

    class ResumeInput(RunInput):
        """Filled in by the SOP engine when a report has been recorded. People report through their
        step page, their personal link, `sop done` or the API: a resume typed here reports nothing and
        is recorded as refused."""

        # other fields are let through Prefect's check (its default forbids them) so that the flow
        # sees and records a resume that claims a report ("step", "actor"…) instead of Prefect
        # refusing it where the ledger never hears of it
        model_config = ConfigDict(extra="allow")
        token: str = Field(default="", description="the engine's signed resume token (not for people)")

    return ResumeInput


@lru_cache(maxsize=64)
def resume_input(count: int) -> type[Any]:
    """The resume input of a run's ``count``-th suspension. ``suspension``, when given, must be ``count``: the
    engine's resumes give it, so Prefect refuses one meant for an earlier suspension (two services resuming at
    once, the second late) before the flow run hears of it; a resume without it reaches the flow, which checks
    its token and records a refusal."""
    return create_model("ResumeInput", __base__=_resume_input_base(), suspension=(
        Literal[count] | None, Field(default=None, description="which suspension this resume ends (the engine's)")))


def pause_key(count: int) -> str:
    """The Prefect pause key of a run's ``count``-th suspension (its resume token names the same count)."""
    return f"wait-{count}"


def resume_keys(count: int) -> tuple[str, str]:
    """The flow-run input keys (schema, response) of a run's ``count``-th suspension (key ``wait-<count>``)."""
    return f"suspended-{pause_key(count)}-schema", f"suspended-{pause_key(count)}-response"


def born_suspended(count: int) -> Any:
    """The state a flow run is created in when its run starts by waiting on people: Suspended at its
    ``count``-th suspension, waiting for its :func:`resume_input` (what ``suspend_flow_run`` proposes)."""
    from prefect.input.run_input import keyset_from_paused_state
    from prefect.states import Suspended

    state = Suspended(pause_key=pause_key(count))
    state.state_details.run_input_keyset = keyset_from_paused_state(state)
    return state


def expect_resume_input(client: Any, flow_run_id: Any, count: int) -> None:
    """Store the schema of the ``count``-th suspension's resume input, as ``suspend_flow_run`` does (the
    server checks a resume against it). Stored already (a racing launch of the same flow run): fine."""
    import httpx
    import orjson
    from prefect._internal.pydantic.v2_schema import create_v2_schema

    model = resume_input(count)
    schema = create_v2_schema(model.__name__, model_base=model)
    try:
        client.create_flow_run_input(flow_run_id, key=resume_keys(count)[0], value=orjson.dumps(schema).decode())
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code != 409:
            raise


class ResumeTokens:
    """Signs and checks resume tokens with the site's secret."""

    def __init__(self, secret: bytes):
        self._serializer = URLSafeSerializer(secret, salt=SALT)

    def sign(self, run_id: str, flow_run_id: str, count: int) -> str:
        """The token that resumes the ``count``-th suspension of ``run_id``'s flow run ``flow_run_id``."""
        return self._serializer.dumps({"r": run_id, "f": str(flow_run_id), "c": count})

    def check(self, given: Any, run_id: str, flow_run_id: str, count: int) -> str | None:
        """None when ``given`` is the engine's token for this suspension; otherwise why not.

        Reasons: ``no_token`` (an empty form, or fields without a token), ``forged`` (not signed
        with this site's secret), ``wrong_run`` (another run's or flow run's), ``stale`` (an
        earlier suspension's: a replay).
        """
        if not isinstance(given, str) or not given:
            return "no_token"
        try:
            claim = self._serializer.loads(given)
        except BadSignature:
            return "forged"
        if not isinstance(claim, dict):
            return "forged"
        if claim.get("r") != run_id or claim.get("f") != str(flow_run_id):
            return "wrong_run"
        if claim.get("c") != count:
            return "stale"
        return None
