"""The SOP language is a layer of its own: loading and checking SOPs imports nothing that runs them.

``flows/language/spec.py`` promises it for the model; the loader, the checks and the library keep it too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

LANGUAGE = ("flows.language.spec", "flows.language.loader", "flows.language.crosscheck", "flows.language.library")
RUNTIME = ("prefect", "fastapi", "apprise", "sqlalchemy")


def test_the_language_modules_load_no_runtime_package() -> None:
    # a fresh interpreter: this test process has long imported everything
    code = (
        "import json, sys\n"
        + "".join(f"import {module}\n" for module in LANGUAGE)
        + "print(json.dumps(sorted(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout))
    assert set(LANGUAGE) <= loaded
    assert sorted(name for name in loaded if name.split(".")[0] in RUNTIME) == []


def test_sop_validate_imports_only_its_own_command_module() -> None:
    code = (
        "import json, sys, typer\n"
        "from flows.cli import app\n"
        "typer.main.get_command(app).get_command(None, 'validate')\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout))
    assert "flows.cli.library" in loaded
    assert sorted(name for name in loaded if name.startswith("flows.cli.") and name != "flows.cli.library") == [
        "flows.cli.common"
    ]
    assert sorted(name for name in loaded if name.split(".")[0] in (*RUNTIME, "notifications")) == []


def test_every_command_is_listed_with_the_module_defining_it() -> None:
    from flows.cli import COMMANDS, app

    for module in set(COMMANDS.values()):
        __import__(f"flows.cli.{module}")
    defined = {
        info.name or info.callback.__name__.replace("_", "-"): info.callback.__module__
        for info in app.registered_commands
        if info.callback is not None
    }
    for group in app.registered_groups:
        defined[group.name] = group.typer_instance.registered_commands[0].callback.__module__
    assert defined == {name: f"flows.cli.{module}" for name, module in COMMANDS.items()}


def test_commands_that_never_reach_prefect_do_not_import_it(tmp_path) -> None:
    """Prefect's client costs a second of imports; a person paged at night typing ``sop status`` does not wait for
    it (it was 2.9 s, now 1.7 s on this machine). Each command runs for real, on an empty ledger."""
    import os

    env = {**os.environ, "SOP_HOME": str(REPO_ROOT), "SOP_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
           "SOP_INBOX_DIR": str(tmp_path / "inbox"), "NO_COLOR": "1"}
    for args in (["status"], ["silence", "list"], ["oncall"], ["--help"], ["done", "--help"]):
        code = (
            "import atexit, json, sys\n"
            "atexit.register(lambda: print('\\nMODULES ' + json.dumps(sorted(sys.modules))))\n"
            f"sys.argv = ['sop', *{args!r}]\n"
            "from flows.cli import main\n"
            "main()\n"
        )
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, (args, done.stderr)
        loaded = json.loads(done.stdout.rsplit("MODULES ", 1)[1])
        assert "flows.cli.common" in loaded, args  # the command ran
        assert [name for name in loaded if name.split(".")[0] == "prefect"] == [], args


def test_reading_the_config_and_its_holiday_calendars_does_not_import_the_holidays_package() -> None:
    """The package lists its countries by importing all 250 of them (0.2–0.3 s of every command that reads
    ``config/``); the calendars' codes (CN; ES with subdivision MD) are checked against ``holiday_codes``."""
    code = (
        "import json, sys\n"
        "from flows.language.library import load_library\n"
        "calendars = load_library().site.calendars\n"
        "print(json.dumps([sorted(calendars), sorted(name for name in sys.modules if name.split('.')[0] == "
        "'holidays')]))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    calendars, loaded = json.loads(done.stdout)
    assert {"cn-office", "es-office"} <= set(calendars)
    assert loaded == []


def test_the_holiday_codes_are_the_installed_packages() -> None:
    from flows.language import holiday_codes

    assert Path(holiday_codes.__file__).read_text(encoding="utf-8") == holiday_codes.render(), (
        "the holidays package changed: write flows/language/holiday_codes.py anew with "
        "`.venv/bin/python -m flows.language.holiday_codes`")
