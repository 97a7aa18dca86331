"""A form's choices on the step's page: the select shows each choice's label and posts its id; what was reported
reads the label, to the next person too, and the ledger keeps the id."""

from __future__ import annotations

import re

from tests.engine.conftest import records
from tests.web.conftest import Site
from tests.web.test_pages import ASSESS, crisis, csrf_of, field_errors, path_of


def options(page: str, field: str) -> list[tuple[str, str]]:
    """The (value, text) of each option of the select ``field``."""
    select = page.split(f'<select name="{field}"', 1)[1].split("</select>", 1)[0]
    return re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', select)


def test_the_select_shows_labels_posts_ids_and_the_report_reads_the_labels(site: Site) -> None:
    run_id = crisis(site)
    client = site.client()
    link = path_of(site.link_for("wang-fang", run_id, "assess"))
    page = client.get(link)
    assert options(page.text, "category") == [
        ("", "Choose…"), ("product_quality", "Product quality"), ("product_safety", "Product safety"),
        ("service", "Service"), ("delivery", "Delivery"), ("pricing_promotion", "Pricing or promotion"),
        ("staff_conduct", "Staff conduct"), ("rumour_or_fake", "Rumour or fake news"), ("other", "Other")]
    assert ("high", "High") in options(page.text, "severity")

    missing = client.post(link, data={**ASSESS, "csrf": csrf_of(page), "action": "done", "trend": ""})
    assert field_errors(missing)["trend"] == "required: one of Rising, Stable, Falling"  # as the select says them
    kept = client.post(link, data={**ASSESS, "csrf": csrf_of(page), "action": "done", "category": "rumour_or_fake",
                                   "trend": "rising"})
    assert kept.status_code == 303, kept.text
    assert records(site.engine, run_id, "step_done")[-1]["data"]["result"]["category"] == "rumour_or_fake"

    after = client.get(kept.headers["location"])  # the step's page now: what was reported
    assert '<th scope="row">Category</th><td>Rumour or fake news</td>' in after.text
    assert '<th scope="row">Severity</th><td>High</td>' in after.text
    assert ">rumour_or_fake<" not in after.text
    facts = site.client().get(path_of(site.link_for("sara-lopez", run_id, "facts")))
    earlier = facts.text.split('id="earlier"', 1)[1].split("</details>", 1)[0]  # the next person reads it so too
    assert '<th scope="row">Category</th><td>Rumour or fake news</td>' in earlier
