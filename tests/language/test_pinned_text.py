"""The text a run pins is the text that was validated: each SOP file is read once.

A run keeps its SOP's text and hash (the ledger's pin) and replays that text to the end. Were the
file read a second time for the pin, a colleague saving it between the two reads would have a run
pin a text nobody validated, under a hash the audit trusts.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from flows.language import library as library_module
from flows.language.library import load_library, pinned_sop
from flows.language.loader import read_document

#: what a colleague saves over crisis-pr.yaml while the library is loading: not even valid
HALF_EDITED = "\nowner_typo: pr-lead\n"


@pytest.fixture
def root(repo_root: Path, tmp_path: Path) -> Path:
    shutil.copytree(repo_root / "config", tmp_path / "config")
    (tmp_path / "sops").mkdir()
    for stem in ("crisis-pr", "post-incident-review"):  # crisis-pr's end starts post-incident-review
        shutil.copy(repo_root / "sops" / f"{stem}.yaml", tmp_path / "sops")
    return tmp_path


@pytest.mark.parametrize("only", [None, "crisis-pr"], ids=["whole library", "a flow run's own SOP"])
def test_a_file_saved_again_right_after_it_was_read_is_not_what_the_run_pins(
        root: Path, monkeypatch: pytest.MonkeyPatch, only: str | None) -> None:
    path = root / "sops" / "crisis-pr.yaml"
    validated = path.read_text(encoding="utf-8")

    def saved_right_after_reading(file: Path):  # the colleague's editor writes the file as soon as it was read
        read = read_document(file)
        if file.name == path.name:
            file.write_text(validated + HALF_EDITED, encoding="utf-8")
        return read

    monkeypatch.setattr(library_module, "read_document", saved_right_after_reading)
    loaded = load_library(root, env={}, only=only).get("crisis-pr")

    assert path.read_text(encoding="utf-8").endswith(HALF_EDITED)  # the file did change under the load
    assert loaded.text == validated
    assert loaded.text_hash == hashlib.sha256(validated.encode("utf-8")).hexdigest()
    assert pinned_sop(loaded.text_hash, loaded.text) == loaded.sop  # the run replays exactly what was validated
