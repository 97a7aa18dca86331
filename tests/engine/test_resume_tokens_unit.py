"""Resume tokens (no server): only the engine's token for this run, flow run and suspension is taken."""

from __future__ import annotations

import pytest

from flows.prefect.resume import ResumeTokens

RUN, FLOW_RUN = "r-1", "0b7c3f1e-0000-4000-8000-000000000001"


@pytest.mark.parametrize("given, reason", [
    (None, "no_token"),
    ("", "no_token"),
    (42, "no_token"),
    ("made-up", "forged"),
    (ResumeTokens(b"another site's secret").sign(RUN, FLOW_RUN, 3), "forged"),
    (ResumeTokens(b"our secret").sign("r-2", FLOW_RUN, 3), "wrong_run"),
    (ResumeTokens(b"our secret").sign(RUN, "0b7c3f1e-0000-4000-8000-000000000002", 3), "wrong_run"),
    (ResumeTokens(b"our secret").sign(RUN, FLOW_RUN, 2), "stale"),
])
def test_a_token_that_is_not_the_engines_for_this_suspension_is_refused_with_its_reason(given, reason):
    assert ResumeTokens(b"our secret").check(given, RUN, FLOW_RUN, 3) == reason


def test_the_engines_token_for_this_suspension_is_taken():
    tokens = ResumeTokens(b"our secret")
    assert tokens.check(tokens.sign(RUN, FLOW_RUN, 3), RUN, FLOW_RUN, 3) is None
