"""A game day on the pages: every page that shows a run or its step says when it is a drill, the same way (the desk's
yellow ``drill ×100`` tag), and never for a real run, compressed or not. A responder taps the step's link from a page
and must not take a drill's P1 for a real crisis, nor a real one for a drill."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.web.conftest import Site
from tests.web.test_pages import path_of, sign_in

TAG = re.compile(r'<span class="tag drill"[^>]*>drill ×(\d+)</span>')


def _pair(site: Site) -> tuple[str, str]:
    """A drill at ×100 and a real run at ×100 of crisis-pr, on the same subject (a drill never attaches to a real run)."""
    brand = f"b-{uuid.uuid4().hex[:8]}"
    drill = site.engine.start("crisis-pr", {"brand": brand}, initiator="li-wei", speed=100, launch=False,
                              trigger={"kind": "drill", "by": "li-wei", "via": "web"}).run_id
    real = site.engine.start("crisis-pr", {"brand": brand}, initiator="li-wei", speed=100, launch=False,
                             trigger={"kind": "web", "by": "li-wei", "via": "web"}).run_id
    assert drill != real
    return drill, real


@pytest.fixture
def pair(site: Site) -> Iterator[tuple[str, str]]:
    """:func:`_pair`, both cancelled after the test: the site is the session's, and open P1 runs of crisis-pr would
    weigh on the other tests of its worker (the board's order, the home page's cards, counts)."""
    drill, real = _pair(site)
    yield drill, real
    for run_id in (drill, real):
        site.engine.cancel(run_id, "test over", "li-wei")


def _card(page: str, run_id: str, href: str) -> str:
    """The card (``<li>``) of the home page whose link is ``href``."""
    found = re.search(rf'<li class="card">(?:(?!</li>).)*href="{re.escape(href)}"(?:(?!</li>).)*</li>', page, re.S)
    assert found, f"no card for {run_id}"
    return found.group(0)


def test_the_step_page_a_responder_opens_from_the_page_says_drill(site: Site, pair: tuple[str, str]) -> None:
    drill, real = pair
    phone = httpx.Client(base_url=site.url, timeout=30)  # not signed in: the personal link alone
    for run_id, expected in ((drill, ["100"]), (real, [])):
        link = site.engine.links.step_link("wang-fang", run_id, "assess")
        page = phone.get(path_of(link))
        assert page.status_code == 200, page.text[:300]
        crumbs = re.search(r'<p class="crumbs">.*?</p>', page.text, re.S).group(0)  # type: ignore[union-attr]
        assert TAG.findall(crumbs) == expected, crumbs


def test_home_board_run_and_step_pages_mark_the_drill_alone(site: Site, pair: tuple[str, str]) -> None:
    drill, real = pair
    responder = site.client()
    sign_in(site, responder, "wang-fang")  # pr-oncall's primary: assess waits on her in both runs
    home = responder.get("/").text
    assert TAG.findall(_card(home, drill, f"/runs/{drill}/steps/assess")) == ["100"]
    assert TAG.findall(_card(home, real, f"/runs/{real}/steps/assess")) == []
    assert TAG.findall(_card(home, drill, f"/runs/{drill}")) == ["100"]  # the open runs, below
    assert TAG.findall(_card(home, real, f"/runs/{real}")) == []
    for path, expected in ((f"/runs/{drill}/steps/assess", ["100"]), (f"/runs/{real}/steps/assess", []),
                           (f"/runs/{drill}", ["100"]), (f"/runs/{real}", [])):
        page = responder.get(path)
        crumbs = re.search(r'<p class="crumbs">.*?</p>', page.text, re.S).group(0)  # type: ignore[union-attr]
        assert TAG.findall(crumbs) == expected, (path, crumbs)
    assert "at ×100" in responder.get(f"/runs/{real}").text  # a real run on compressed time still says its pace

    director = site.client()
    sign_in(site, director, "li-wei")
    board = director.get("/board").text
    rows = {rid: re.search(rf'id="run-{rid}".*?</article>', board, re.S).group(0) for rid in (drill, real)}  # type: ignore[union-attr]
    assert TAG.findall(rows[drill]) == ["100"] and TAG.findall(rows[real]) == [], rows


def test_a_compressed_runs_dues_say_their_place_in_the_playbook(site: Site, pair: tuple[str, str]) -> None:
    """At ×100 two hours pass in 72 seconds: every due and the deadline read the same wall-clock minute. Beside each,
    how long after the start it is in the run's time; a run at ×1 needs none."""
    drill, _ = pair
    live = site.engine.start("crisis-pr", {"brand": f"b-{uuid.uuid4().hex[:8]}"}, initiator="li-wei",
                             launch=False).run_id
    responder = site.client()
    sign_in(site, responder, "wang-fang")
    page = responder.get(f"/runs/{drill}").text
    deadline = re.search(r"<dt>Deadline</dt><dd>(.*?)</dd>", page, re.S).group(1)  # type: ignore[union-attr]
    assert re.search(r'class="muted offset"[^>]*>\(\+2h\)</span>', deadline), deadline
    row = re.search(rf'<tr[^>]*>(?:(?!</tr>).)*href="/runs/{drill}/steps/assess"(?:(?!</tr>).)*</tr>', page, re.S)
    due = re.search(r'data-label="Due"[^>]*>(.*?)</td>', row.group(0), re.S).group(1)  # type: ignore[union-attr]
    assert re.search(r">\(\+15m\)</span>", due), due  # assess, due 15m after the start
    # each page sent, as its place in the playbook too (the run's start and assess's assignment: at its start)
    sent = page.split("<h2>Pages sent</h2>", 1)[1].split("</table>", 1)[0]
    whens = re.findall(r'<td data-label="When">(.*?)</td>', sent, re.S)
    assert whens and all(re.search(r'class="muted offset"[^>]*>\(\+\w+\)</span>$', when) for when in whens), whens
    step = responder.get(f"/runs/{drill}/steps/assess").text
    assert re.search(r"<dt>Due</dt><dd>.*?>\(\+15m\)</span>", step, re.S)
    assert 'class="muted offset"' not in responder.get(f"/runs/{live}").text
    assert 'class="muted offset"' not in responder.get(f"/runs/{live}/steps/assess").text
    site.engine.cancel(live, "test over", "li-wei")


