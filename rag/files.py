"""File helpers shared by the index, the seeds folder and the model folder: hashing, atomic writes, a folder swap.

A write is "atomic" here when a reader (or a process killed halfway) can only ever see the old
content or the new content, never a mix: write a temporary file beside the target, fsync it,
os.replace() it over the target, then fsync the directory so the rename itself survives a power cut.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

_BLOCK = 1 << 22  # 4 MiB: large files (GGUF, e5 weights) hash without being read whole
TMP_PREFIX = ".tmp-"  # every temporary name written here starts with it, so leftovers are easy to find


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    """Make the entries of a directory (a rename, a new file) durable."""
    with contextlib.suppress(OSError):  # some filesystems refuse O_RDONLY fsync on directories
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fsync_tree(folder: Path) -> None:
    """fsync every file and directory under folder (itself included), deepest first."""
    for root, _dirs, files in os.walk(folder, topdown=False):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(root))


def temp_path(target: Path) -> Path:
    """A fresh temporary name in target's directory (same filesystem, so os.replace is atomic)."""
    return target.with_name(f"{TMP_PREFIX}{target.name}-{secrets.token_hex(4)}")


def _atomic_replace(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write a temp file next to path with `write`, fsync it, rename it over path, fsync the folder."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "xb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace path's content with data; a crash leaves the old content or the new, never a part."""
    _atomic_replace(path, lambda fh: fh.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    """atomic_write_bytes for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_copy(src: Path, dest: Path) -> None:
    """Copy src to dest atomically (dest is replaced if it exists)."""
    with open(src, "rb") as fin:
        _atomic_replace(dest, lambda fout: shutil.copyfileobj(fin, fout, _BLOCK))


@contextlib.contextmanager
def temp_dir_beside(dest: Path) -> Iterator[Path]:
    """A new empty folder next to dest (removed on error) for building dest's replacement."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(dest)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


_RENAME_EXCHANGE = 2  # linux/fs.h


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False where that is unavailable."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd = -100
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0  # EINVAL/ENOSYS (filesystem or kernel without it): use the two renames


def replace_dir(new: Path, dest: Path) -> None:
    """Put the finished folder `new` at `dest`, replacing any folder there; `new` is consumed.

    On Linux the two folders are exchanged in one atomic step, so `dest` never goes missing.
    Elsewhere the old folder is renamed away first; a crash between the two renames leaves it as
    `.tmp-<name>-old-*` beside `dest` (the index avoids this window altogether with a pointer file).
    """
    new, dest = Path(new), Path(dest)
    if not dest.exists():
        os.rename(new, dest)
    elif _exchange(new, dest):
        shutil.rmtree(new, ignore_errors=True)  # `new` now holds the old folder
    else:
        old = dest.with_name(f"{TMP_PREFIX}{dest.name}-old-{secrets.token_hex(4)}")
        os.rename(dest, old)
        try:
            os.rename(new, dest)
        except OSError:
            os.rename(old, dest)
            raise
        shutil.rmtree(old, ignore_errors=True)
    fsync_dir(dest.parent)
