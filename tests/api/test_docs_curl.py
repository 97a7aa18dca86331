"""docs/running.md, "Sending one by hand (curl)": its commands, run as written (real curl and openssl) against a real
API, do what the text says: Alertmanager's payload starts or attaches a run, Grafana's signed one is taken, and the
same signed request sent again is refused as a replay."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.api.conftest import Api

pytestmark = pytest.mark.skipif(not (shutil.which("curl") and shutil.which("openssl")), reason="curl and openssl")


def _blocks(repo_root: Path) -> list[str]:
    text = (repo_root / "docs" / "running.md").read_text()
    section = text.split("### Sending one by hand (curl)", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def _run(script: str, api: Api, token_env: dict[str, str]) -> str:
    script = script.replace("http://127.0.0.1:8000", api.url)
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env={**os.environ, **token_env},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_documented_curl_commands_send_alerts_as_the_text_says(repo_root: Path, api: Api,
                                                                   token_env: dict[str, str]) -> None:
    alertmanager, grafana = _blocks(repo_root)

    answer = json.loads(_run(alertmanager, api, token_env))
    assert "outcomes" in answer, answer
    [first] = answer["outcomes"]
    assert first["status"] in ("started", "attached") and first["run"], first
    [again] = json.loads(_run(alertmanager, api, token_env))["outcomes"]
    assert (again["status"], again["run"]) == ("attached", first["run"])

    [signed] = json.loads(_run(grafana, api, token_env))["outcomes"]
    assert signed["status"] == "attached" and signed["run"] == first["run"]  # the same alert: the same run

    replay = grafana.replace("ts=$(date +%s)", "ts=${FIXED_TS}") + "\n"  # the same signed request, sent twice
    stamp = str(int(api.engine.clock.now().timestamp()) - 5)  # not the second the block above may have signed
    first_send = json.loads(_run(replay, api, {**token_env, "FIXED_TS": stamp}))
    assert first_send.get("outcomes", [{}])[0].get("status") == "attached", first_send
    refused = json.loads(_run(replay, api, {**token_env, "FIXED_TS": stamp}))
    assert "already taken" in refused["error"] and refused["field"] == "header.x-grafana-alerting-signature"
