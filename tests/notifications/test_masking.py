"""Secrets never leave in a destination or an error text: mask_url on the Apprise URL shapes we meet."""

from __future__ import annotations

import pytest

from notifications.masking import mask_template, mask_url, redact, secrets_of


@pytest.mark.parametrize(
    ("url", "masked", "secrets"),
    [
        ("mailto://user:pass@example.com", "mailto://****:****@example.com", ["user", "pass"]),
        (
            "mailtos://bob:s3cr%40t@smtp.example.com:587?to=ops@example.com&from=sop@example.com",
            "mailtos://****:****@smtp.example.com:587?to=ops@example.com&from=sop@example.com",
            ["s3cr%40t", "s3cr@t"],
        ),
        (
            "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ",
            "slack://****/****/****",
            ["T1JJ3T3L2", "A1BRTD4JD", "TIiajkdnlazkcOXrIdevi7FQ"],
        ),
        (
            "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general",
            "slack://****/****/****/#general",
            ["TIiajkdnlazkcOXrIdevi7FQ"],
        ),
        ("ntfy://topic", "ntfy://topic", []),
        ("ntfy://ops-alerts-8f3k2x", "ntfy://****", ["ops-alerts-8f3k2x"]),
        (
            "ntfys://tk_abc123def@ntfy.sh/alerts?priority=high",
            "ntfys://****@ntfy.sh/alerts?priority=high",
            ["tk_abc123def"],
        ),
        ("json://host/path?token=x", "json://host/path?token=****", []),
        (
            "json://user:pw@127.0.0.1:8080/path?token=abc123&-apikey=k3y-value&+X-Token=h3ader",
            "json://****:****@127.0.0.1:8080/path?token=****&-apikey=****&+X-Token=****",
            ["abc123", "k3y-value", "h3ader"],
        ),
        (
            "pover://ukey1234567890123456789012345@atoken12345678901234567890123?priority=2",
            "pover://****@****?priority=2",
            ["ukey1234567890123456789012345", "atoken12345678901234567890123"],
        ),
        ("tgram://123456789:ABCdefGhIJKlmnoPQRsTUVwxyZ/12345", "tgram://****/12345", ["ABCdefGhIJKlmnoPQRsTUVwxyZ"]),
        (
            "https://hooks.slack.com/services/T000AAA/B000BBB/XXXXXXXXXXXXXXXXXXXX",
            "https://hooks.slack.com/services/****/****/****",
            ["T000AAA", "XXXXXXXXXXXXXXXXXXXX"],
        ),
        ("inbox://li-wei", "inbox://li-wei", []),
        # a path of words stays readable however long (an audit keeps where a failed call went); a long host
        # of words (an ntfy topic: its own secret) and a lower-case token of one run of letters do not
        ("http://127.0.0.1:9900/v1/circuit-breakers", "http://127.0.0.1:9900/v1/circuit-breakers", []),
        ("ntfy://sop-alerts-lumi-brand", "ntfy://****", ["sop-alerts-lumi-brand"]),
        ("ntfys://ntfy.sh/sre-pager-oncall-alerts", "ntfys://ntfy.sh/****", ["sre-pager-oncall-alerts"]),
        ("json://hooks.example.com/incident-room-updates", "json://hooks.example.com/****", ["incident-room-updates"]),
        ("json://h.example/hooks/qwertzuiopasdfghjk", "json://h.example/hooks/****", ["qwertzuiopasdfghjk"]),
        ("json://[::1]:8080/hook", "json://[::1]:8080/hook", []),
    ],
)
def test_mask_url_hides_credentials_and_tokens(url: str, masked: str, secrets: list[str]) -> None:
    assert mask_url(url) == masked
    for secret in secrets:
        assert secret not in mask_url(url)
        assert secret in secrets_of(url)


def test_mask_url_of_something_that_is_not_a_url_hides_it_all() -> None:
    assert mask_url("xoxb-not-a-url") == "****"
    assert mask_url("") == ""


def test_a_contact_template_shows_its_variable_names_not_their_values() -> None:
    assert mask_template("${LI_WEI_URL}") == "${LI_WEI_URL}"
    assert mask_template("${LI_WEI_URL:-inbox://li-wei}") == "${LI_WEI_URL:-inbox://li-wei}"
    assert mask_template("mailto://bob:${SMTP_PASSWORD}@smtp.example.com") == "mailto://****:****@smtp.example.com"


def test_redact_removes_secrets_and_apprise_half_masked_urls_from_error_text() -> None:
    url = "json://ops:hunter2hunter2@127.0.0.1:8080/hook/9f8e7d6c5b4a?-apikey=k3y-value"
    apprise_text = (
        "Failed to send to json://ops:h...2@127.0.0.1:8080/hook/9f8e7d6c5b4a?-apikey=k3y-value: "
        "Max retries exceeded with url: /hook/9f8e7d6c5b4a?apikey=k3y-value (hunter2hunter2)"
    )
    text = redact(apprise_text, url)
    for secret in ("hunter2hunter2", "h...2", "9f8e7d6c5b4a", "k3y-value"):
        assert secret not in text
    assert "127.0.0.1:8080" in text  # still says where it went
