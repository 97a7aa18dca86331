"""`sop oncall` and `sop validate --oncall` as a user runs them, on a ledger of the test's own."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TestDatabase


@pytest.fixture
def ledger_env(database: TestDatabase, tmp_path: Path) -> dict[str, str]:
    return {"SOP_DATABASE_URL": database.url_at(tmp_path / "ledger.db"), "SOP_INBOX_DIR": str(tmp_path / "inbox")}


def test_an_override_is_recorded_as_its_person_and_shown_until_it_ends(sop: Any, ledger_env: dict[str, str]) -> None:
    at = "2031-01-01T12:00+08:00"  # a Wednesday of zhao-lei's week (the rotation of config/roles.yaml), in the future
    before = json.loads(sop("oncall", "sre-oncall", "--at", at, "--shifts", "2", "--json", env=ledger_env).stdout)
    assert [s["primary"] for s in before["sre-oncall"]] == ["zhao-lei", "kenji-sato"]

    nobody = sop("oncall", "override", "sre-oncall", "tom-becker", "--from", "2031-01-01T00:00+08:00",
                 "--until", "+2d", "--reason", "zhao-lei on leave", env={**ledger_env, "SOP_ACTOR": None})
    assert nobody.returncode == 1 and "who are you? pass --as" in nobody.stderr
    stranger = sop("oncall", "override", "sre-oncall", "tom-becker", "--from", "2031-01-01T00:00+08:00",
                   "--until", "+2d", "--reason", "zhao-lei on leave", "--as", "wang-fan", env=ledger_env)
    assert stranger.returncode == 1 and "did you mean `wang-fang`?" in stranger.stderr
    # a person of config/ who is no operator may not change who is paged, here as on the /oncall page
    creative = sop("oncall", "override", "sre-oncall", "tom-becker", "--from", "2031-01-01T00:00+08:00",
                   "--until", "+2d", "--reason", "zhao-lei on leave", "--as", "maria-costa", env=ledger_env)
    assert creative.returncode == 1 and "maria-costa is not one of settings.web.operators" in creative.stderr
    assert "nothing was recorded" in creative.stderr and "Traceback" not in creative.stderr

    made = sop("oncall", "override", "sre-oncall", "tom-becker", "--from", "2031-01-01T00:00+08:00",
               "--until", "+2d", "--reason", "zhao-lei on leave", "--as", "li-wei", env=ledger_env)
    assert made.returncode == 0, made.stderr
    assert "override #1: tom-becker is primary of sre-oncall" in made.stdout and "li-wei (cli" in made.stdout

    after = json.loads(sop("oncall", "sre-oncall", "--at", at, "--shifts", "3", "--json", env=ledger_env).stdout)
    stretches = [(s["primary"], s["source"]) for s in after["sre-oncall"]]
    assert stretches == [("tom-becker", "override"), ("zhao-lei", "rotation"), ("kenji-sato", "rotation")]
    assert after["sre-oncall"][0]["until"] == "2031-01-02T16:00:00+00:00"  # two days after its start, then it ends
    table = sop("oncall", "sre-oncall", "--at", at, env=ledger_env).stdout  # its first row is the instant asked about
    assert "2031-01-01 12:00" in table and "│ now " not in table
    bad = sop("oncall", "override", "sre-oncall", "li-wei", "--until", "+1h", "--reason", "x", "--as", "li-wei",
              env=ledger_env)
    assert bad.returncode == 1 and "`li-wei` is not a member of `sre-oncall`" in bad.stderr


def test_the_times_are_the_readers_own_or_the_zone_asked_for(sop: Any, ledger_env: dict[str, str]) -> None:
    """sre-oncall hands over on Monday 09:00 in Shanghai: the site's zone shows 09:00; Sara Lopez (Madrid, her
    $SOP_ACTOR) reads 02:00, her own time; --tz reads London's; a zone that is none is refused by name."""
    at = "2031-01-01T12:00+08:00"
    site = sop("oncall", "sre-oncall", "--at", at, "--shifts", "2", env={**ledger_env, "SOP_ACTOR": None}).stdout
    assert "(times in Asia/Shanghai)" in site and "2031-01-06 09:00" in site
    hers = sop("oncall", "sre-oncall", "--at", at, "--shifts", "2", env={**ledger_env, "SOP_ACTOR": "sara-lopez"})
    assert "(times in Europe/Madrid)" in hers.stdout and "2031-01-06 02:00" in hers.stdout, hers.stdout
    london = sop("oncall", "sre-oncall", "--at", at, "--shifts", "2", "--tz", "Europe/London", env=ledger_env).stdout
    assert "(times in Europe/London)" in london and "2031-01-06 01:00" in london
    wrong = sop("oncall", "sre-oncall", "--tz", "Europe/Londn", env=ledger_env)
    assert wrong.returncode == 1 and "--tz 'Europe/Londn' is not a time zone" in wrong.stderr
    assert "Traceback" not in wrong.stderr


