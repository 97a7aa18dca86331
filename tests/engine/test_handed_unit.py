"""The library `sop serve` hands down to its children: a file only this account may write, read only then, and a
file that is not a library is one line, not a child's crash loop of tracebacks."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from flows.language.library import load_library
from flows.runtime.handed import ENV, NotHandedDown, hand_down, handed_down


def test_the_library_is_handed_down_in_a_folder_only_this_account_may_enter(
        repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "var" / "serve").mkdir(parents=True)
    os.chmod(tmp_path / "var" / "serve", 0o777)  # made by hand, or by an older release with the umask's mode
    env = hand_down(tmp_path, load_library(repo_root))
    assert stat.S_IMODE((tmp_path / "var" / "serve").stat().st_mode) == 0o700
    assert stat.S_IMODE(Path(env[ENV]).stat().st_mode) == 0o600
    monkeypatch.setenv(ENV, env[ENV])
    library = handed_down()
    assert library is not None and "crisis-pr" in library.sops


def test_a_file_that_is_not_a_library_or_that_others_may_write_is_refused_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "library.pickle"
    path.write_bytes(b"not a pickle at all")
    os.chmod(path, 0o600)
    monkeypatch.setenv(ENV, str(path))
    with pytest.raises(NotHandedDown, match="cannot be read as a library .*restart `sop serve`"):
        handed_down()
    os.chmod(path, 0o620)
    with pytest.raises(NotHandedDown, match="another account owns or may write"):
        handed_down()
