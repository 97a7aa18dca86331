"""An auditor opens the HTML report in a browser and prints it: the compliance tables and a timeline per run render.

The browser is real: Debian's ``chromium``, headless (``make deps-system`` installs it).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.audit.conftest import Scenario, tamper
from tests.audit.png import read_png

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (run `make deps-system` as root)")

NAVY, GREEN, LATE_RED, AMBER = (0x1F, 0x3A, 0x5F), (0x2E, 0x7D, 0x32), (0xC6, 0x28, 0x28), (0xF9, 0xA8, 0x25)


@pytest.fixture(scope="module")
def report_html(sop: Any, scenario: Scenario, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("report") / "audit.html"
    done = sop("audit", "report", "--html", str(target), env={"SOP_DATABASE_URL": scenario.url})
    assert done.returncode == 0, done.stderr
    assert f"HTML written to {target}" in done.stdout
    return target


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",  # type: ignore[list-item]
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--force-device-scale-factor=1", f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True, text=True, timeout=120)


def test_the_report_is_one_self_contained_file(report_html: Path, scenario: Scenario) -> None:
    html = report_html.read_text()
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert not re.search(r"""(src|href)=["']?https?:""", html)  # no external font, image or stylesheet
    assert "✓ Hash chain verified" in html
    assert "Durations are SOP time" in html
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg" class="gantt"') == 6
    for run_id in scenario.runs.values():
        assert f'id="run-{run_id}"' in html
    assert '<table class="compliance" id="by-sop">' in html and '<table class="roles" id="by-role">' in html


def test_the_window_in_the_title_and_heading_says_its_zone(audit: Any) -> None:
    """The title is what a printed or filed report is known by: "from 2026-03-02 00:00 until 2026-03-03 00:00" was
    UTC, said two paragraphs below."""
    from flows.audit.html import render_html

    report, charts = audit.report_with_sections(audit.window("2026-03-02", "2026-03-02"), max_timelines=0)
    html = render_html(report, charts)
    period = "Runs started from 2026-03-02 00:00 UTC until 2026-03-03 00:00 UTC (exclusive)"
    assert f"<title>SOP audit report &#8212; {period}</title>" in html, html[:html.index("</title>") + 8][-160:]
    assert f'<p class="meta">{period} &#183; ' in html


@needs_chromium
def test_chromium_renders_the_compliance_table_above_the_timelines(report_html: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    done = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", report_html.as_uri())
    assert shot.exists(), done.stderr
    assert shot.stat().st_size > 50_000  # a page of text, tables and charts, not a blank
    image = read_png(shot.read_bytes())
    header_rows, bar_rows = image.rows_with(NAVY), image.rows_with(GREEN)
    assert header_rows, "no compliance table header in the screenshot"
    assert bar_rows, "no timeline bar in the screenshot"
    assert min(header_rows) < min(bar_rows)  # the figures come first, then the charts
    assert image.rows_with(AMBER), "no escalation marker drawn"
    assert [y for y in image.rows_with(LATE_RED) if y > min(bar_rows)], "no late part of a bar drawn"


@needs_chromium
def test_the_report_prints_on_a_few_landscape_pages(report_html: Path, tmp_path: Path) -> None:
    pdf = tmp_path / "report.pdf"
    done = _chromium(tmp_path, "--no-pdf-header-footer", f"--print-to-pdf={pdf}", report_html.as_uri())
    assert pdf.exists(), done.stderr
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF")
    pages = len(re.findall(rb"/Type\s*/Page\b", data))
    assert 2 <= pages <= 6
    [box] = set(re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)", data))
    assert float(box[0]) > float(box[1])  # landscape


def test_a_report_over_a_tampered_ledger_says_so_at_the_top(scenario: Scenario, ledger_copy: str) -> None:
    from flows.audit import Audit
    from flows.audit.html import render_html
    from flows.ledger import Ledger

    tamper(ledger_copy, ("UPDATE records SET actor = 'li-wei' WHERE seq = 7", ()))
    ledger = Ledger(ledger_copy)
    audit = Audit(ledger)
    html = render_html(*audit.report_with_sections(workers=1), verification=audit.verify())
    ledger.dispose()
    assert '<p class="chain broken" id="chain">✗ The ledger does not verify — record 7 (edited)' in html


def test_every_output_of_the_report_says_a_tampered_ledger_does_not_verify(sop: Any, scenario: Scenario,
                                                                          ledger_copy: str, tmp_path: Path) -> None:
    """Not only the HTML: the JSON carries the verification, the terminal and a CSV to stdout say it on stderr, and the
    command exits 1 (a script exporting the figures must not take a forger's figures for the ledger's)."""
    env = {"SOP_DATABASE_URL": ledger_copy}
    clean = sop("audit", "report", "--json", str(tmp_path / "clean.json"), env=env)
    assert clean.returncode == 0 and json.loads((tmp_path / "clean.json").read_text())["verification"]["ok"] is True
    tamper(ledger_copy, ("UPDATE records SET actor = 'li-wei' WHERE seq = 7", ()))
    told = sop("audit", "report", "--json", str(tmp_path / "r.json"), env=env)
    assert told.returncode == 1 and "✗ the ledger does not verify (record 7: edited)" in told.stderr
    verification = json.loads((tmp_path / "r.json").read_text())["verification"]
    assert verification["ok"] is False and verification["first_break"]["seq"] == 7
    piped = sop("audit", "report", "--csv", "-", env=env)
    assert piped.returncode == 1 and piped.stdout.startswith("scope,key,") and "does not verify" in piped.stderr
    unchecked = sop("audit", "report", "--csv", "-", "--no-verify", env=env)
    assert unchecked.returncode == 0 and "verify" not in unchecked.stderr


def test_the_report_gives_the_whole_head_to_check_it_again_later(sop: Any, report_html: Path,
                                                                   scenario: Scenario) -> None:
    """What the ops manager hands over after a game day: the auditor notes the head from the printed report and, a
    month later, proves with it that nothing was cut off or rewritten since. A head cut to 16 characters cannot be."""
    verified = sop("audit", "verify", "--json", env={"SOP_DATABASE_URL": scenario.url})
    head = json.loads(verified.stdout)["head"]
    text = " ".join(re.sub(r"<[^>]+>", " ", report_html.read_text()).split())
    anchor = f"{head['seq']}:{head['hash']}"
    assert f"head record {head['seq']} (hash {head['hash']})" in text
    assert f"sop audit verify --anchor {anchor}" in text
    again = sop("audit", "verify", "--anchor", anchor, env={"SOP_DATABASE_URL": scenario.url})
    assert again.returncode == 0, again.stdout + again.stderr