def test_a_level_that_reached_nobody_taking_part_says_so_not_the_ladders_words(site: Site) -> None:
    """The review's finding: a drill that names its people records an escalation that reached none of them with an
    empty ``paged``, and the step page fell back to the ladder's words ("paged Chen Jie, Sara Lopez"): a responder
    would wait for people who never got a page."""
    from tests.engine.conftest import records
    from tests.web.test_handover import fire_next_rung

    holder = site.engine.person_for("pr-oncall")
    run_id = site.engine.start("crisis-pr", {"brand": f"b-{uuid.uuid4().hex[:8]}"}, initiator="li-wei", speed=100,
                               launch=False, trigger={"kind": "drill", "by": "li-wei", "via": "web",
                                                      "people": [holder]}).run_id
    try:
        for _ in range(4):  # up the ladder until a level reaches only people outside the drill
            fire_next_rung(site, run_id, "assess")
            last = records(site.engine, run_id, "escalation")[-1]["data"]
            if last.get("paged") == [] and last.get("notify"):
                break
        else:
            pytest.fail("no level of assess's ladder reached only people outside the drill")
        director = site.client()
        sign_in(site, director, "li-wei")
        page = director.get(f"/runs/{run_id}/steps/assess").text
        line = re.search(r'<dd id="escalation">(.*?)</dd>', page, re.S).group(1)  # type: ignore[union-attr]
        assert "paged nobody: none of them takes part in the drill" in line, line
    finally:
        site.engine.cancel(run_id, "test over", "li-wei")
