"""The SOP language is a layer of its own: loading and checking SOPs imports nothing that runs them.

``flows/language/spec.py`` promises it for the model; the loader, the checks and the library keep it too.
"""

from __future__ import annotations

import json
import subprocess
import sys

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
