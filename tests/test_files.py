import hashlib
import os
from pathlib import Path

import pytest

from rag import files
from rag.files import atomic_copy, atomic_write_text, replace_dir, sha256_file


def test_sha256_file_matches_hashlib(tmp_path: Path) -> None:
    data = os.urandom(5 * (1 << 20) + 7)  # more than one read block
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_atomic_write_replaces_content_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "CURRENT"
    atomic_write_text(target, "v-1\n")
    atomic_write_text(target, "v-2\n")
    assert target.read_text() == "v-2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["CURRENT"]


def test_failed_atomic_write_keeps_the_old_content(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "CURRENT"
    atomic_write_text(target, "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["CURRENT"]


def test_atomic_copy(tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_text("記事", encoding="utf-8")
    atomic_copy(src, tmp_path / "b.txt")
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "記事"


@pytest.mark.parametrize("exchange", [True, False])
def test_replace_dir_swaps_in_the_new_folder(tmp_path: Path, monkeypatch, exchange: bool) -> None:
    if not exchange:  # the two-rename path used where renameat2 is missing
        monkeypatch.setattr(files, "_exchange", lambda a, b: False)
    dest, new = tmp_path / "model", tmp_path / ".tmp-model-new"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    new.mkdir()
    (new / "new.txt").write_text("new")
    replace_dir(new, dest)
    assert [p.name for p in dest.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    other = tmp_path / ".tmp-x"
    other.mkdir()
    replace_dir(other, tmp_path / "fresh")  # no folder there yet
    assert (tmp_path / "fresh").is_dir() and not other.exists()
