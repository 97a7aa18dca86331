"""The run page links a crisis to the review its end started, and the review back to its crisis."""

from __future__ import annotations

import html
import re
import uuid

from flows.audit import Audit
from flows.language.steps.human import HumanReport
from tests.engine.test_follow_ups import CRISIS, automate
from tests.web.conftest import Site
from tests.web.test_pages import sign_in


def test_the_run_pages_of_a_crisis_and_its_review_link_to_each_other(site: Site) -> None:
    engine = site.engine
    parent = engine.start("crisis-pr", {"brand": f"b-{uuid.uuid4().hex[:6]}"}, initiator="li-wei",
                          launch=False).run_id
    for step, (person, values) in CRISIS.items():
        automate(engine, parent)
        engine.report(parent, step, HumanReport(person, values=values,
                                                evidence=["https://x.example/e"] if step in ("assess", "publish") else []))
    automate(engine, parent)
    [link] = Audit(engine.ledger).run(parent).follow_ups
    review = link.run
    client = site.client()
    sign_in(site, client, "li-wei")

    page = client.get(f"/runs/{parent}")
    assert page.status_code == 200
    follow_ups = re.search(r'<dd id="follow-ups">(.*?)</dd>', page.text, re.S).group(1)  # type: ignore[union-attr]
    assert f'<a href="/runs/{review}">post-incident-review run {review}</a>: started' in follow_ups
    back = client.get(f"/runs/{review}")
    assert back.status_code == 200
    parent_link = re.search(r'<dd id="parent-run">(.*?)</dd>', back.text, re.S).group(1)  # type: ignore[union-attr]
    assert f'<a href="/runs/{parent}">crisis-pr run {parent}</a> (ended done)' in parent_link
    assert '<span class="state open">open</span>' in parent_link
    assert f"by run:{parent}" in back.text  # who started it


def test_a_review_skipped_by_its_condition_says_so_in_words_with_the_condition_as_code_apart(site: Site) -> None:
    engine = site.engine
    run = engine.start("crisis-pr", {"brand": f"b-{uuid.uuid4().hex[:6]}"}, initiator="li-wei", launch=False).run_id
    engine.cancel(run, "a false alarm", actor="li-wei")
    client = site.client()
    sign_in(site, client, "li-wei")

    page = client.get(f"/runs/{run}")
    follow_ups = html.unescape(re.search(r'<dd id="follow-ups">(.*?)</dd>', page.text, re.S).group(1))  # type: ignore[union-attr]
    assert "post-incident-review: skipped (its condition was not met)<br>" in follow_ups, follow_ups
    assert "condition: <code>{{ run.outcome != 'cancelled' and" in follow_ups
    assert "is false" not in follow_ups