@pytest.mark.parametrize("args, said", [
    # a stand-in for 73 years is a rotation: refused (a silence is refused past 30 days)
    (["override", "sre-oncall", "tom-becker", "--until", "2099-01-01", "--reason", "r", "--as", "li-wei"],
     "an override is for a while (leave, a swap): 90 days at most"),
    (["override", "end", "abc", "--reason", "x", "--as", "li-wei"],
     "`override end` takes the number of the override to end (`override end 2`), got `abc`"),
    # an override's options on a show (the word `override` forgotten) would be dropped: refused instead
    (["sre-oncall", "--until", "+1h", "--reason", "x"], "--until, --reason are for `sop oncall override`"),
])
def test_an_override_asked_wrongly_is_refused_and_records_nothing(sop: Any, ledger_env: dict[str, str],
                                                                   args: list[str], said: str) -> None:
    done = sop("oncall", *args, env=ledger_env)
    assert done.returncode == 1 and said in " ".join(done.stderr.split()), done.stderr
    listed = json.loads(sop("oncall", "sre-oncall", "--json", env=ledger_env).stdout)
    assert all(s["source"] != "override" for s in listed["sre-oncall"])  # nobody was put on call


def test_an_override_recorded_by_mistake_is_withdrawn_with_a_reason_and_is_in_the_chain(
        sop: Any, ledger_env: dict[str, str]) -> None:
    at = "2031-01-01T12:00+08:00"
    made = sop("oncall", "override", "sre-oncall", "tom-becker", "--from", "2031-01-01T00:00+08:00", "--until", "+2d",
               "--reason", "x", "--as", "li-wei", "--json", env=ledger_env)
    override = json.loads(made.stdout)["id"]
    assert json.loads(sop("oncall", "sre-oncall", "--at", at, "--json", env=ledger_env).stdout)["sre-oncall"][0][
        "primary"] == "tom-becker"
    unexplained = sop("oncall", "override", "end", str(override), "--as", "li-wei", env=ledger_env)
    assert unexplained.returncode == 1 and "ending an override needs --reason" in unexplained.stderr
    not_theirs = sop("oncall", "override", "end", f"#{override}", "--reason", "mine now", "--as", "maria-costa",
                     env=ledger_env)
    assert not_theirs.returncode == 1 and "maria-costa is not one of settings.web.operators" in not_theirs.stderr
    ended = sop("oncall", "override", "end", f"#{override}", "--reason", "recorded by mistake", "--as", "li-wei",
                env=ledger_env)
    assert ended.returncode == 0, ended.stderr
    assert f"override #{override} (tom-becker for sre-oncall) withdrawn: it never applies" in ended.stdout
    stretches = json.loads(sop("oncall", "sre-oncall", "--at", at, "--json", env=ledger_env).stdout)["sre-oncall"]
    assert stretches[0]["primary"] == "zhao-lei" and stretches[0]["source"] == "rotation"  # as if never made
    again = sop("oncall", "override", "end", str(override), "--reason", "twice", "--as", "li-wei", env=ledger_env)
    assert again.returncode == 1 and f"override #{override} is over already" in again.stderr
    unknown = sop("oncall", "override", "end", "99", "--reason", "r", "--as", "li-wei", env=ledger_env)
    assert unknown.returncode == 1 and "there is no override #99" in unknown.stderr

    import sqlalchemy as sa

    from flows.ledger import Ledger
    from flows.ledger.schema import records

    ledger = Ledger(ledger_env["SOP_DATABASE_URL"])
    with ledger.read() as conn:
        row = conn.execute(sa.select(records).where(records.c.kind == "oncall_override_ended")).one()
    ledger.dispose()
    data = json.loads(row.data)
    assert (row.actor, data["override"], data["reason"], data["withdrawn"], data["via"]) == (
        "li-wei", override, "recorded by mistake", True, "cli")


def test_validate_oncall_reports_someone_on_call_while_away(sop: Any, repo_root: Path, tmp_path: Path,
                                                            ledger_env: dict[str, str]) -> None:
    config = tmp_path / "config"
    shutil.copytree(repo_root / "config", config)
    people = (config / "people.yaml").read_text()
    # away for the whole of the next fortnight: on call at some point whoever's week it is
    away = "    away:\n      - {from: 2020-01-01, until: 2099-01-01, reason: sabbatical}\n"
    start = people.index("  kenji-sato:\n")
    end = people.index("\n", people.index("    name:", start)) + 1  # after her name line
    (config / "people.yaml").write_text(people[:end] + away + people[end:])
    line = people[:start].count("\n") + 4  # kenji-sato:, name:, away:, then the entry
    plain = sop("validate", "-q", "--config", str(config), str(config), env=ledger_env)
    assert plain.returncode == 0, plain.stderr
    checked = sop("validate", "--oncall", "--config", str(config), str(config), env=ledger_env)
    assert checked.returncode == 1
    assert f"people.yaml:{line}:" in checked.stderr and "people.kenji-sato.away[0]" in checked.stderr
    assert "kenji-sato is primary of `backup-admin`" in checked.stderr  # a fixed role: every day of the fortnight
