"""A page kept for a person's digest, and the digest that carried it, on the run's page and the auditor's desk: whether
and when it reached each person reads from the run's own story."""

from __future__ import annotations

import html
import re

from flows.engine.change import Page
from flows.engine.paging import Pager
from tests.web.conftest import Site
from tests.web.test_pages import crisis, sign_in


def test_the_run_page_and_the_desk_show_a_page_kept_for_a_digest_and_the_digest_that_carried_it(site: Site) -> None:
    run_id = crisis(site)
    # a pager process's pager (the one that keeps pages: li-wei has `digest: 15m` in config/people.yaml)
    pager = Pager(site.engine.site, site.engine.ledger, drains=True)
    update = Page("status_update", run_id, None, ["ops-director"],
                  level={"key": "update", "message": "status_update", "text": "statement out", "by": "chen-jie"})
    before = len(site.inbox("li-wei"))
    pager.send(site.engine, update)
    pager.close()
    assert len(site.inbox("li-wei")) == before  # kept, not sent
    client = site.client()
    sign_in(site, client, "li-wei")
    page = client.get(f"/runs/{run_id}")
    assert re.search(r'<td data-label="What">Status update</td>\s*<td data-label="Step" class="empty">—</td>'
                     r'<td data-label="To">Li Wei 李伟</td>\s*<td data-label="Through"><span>digest</span></td>\s*'
                     r'<td data-label="Result">kept for Li Wei 李伟\'s digest',
                     page.text), page.text.split("<h2>Pages sent</h2>", 1)[1][:3000]

    assert pager.digests is not None and pager.digests.send("li-wei") == 1  # as when it is due
    pager.close()
    [digest] = [m for m in site.inbox("li-wei")[before:] if "Digest:" in m["title"]]
    assert f"/runs/{run_id}" in digest["body"] and "Status update from Chen Jie 陈杰" in digest["body"]
    page = client.get(f"/runs/{run_id}")
    assert re.search(r'<td data-label="What">Digest</td>\s*<td data-label="Step" class="empty">—</td>'
                     r'<td data-label="To">Li Wei 李伟</td>\s*<td data-label="Through"><span title="inbox://li-wei">'
                     r'inbox</span></td>\s*<td data-label="Result"><span class="good">delivered</span>', page.text)
    desk = client.get(f"/desk/runs/{run_id}")  # li-wei is an auditor (settings.web.auditors: ops-director)
    assert desk.status_code == 200
    shown = html.unescape(desk.text)
    assert "status_update kept for li-wei's digest" in shown
    assert "li-wei kept for their digest" in shown
    assert "digest sent to li-wei (1/1 delivered), carrying 1 kept page(s) of this run: status_update" in shown
