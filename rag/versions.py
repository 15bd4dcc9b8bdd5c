"""The versioned index folder: which version is current, one build at a time, publishing, cleaning up.

Layout of an index folder::

    index/CURRENT          one line: the name of the complete version to open (replaced atomically)
    index/v-<time>-<hex>/  manifest.json, vectors.faiss, chunks.jsonl, bm25/  (never modified once named)
    index/.tmp-*           a build in progress, or the leftovers of one that was killed
    index/.lock            held by the one build allowed at a time
    index/qdrant/          with `--store qdrant` in local mode: the collections (one per version)

The vectors go to a VectorStore (rag/stores): FAISS writes vectors.faiss into the version folder;
Qdrant keeps one collection per version, named after it and written completely before CURRENT
names the version, dropped when the version folder is removed.

A build writes a whole new version under `.tmp-…`, renames it to `v-…`, then replaces CURRENT.
Each step is atomic, so at every instant CURRENT names either the old or the new complete index.
An index of the earlier flat layout (manifest.json directly in index/) is still read; the next
build writes the new layout and removes the flat files.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from rag.errors import REBUILD_HINT, IndexBusyError, IndexCorruptError, IndexNotBuiltError, damaged, short
from rag.files import TMP_PREFIX, atomic_write_text, fsync_dir, fsync_tree
from rag.manifest import MANIFEST, Manifest, read_manifest_file
from rag.stores import VectorStore
from rag.stores.faiss_store import VECTORS, FaissStore

CHUNKS = "chunks.jsonl"
LEXICAL = "bm25"
CURRENT = "CURRENT"
LOCK = ".lock"
VERSION_PREFIX = "v-"
_VERSION_NAME = re.compile(r"^v-[0-9TZ.-]+-[0-9a-f]+$")
_VERSION_IN = re.compile(r"v-[0-9TZ.-]+-[0-9a-f]+$")
LOCK_TIMEOUT = 600.0  # seconds a build waits for another one before giving up with IndexBusyError


class VersionWriter(Protocol):
    """What publish() writes: an index that can write itself into an empty version folder."""

    def write(self, folder: Path, version: str = "") -> None: ...


# ---- where the current version is ----


def _read_current(index_dir: Path) -> str | None:
    """The version name in index_dir/CURRENT, or None when there is no pointer file."""
    try:
        name = (Path(index_dir) / CURRENT).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8
        raise damaged(Path(index_dir) / CURRENT, f"is unreadable ({short(exc)})") from exc
    if not _VERSION_NAME.match(name):
        raise damaged(Path(index_dir) / CURRENT, f"does not name an index version ({name[:40]!r})")
    return name


def resolve(index_dir: Path) -> tuple[Path, str]:
    """(folder holding the complete current index, stamp identifying it); IndexNotBuiltError if none."""
    index_dir = Path(index_dir)
    name = _read_current(index_dir)
    if name is not None:
        folder = index_dir / name
        if not (folder / MANIFEST).is_file():
            missing = "is missing" if not folder.is_dir() else f"has no {MANIFEST}"
            raise IndexCorruptError(
                f"The index is damaged: {index_dir / CURRENT} names the version {folder}/, which {missing}. "
                f"{REBUILD_HINT}",
                path=str(folder),
            )
        return folder, name
    if (index_dir / MANIFEST).is_file():  # the flat layout of earlier versions
        return index_dir, _flat_stamp(index_dir)
    raise IndexNotBuiltError(f"No index in {index_dir}/. Run `rag build` (or `make index`) first.")


def _flat_stamp(index_dir: Path) -> str:
    return f"flat:{(index_dir / MANIFEST).stat().st_mtime_ns}"


def current_stamp(index_dir: Path) -> str | None:
    """What identifies the current index (cheap: one small file read), or None if there is none."""
    index_dir = Path(index_dir)
    with contextlib.suppress(IndexCorruptError, OSError):
        name = _read_current(index_dir)
        if name is not None:
            return name
        if (index_dir / MANIFEST).is_file():
            return _flat_stamp(index_dir)
    return None


def version_dir(index_dir: Path) -> Path:
    """The folder of the complete index that load_pipeline opens (for tools and tests)."""
    return resolve(index_dir)[0]


def read_manifest(index_dir: Path) -> Manifest:
    """The manifest of the current index; IndexNotBuiltError if there is none."""
    return read_manifest_file(resolve(index_dir)[0])




# ---- the lock, publishing a version, cleaning up ----


@contextlib.contextmanager
def index_lock(
    index_dir: Path, *, timeout: float = LOCK_TIMEOUT, on_wait: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold index_dir/.lock: one build at a time; the others wait, then fail with IndexBusyError."""
    from filelock import FileLock, Timeout

    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(index_dir / LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if on_wait is not None:
            on_wait(f"Another build is updating {index_dir}/; waiting for it to finish (up to {timeout:.0f} s)…")
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise IndexBusyError(
                f"Another build (`rag build`, `rag add` or an upload in the chat page) has been updating "
                f"{index_dir}/ for over {timeout:.0f} s, so this one gave up and changed nothing. Let it finish "
                f"and try again. (Its lock, {index_dir}/{LOCK}, is released when that process ends, even if it crashed.)"
            ) from None
    try:
        yield
    finally:
        lock.release()


def _new_version_name() -> str:
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
    return f"{VERSION_PREFIX}{stamp}-{secrets.token_hex(4)}"


def publish(index_dir: Path, index: VersionWriter, store: VectorStore) -> str:
    """Write index as a new version and point CURRENT at it. The caller holds the lock."""
    previous = _read_current_or_none(index_dir)
    name = _new_version_name()
    tmp = index_dir / f"{TMP_PREFIX}{name}"
    # The folder exists before the store writes anything outside it (a Qdrant collection named after
    # the version): after a crash, remove_leftovers finds the name in `.tmp-…` and drops both.
    tmp.mkdir()
    try:
        index.write(tmp, name)
        fsync_tree(tmp)
        os.rename(tmp, index_dir / name)
    except BaseException:
        with contextlib.suppress(Exception):  # the original error matters more than a failed clean-up
            store.drop(name)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(index_dir)
    # The one step that switches readers over: before it they open the old version, after it the new.
    atomic_write_text(index_dir / CURRENT, name + "\n")
    # The previous version stays one build longer: a reader that read CURRENT just before the switch
    # may still be opening it.
    _remove_versions(index_dir, keep={name, previous}, store=store)
    _remove_flat_files(index_dir)
    return name


def _read_current_or_none(index_dir: Path) -> str | None:
    try:
        return _read_current(index_dir)
    except IndexCorruptError:
        return None


def _remove(path: Path) -> None:
    """Delete a file or folder; a folder is renamed to a .tmp- name first so a half-deleted one is never taken for a version."""
    if path.is_dir() and not path.name.startswith(TMP_PREFIX):
        trash = path.with_name(f"{TMP_PREFIX}old-{path.name}")
        os.rename(path, trash)
        path = trash
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _remove_versions(index_dir: Path, *, keep: set[str | None], store: VectorStore) -> None:
    for entry in index_dir.iterdir():
        if entry.name.startswith(VERSION_PREFIX) and entry.name not in keep:
            # The store's part first: a crash in between leaves a folder that the next clean-up removes
            # (with another try at the store), never vectors that no folder names.
            store.drop(entry.name)
            _remove(entry)


def _version_in(name: str) -> str | None:
    """The version name inside a `.tmp-…` entry (".tmp-v-…", ".tmp-old-v-…"), if any."""
    found = _VERSION_IN.search(name)
    return found.group(0) if found else None


def _remove_flat_files(index_dir: Path) -> None:
    """Once CURRENT exists, the files of a flat (format 2) index beside it are never read: remove them."""
    if (index_dir / CURRENT).is_file():
        for name in (MANIFEST, VECTORS, CHUNKS, LEXICAL):
            if (index_dir / name).exists():
                _remove(index_dir / name)


def remove_leftovers(index_dir: Path, *, store: VectorStore | None = None) -> None:
    """Remove what interrupted builds left: .tmp-* entries and versions newer than CURRENT that it never named.

    The caller holds the lock, so no .tmp-* entry belongs to a running build. What the store keeps
    outside index/ for those versions (Qdrant collections) is dropped with them.
    """
    index_dir = Path(index_dir)
    store = store or FaissStore()
    if not index_dir.is_dir():
        return
    for entry in index_dir.iterdir():
        if entry.name.startswith(TMP_PREFIX):
            version = _version_in(entry.name)
            if version is not None:
                store.drop(version)
            _remove(entry)
    current = _read_current_or_none(index_dir)
    if current is None:
        if not (index_dir / MANIFEST).is_file():  # no usable index at all: every version is a leftover
            _remove_versions(index_dir, keep=set(), store=store)
        return
    versions = sorted(e.name for e in index_dir.iterdir() if e.name.startswith(VERSION_PREFIX))
    older = [v for v in versions if v < current]
    _remove_versions(index_dir, keep={current, older[-1] if older else None}, store=store)
    _remove_flat_files(index_dir)
