"""What a responder reads on a phone: her own link and what to do, not a terminal's ways; people and roles by name;
a title that fits a lock screen; a start notice that is not a failure.

Every message here goes out for real: to the local inbox (which stands in for a phone), to an ntfy server and a
JSON webhook on 127.0.0.1 (the HTTP receiver), and by e-mail to the local SMTP server.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from flows.language.durations import format_duration_roughly
from notifications import LevelInfo, Recipient, deliver, read_inbox, render_for
from notifications.samples import sample

NO_OVERRIDES = "/nonexistent/templates"
LINK = "http://127.0.0.1:8000/s/sample-link-for-sara-lopez"
SARA = ("sara-lopez", "Sara Lopez")


def sara_on(*urls: str) -> Recipient:
    """Sara's contacts as one channel, so that every one of them gets the page (a person's stop at the first)."""
    return Recipient(id="sara-lopez", name="Sara Lopez", kind="channel", urls=urls, timezone="Europe/Madrid",
                     fallback=False)


def cs_site(make_site: Any) -> Any:
    return make_site({"sara-lopez": ["inbox://sara-lopez"], "wang-fang": ["inbox://wang-fang"],
                      "li-wei": ["inbox://li-wei"]},
                     roles={"pr-oncall": {"title": "Customer Service Lead", "members": ["sara-lopez", "wang-fang"],
                                          "primary": "sara-lopez", "backup": "wang-fang", "lead": "pr-lead"},
                            "pr-lead": {"title": "PR Lead", "members": ["li-wei", "sara-lopez"],
                                             "primary": "li-wei", "backup": "sara-lopez", "lead": "none"}})


def test_on_a_phone_her_link_is_the_way_and_the_terminal_and_curl_stay_on_the_desk(
        tmp_path: Path, http: Any, smtp: Any) -> None:
    ntfy = f"ntfy://127.0.0.1:{http.port}/sara-pages"
    render = render_for("assigned", sample("assigned"), overrides_dir=NO_OVERRIDES)
    results = deliver(render, [sara_on("inbox://sara-lopez", ntfy, http.url("/ok/hook"), smtp.url())],
                      inbox_dir=tmp_path)
    assert all(r.ok for r in results), results

    [phone] = read_inbox("sara-lopez", tmp_path)
    [pushed] = [json.loads(r.body)["message"] for r in http.requests if not r.path.startswith("/ok/")]
    for body in (phone["body"], pushed):
        assert f"**Open your step:** {LINK}" in body
        assert "Read the top 50 negative mentions" in body  # what to do is still there
        for noise in ("sop done", "curl", "<your API token>", "Or from a terminal"):
            assert noise not in body, noise

    # at a desk (e-mail, a webhook's program) the terminal and the API come after the link, at the bottom
    mail = smtp.mails[0].part("text/html")
    [hook] = [r.json["message"] for r in http.to("/ok/hook")]
    for body in (mail, hook):
        assert LINK in body
        assert body.index(LINK) < body.index("sop done r-20250301-0001 assess --as sara-lopez") < body.index("curl")


def test_without_a_link_the_command_is_her_way_on_every_channel(tmp_path: Path) -> None:
    no_link = replace(sample("assigned"), step_link=None)
    deliver(render_for("assigned", no_link, overrides_dir=NO_OVERRIDES), [sara_on("inbox://sara-lopez")],
            inbox_dir=tmp_path)
    [phone] = read_inbox("sara-lopez", tmp_path)
    assert "sop done r-20250301-0001 assess --as sara-lopez" in phone["body"]


def test_people_and_roles_read_as_config_names_them(tmp_path: Path, make_site: Any) -> None:
    site = cs_site(make_site)
    helped = replace(sample("escalated"), level=LevelInfo(key="help", message="escalated", asked_by="sara-lopez"),
                     step=replace(sample("escalated").step, holder="sara-lopez", holder_contact=None))
    li_wei = Recipient(id="li-wei", name="Li Wei", kind="person", urls=("inbox://li-wei",), timezone="Asia/Shanghai")
    deliver(render_for("escalated", helped, site=site, overrides_dir=NO_OVERRIDES), [li_wei], inbox_dir=tmp_path)
    deliver(render_for("assigned", sample("assigned"), site=site, overrides_dir=NO_OVERRIDES),
            [sara_on("inbox://sara-lopez")], inbox_dir=tmp_path)

    [help_page] = read_inbox("li-wei", tmp_path)
    assert help_page["title"].startswith("[P1] Help asked: Sara Lopez needs a hand with Assess scope and sentiment")
    assert "**Sara Lopez** asked for help" in help_page["body"]
    assert "It is assigned to Customer Service Lead" in help_page["body"]
    assert "It is with **Sara Lopez**" in help_page["body"]
    [assigned] = read_inbox("sara-lopez", tmp_path)
    assert "assigned to Customer Service Lead" in assigned["body"]
    assert "needs 1 approval from PR Lead" in assigned["body"]
    assert "pr-oncall" not in assigned["body"] and "pr-lead" not in assigned["body"]


def test_a_title_on_a_lock_screen_is_rounded_and_the_body_keeps_the_exact_time(tmp_path: Path) -> None:
    step = replace(sample("reminder").step, time_left="3h59m32s left", time_left_short="4h left")
    deliver(render_for("reminder", replace(sample("reminder"), step=step), overrides_dir=NO_OVERRIDES),
            [sara_on("inbox://sara-lopez")], inbox_dir=tmp_path)
    [page] = read_inbox("sara-lopez", tmp_path)
    assert page["title"] == "[P1] Reminder: Assess scope and sentiment (Crisis PR response · lumi), 4h left"
    assert "(3h59m32s left)" in page["body"]
    assert [format_duration_roughly(timedelta(seconds=s)) for s in (14372, 12000, 95000, 1100, 3590, 45, 0)] == \
        ["4h", "3h20m", "1d2h", "18m", "1h", "45s", "0s"]


def test_a_start_notice_asks_nothing_and_is_not_sent_as_a_failure(tmp_path: Path) -> None:
    deliver(render_for("run_started", sample("run_started"), overrides_dir=NO_OVERRIDES),
            [sara_on("inbox://sara-lopez")], inbox_dir=tmp_path)
    [page] = read_inbox("sara-lopez", tmp_path)
    assert page["title"].startswith("[P1] Started: Crisis PR response")  # still a P1 (complaint) by its prefix
    assert page["type"] == "info"
    assert "Nothing is asked of you" in page["body"]
