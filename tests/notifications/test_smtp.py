"""E-mail through a real SMTP server on 127.0.0.1 (aiosmtpd): subject, body, credentials from the environment."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from notifications import Message, Recipient, deliver
from tests.notifications.conftest import SMTP_USER, SmtpServer

MESSAGE = Message(
    title="[P1] Assigned to you: Assess scope",
    body="**Do it** now:\n\n`sop done r1 assess`",
    notify_type="failure",
    priority=1,
    kind="assigned",
)


def person(*urls: str) -> Recipient:
    return Recipient(id="sara-lopez", name="Sara Lopez", kind="person", urls=urls)


def test_the_mail_arrives_with_the_title_as_subject_and_the_body(smtp: SmtpServer) -> None:
    [result] = deliver(MESSAGE, [person(smtp.url("sara@example.com"))], timeout=2, retries=0)
    assert result.ok, result.error
    [mail] = smtp.mails
    assert mail.rcpt_tos == ["sara@example.com"]
    assert mail.message["Subject"] == "[P1] Assigned to you: Assess scope"
    assert "Do it now:" in mail.part("text/plain") and "sop done r1 assess" in mail.part("text/plain")
    assert "<strong>Do it</strong>" in mail.part("text/html")  # markdown became HTML for e-mail


def test_smtp_credentials_come_from_the_environment_and_stay_secret(
    smtp: SmtpServer, monkeypatch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", smtp.password)  # has @ / : ! in it: expand_env URL-quotes it
    caplog.set_level(logging.DEBUG)
    template = smtp.url("sara@example.com", userinfo=f"{SMTP_USER}:${{SMTP_PASSWORD}}@")
    [result] = deliver(MESSAGE, [person(template)], timeout=2, retries=0)
    assert result.ok, result.error
    [mail] = smtp.mails
    assert mail.login == SMTP_USER  # the server checked the password
    shown = " ".join([result.destination, *(r.getMessage() for r in caplog.records)])
    assert smtp.password not in shown and "p%40ss" not in shown
    assert result.destination.startswith("mailto://****:****@127.0.0.1:")


def test_a_wrong_password_is_a_failed_delivery_then_the_next_contact(smtp: SmtpServer, monkeypatch: Any) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", "wrong-password-123")
    wrong = smtp.url("sara@example.com", userinfo=f"{SMTP_USER}:${{SMTP_PASSWORD}}@")
    failed, delivered = deliver(
        MESSAGE, [person(wrong, smtp.url("sara-backup@example.com"))], timeout=2, retries=1, backoff=0.01
    )
    assert (failed.ok, failed.attempts) == (False, 2)
    assert failed.latency < 2  # the retry waits our backoff, not Apprise's 5.5 s per-plugin throttle
    assert "wrong-password-123" not in (failed.error or "")
    assert delivered.ok and [m.rcpt_tos for m in smtp.mails] == [["sara-backup@example.com"]]


def test_a_line_break_in_a_title_is_a_space_and_the_mail_still_goes(smtp: SmtpServer) -> None:
    # a brand from an alert's label, "crlf\r\nBcc: …", went into a notify step's title: e-mail's library refused
    # the subject (a header injection) and the page was lost after three attempts
    message = Message(title="[P1] Crisis PR: crlf\r\nBcc: evil@example.com\u2028and\tmore", body="b", kind="message")
    assert message.title == "[P1] Crisis PR: crlf Bcc: evil@example.com and more"
    [result] = deliver(message, [person(smtp.url("sara@example.com"))], timeout=2, retries=0)
    assert result.ok, result.error
    [mail] = smtp.mails
    assert mail.rcpt_tos == ["sara@example.com"]  # nobody added
    assert mail.message["Subject"] == "[P1] Crisis PR: crlf Bcc: evil@example.com and more"
    assert mail.message["Bcc"] is None
    assert Message(title="x" * 500, body="").title == "x" * 199 + "…"


def test_html_in_a_value_is_text_in_the_mail_and_code_keeps_its_brackets(smtp: SmtpServer) -> None:
    # a topic typed on a form, an alert's label: pages escape it; the e-mail's HTML part took it as markup
    body = ('Topic reported: <a href="https://evil.example/login">Re-authenticate</a>'
            '<img src="https://evil.example/p.png"> ![x](https://tracker.example/p.png) '
            '[your run](https://evil.example/login) \\`<img src=https://t.example/p.png>`'
            '\n\n`sop done r1 assess -f severity=<low|high>`\n\n**Do it** now\n- **Run:** [r1](http://127.0.0.1:8000/runs/r1)')
    [result] = deliver(Message(title="[P1] Assigned to you", body=body, kind="assigned"),
                       [person(smtp.url("sara@example.com"))], timeout=2, retries=0)
    assert result.ok, result.error
    [mail] = smtp.mails
    html = mail.part("text/html")
    assert "<img" not in html and "<a " not in html, html  # no pixel, no disguised link, however written
    assert "&lt;img src=" in html and "&lt;a href=" in html  # shown as the text that was given
    assert "your run (https://evil.example/login)" in html  # a link shows where it goes
    assert "r1 (http://127.0.0.1:8000/runs/r1)" in html  # the run's own link too
    assert "<code>sop done r1 assess -f severity=&lt;low|high&gt;</code>" in html  # not &amp;lt;
    assert "<strong>Do it</strong>" in html  # markdown is still markdown
    assert '<img src="https://evil.example/p.png">' in mail.part("text/plain")  # the text part, as typed
