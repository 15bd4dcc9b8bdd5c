"""The on-disk index: manifest + vectors + chunk store + BM25. Build (incremental), save (crash-safe), load.

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
import hashlib
import json
import os
import re
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from rag.chunking import JAPANESE_SEPARATORS, chunk_documents, passage_text
from rag.documents import FileReading, list_seed_files, read_file, summarize_skipped
from rag.embedding import Embedder
from rag.errors import IndexBusyError, IndexCorruptError, IndexMismatchError, IndexNotBuiltError, SeedsError
from rag.files import TMP_PREFIX, atomic_write_text, fsync_dir, fsync_tree, sha256_file
from rag.lexical import BM25Index
from rag.stores import REBUILD_HINT, VectorSet, VectorStore, damaged, short
from rag.stores.faiss_store import FLAT, VECTORS, FaissStore
from rag.types import BuildReport, Chunk, Document, FileReport, SkippedFile

# Bump when the files or their meaning change; an index of another version is rebuilt, not guessed at.
FORMAT_VERSION = 3  # 2: BM25 index beside the vectors; 3: per-file reports and reader fingerprint (incremental)
READABLE_VERSIONS = (2, 3)  # 2 is read as it is and fully rebuilt by the next build
MANIFEST = "manifest.json"
CHUNKS = "chunks.jsonl"
LEXICAL = "bm25"
CURRENT = "CURRENT"
LOCK = ".lock"
VERSION_PREFIX = "v-"
_VERSION_NAME = re.compile(r"^v-[0-9TZ.-]+-[0-9a-f]+$")
_VERSION_IN = re.compile(r"v-[0-9TZ.-]+-[0-9a-f]+$")
LOCK_TIMEOUT = 600.0  # seconds a build waits for another one before giving up with IndexBusyError
SPOOL_SLICE = 16_384  # spooled rows read back at a time (24 MB of 384-d vectors)
EMBED_BATCH = 128  # passages per embedding call: the progress bar moves at this step

# The modules that decide which passages a file gives. Their source is fingerprinted into the
# manifest: when it changes, stored passages of unchanged files may no longer be what a fresh read
# gives, so the next build re-reads and re-embeds every file instead of reusing them.
_READER_MODULES = ("documents.py", "text.py", "chunking.py")


def reader_fingerprint() -> str:
    """A short hash of the code that turns files into passages (see _READER_MODULES)."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for name in _READER_MODULES:
        digest.update(name.encode() + b"\0" + (package / name).read_bytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Manifest:
    """How an index was built; loading compares it with the settings in use."""

    embedding_model: str
    dimension: int
    chunk_size: int
    chunk_overlap: int
    separators: list[str]
    sources: dict[str, str]  # seed file (relative path) -> sha256 of its bytes (skipped files too)
    docs: int
    chunks: int
    skipped: dict[str, str] = field(default_factory=dict)  # file -> reason
    format_version: int = FORMAT_VERSION
    created_at: str = ""
    reader: str = ""  # reader_fingerprint() of the build; "" for indexes not built from a seeds folder
    # file -> {"articles", "kept_chars", "dropped_chars"}: an unchanged file's report without re-reading it
    files: dict[str, dict[str, int]] = field(default_factory=dict)
    # The FAISS index kind as a faiss.index_factory string ("Flat": exact; "IVF<lists>,Flat": approximate)
    # and, for IVF, how many lists a query scans. Indexes written before these fields were exact.
    vector_index: str = FLAT
    nprobe: int = 0
    # Where the vectors are (rag/stores): "faiss" (vectors.faiss in this folder) or "qdrant" (the
    # collection named here). Indexes written before these fields keep theirs in FAISS.
    store: str = FaissStore.kind
    collection: str = ""


class VectorIndex:
    """Chunks, their normalized vectors (inner product = cosine) in a vector store, and BM25 over the same chunks."""

    def __init__(
        self,
        manifest: Manifest,
        chunks: list[Chunk],
        vectors: VectorSet,
        lexical: BM25Index,
        *,
        store: VectorStore | None = None,
    ) -> None:
        self.manifest = manifest
        self.chunks = chunks
        self._vectors = vectors
        self.lexical = lexical
        self.store: VectorStore = store or FaissStore()  # where a reload or the next build finds the vectors
        # Where it was loaded from and which version: a pipeline compares them with CURRENT to reload.
        self.source_dir: Path | None = None
        self.stamp: str | None = None

    @classmethod
    def from_vectors(
        cls,
        manifest: Manifest,
        chunks: list[Chunk],
        vectors: np.ndarray | VectorSpool,
        *,
        approx_threshold: int | None = None,
        store: VectorStore | None = None,
    ) -> VectorIndex:
        """An index of vectors row-aligned with chunks, kept by `store` (default FAISS) once saved."""
        store = store or FaissStore()
        prepared = store.prepare(vectors, manifest.dimension, approx_threshold=approx_threshold)
        lexical = BM25Index.build(passage_text(c) for c in chunks)
        return cls(replace(manifest, **prepared.describe()), chunks, prepared, lexical, store=store)

    def __len__(self) -> int:
        return len(self.chunks)

    def vectors(self, rows: list[int] | None = None) -> np.ndarray:
        """Stored vectors of `rows` (all when None), row i for chunk i, exactly as they were added."""
        return self._vectors.vectors(rows)

    def search(self, query_vectors: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """For each query vector, up to k (chunk position, cosine score), best first."""
        k = min(k, len(self.chunks))
        if k <= 0:
            return [[] for _ in range(len(query_vectors))]
        return self._vectors.search(query_vectors, k)

    def write(self, folder: Path, version: str = "") -> None:
        """Write the index into an empty folder (its vectors to the store); the manifest goes last and marks it complete."""
        folder = Path(folder)
        self._vectors.write(folder, version or folder.name, self.chunks)
        self.manifest = replace(self.manifest, **self._vectors.describe())
        self.lexical.save(folder / LEXICAL)
        with open(folder / CHUNKS, "w", encoding="utf-8") as fh:
            for chunk in self.chunks:
                fh.write(json.dumps(asdict(chunk), ensure_ascii=False) + "\n")
        (folder / MANIFEST).write_text(json.dumps(asdict(self.manifest), ensure_ascii=False, indent=2), encoding="utf-8")

    def save(self, index_dir: Path, *, lock_timeout: float = LOCK_TIMEOUT) -> str:
        """Publish this index as the new version of index_dir (crash-safe); return the version name."""
        index_dir = Path(index_dir)
        with index_lock(index_dir, timeout=lock_timeout):
            remove_leftovers(index_dir, store=self.store)
            return _publish(index_dir, self, self.store)

    @classmethod
    def load(
        cls, index_dir: Path, *, expected_model: str | None = None, store: VectorStore | None = None
    ) -> VectorIndex:
        """Read the version CURRENT names (or a flat index), refusing one of another format, model or store."""
        index_dir = Path(index_dir)
        store = store or FaissStore()
        for _attempt in range(3):
            folder, stamp = resolve(index_dir)
            try:
                index = cls._load_folder(folder, expected_model=expected_model, store=store)
            except (IndexCorruptError, IndexNotBuiltError):
                # A build may have replaced CURRENT and removed this version while it was being read.
                if current_stamp(index_dir) != stamp:
                    continue
                raise
            index.source_dir, index.stamp = index_dir, stamp
            return index
        raise IndexCorruptError(f"The index in {index_dir}/ kept changing while it was read. Try again.")

    @classmethod
    def _load_folder(cls, folder: Path, *, expected_model: str | None, store: VectorStore) -> VectorIndex:
        """Read and cross-check every part of one index version; any damage is one IndexCorruptError naming it."""
        manifest = _read_manifest_file(folder)
        if expected_model is not None and manifest.embedding_model != expected_model:
            raise IndexMismatchError(
                f"The index in {folder}/ was built with the embedding model {manifest.embedding_model!r} "
                f"({folder / MANIFEST}), but {expected_model!r} is in use; its vectors cannot be compared with "
                f"the questions' vectors. {REBUILD_HINT}",
                path=str(folder / MANIFEST),
            )
        check_store(manifest, store, folder)
        vectors = store.open(folder, manifest)
        chunks = _read_chunks(folder / CHUNKS)
        lexical = _read_lexical(folder / LEXICAL)
        # Each part read fine on its own; a half-written or mixed-up version shows in the counts.
        where = folder / VECTORS if manifest.store == FaissStore.kind else f"the Qdrant collection {manifest.collection!r}"
        if vectors.dimension != manifest.dimension:
            raise _damaged(where, f"holds vectors of dimension {vectors.dimension}, the manifest says {manifest.dimension}")
        if len(chunks) != manifest.chunks:
            raise _damaged(folder / CHUNKS, f"holds {len(chunks)} passages, the manifest says {manifest.chunks}")
        if len(vectors) != len(chunks):
            raise _damaged(where, f"holds {len(vectors)} vectors for {len(chunks)} passages")
        if lexical.n_docs != len(chunks):
            raise _damaged(folder / LEXICAL, f"indexes {lexical.n_docs} passages, {CHUNKS} holds {len(chunks)}")
        return cls(manifest, chunks, vectors, lexical, store=store)


def check_store(manifest: Manifest, store: VectorStore, folder: Path) -> None:
    """IndexMismatchError when the version keeps its vectors in another store than the one in use."""
    if manifest.store == store.kind:
        return
    raise IndexMismatchError(
        f"The index in {folder.parent if folder.name.startswith(VERSION_PREFIX) else folder}/ keeps its vectors in "
        f"{manifest.store} ({folder / MANIFEST}), but the {store.kind} store is in use (RAG_STORE / --store). "
        f"Use `--store {manifest.store}` (RAG_STORE={manifest.store}) to open it, or run "
        f"`rag build --store {store.kind}` to build the index for {store.kind}. "
        f"(索引のベクトルの保存先が {manifest.store} です。--store {manifest.store} で開くか、"
        f"`rag build --store {store.kind}` で作り直してください。)",
        path=str(folder / MANIFEST),
    )


# ---- reading the files of a version (load path only): each failure names its file ----

_damaged = damaged
_short = short


def _read_chunks(path: Path) -> list[Chunk]:
    if not path.is_file():
        raise _damaged(path, "is missing")
    chunks = []
    try:
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    chunks.append(Chunk(**json.loads(line)))
                except (ValueError, TypeError) as exc:  # not JSON, not an object, wrong fields
                    raise _damaged(path, f"has a broken line {number} ({_short(exc)})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise _damaged(path, f"is unreadable ({_short(exc)})") from exc
    return chunks


def _read_lexical(folder: Path) -> BM25Index:
    if not folder.is_dir():
        raise _damaged(folder, "(the BM25 index) is missing")
    try:
        return BM25Index.load(folder)
    except FileNotFoundError as exc:
        raise _damaged(Path(exc.filename or folder), "(part of the BM25 index) is missing") from exc
    except (OSError, ValueError, TypeError, KeyError, EOFError) as exc:
        raise _damaged(folder, f"(the BM25 index) is truncated or damaged ({_short(exc)})") from exc


# ---- where the current version is ----


def _read_current(index_dir: Path) -> str | None:
    """The version name in index_dir/CURRENT, or None when there is no pointer file."""
    try:
        name = (Path(index_dir) / CURRENT).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8
        raise _damaged(Path(index_dir) / CURRENT, f"is unreadable ({_short(exc)})") from exc
    if not _VERSION_NAME.match(name):
        raise _damaged(Path(index_dir) / CURRENT, f"does not name an index version ({name[:40]!r})")
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
    return _read_manifest_file(resolve(index_dir)[0])


def _read_manifest_file(folder: Path) -> Manifest:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise IndexNotBuiltError(f"No index in {folder}/. Run `rag build` (or `make index`) first.")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: not JSON, or not UTF-8
        raise _damaged(path, f"is not valid JSON ({_short(exc)})") from exc
    if not isinstance(raw, dict):
        raise _damaged(path, f"holds a JSON {type(raw).__name__}, not the index's description")
    if raw.get("format_version") not in READABLE_VERSIONS:
        raise IndexMismatchError(
            f"The index in {folder}/ has format version {raw.get('format_version')} ({path}), this 記事QA reads "
            f"versions {', '.join(map(str, READABLE_VERSIONS))}. {REBUILD_HINT}",
            path=str(path),
        )
    try:
        return Manifest(**raw)
    except TypeError as exc:
        raise _damaged(path, f"is missing fields or has unknown ones ({_short(exc)})") from exc


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


def _publish(index_dir: Path, index: VectorIndex, store: VectorStore) -> str:
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


# ---- staleness ----


def seed_hashes(seeds_dir: Path) -> dict[str, str]:
    """sha256 of every seed file, keyed by its path relative to seeds_dir."""
    return {str(p.relative_to(seeds_dir)): sha256_file(p) for p in list_seed_files(Path(seeds_dir))}


def _incompatible(
    manifest: Manifest, *, embedding_model: str, chunk_size: int, chunk_overlap: int, store: str = FaissStore.kind
) -> str | None:
    """Why no stored passage of this index can be reused, or None."""
    if manifest.store != store:
        return f"vector store changed ({manifest.store} -> {store})"
    if manifest.format_version != FORMAT_VERSION:
        return f"index format {manifest.format_version} (now {FORMAT_VERSION})"
    if manifest.embedding_model != embedding_model:
        return f"embedding model changed ({manifest.embedding_model} -> {embedding_model})"
    if (manifest.chunk_size, manifest.chunk_overlap) != (chunk_size, chunk_overlap):
        return "chunking parameters changed"
    if manifest.separators != JAPANESE_SEPARATORS:
        return "chunk separators changed"
    if manifest.reader != reader_fingerprint():
        return "the code that reads and chunks files changed"
    return None


def stale_reason(
    index_dir: Path,
    seeds_dir: Path,
    *,
    embedding_model: str,
    chunk_size: int,
    chunk_overlap: int,
    store: str = FaissStore.kind,
) -> str | None:
    """Why the index must be rebuilt (missing, other model, seeds changed), or None if it is current."""
    try:
        manifest = read_manifest(index_dir)
    except (IndexNotBuiltError, IndexMismatchError, IndexCorruptError) as exc:
        return str(exc)
    why = _incompatible(
        manifest, embedding_model=embedding_model, chunk_size=chunk_size, chunk_overlap=chunk_overlap, store=store
    )
    if why:
        return why
    current = seed_hashes(Path(seeds_dir))
    if current != manifest.sources:
        added = sorted(set(current) - set(manifest.sources))
        removed = sorted(set(manifest.sources) - set(current))
        changed = sorted(k for k in set(current) & set(manifest.sources) if current[k] != manifest.sources[k])
        return f"seeds changed (added {added}, removed {removed}, changed {changed})"
    return None


def missing_sources(index_dir: Path, seeds_dir: Path) -> list[str]:
    """Files the current index holds that are not in seeds_dir (a build from it would drop them)."""
    try:
        manifest = read_manifest(index_dir)
    except (IndexNotBuiltError, IndexMismatchError, IndexCorruptError):
        return []
    present = {str(p.relative_to(seeds_dir)) for p in list_seed_files(Path(seeds_dir))} if Path(seeds_dir).is_dir() else set()
    return sorted(set(manifest.sources) - present)


# ---- building ----


def _progress(total: int, desc: str, unit: str, show: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not show or total == 0, file=sys.stderr, leave=False)


def embed_passages(embedder: Embedder, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
    """Embed passages in batches, with a progress bar counting passages."""
    if not texts:  # without asking the embedder its dimension: a lazy one would load the model for nothing
        return np.zeros((0, 0), dtype=np.float32)
    parts = []
    with _progress(len(texts), "passages", "passage", show_progress) as bar:
        for start in range(0, len(texts), EMBED_BATCH):
            batch = texts[start : start + EMBED_BATCH]
            parts.append(np.asarray(embedder.embed_passages(batch), dtype=np.float32))
            bar.update(len(batch))
    return np.concatenate(parts)


def _old_passages(index_dir: Path, manifest: Manifest, store: VectorStore) -> tuple[dict[str, list[int]], VectorIndex]:
    """The current index and its rows grouped by seed file (vectors are read file by file when reused)."""
    old = VectorIndex.load(index_dir, expected_model=manifest.embedding_model, store=store)
    rows: dict[str, list[int]] = {}
    for i, chunk in enumerate(old.chunks):
        rows.setdefault(chunk.source, []).append(i)
    return rows, old


class VectorSpool:
    """Float32 rows appended to a file as they are embedded, read back in slices.

    A large build keeps its vectors here rather than in memory until FAISS takes them (the FAISS
    index is then the only in-memory copy). The file is a .tmp-* entry of the index folder, so an
    interrupted build's spool is removed by the next one (remove_leftovers).
    """

    def __init__(self, folder: Path, dimension: int) -> None:
        self.dimension = dimension
        self.path = Path(folder) / f"{TMP_PREFIX}vectors-{os.getpid()}-{secrets.token_hex(4)}.f32"
        self._fh = open(self.path, "w+b")
        self._rows = 0

    def __enter__(self) -> VectorSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close and delete the file."""
        self._fh.close()
        self.path.unlink(missing_ok=True)

    def append(self, rows: np.ndarray) -> None:
        """Add rows at the end."""
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.dimension:
            raise ValueError(f"expected rows of dimension {self.dimension}, got shape {rows.shape}")
        self._fh.seek(0, os.SEEK_END)
        self._fh.write(rows.tobytes())
        self._rows += len(rows)

    def __len__(self) -> int:
        return self._rows

    def _read(self, start: int, stop: int) -> np.ndarray:
        self._fh.flush()
        width = self.dimension * 4
        data = os.pread(self._fh.fileno(), (stop - start) * width, start * width)
        return np.frombuffer(data, dtype=np.float32).reshape(-1, self.dimension)

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        """Rows of a slice, or of an array of sorted row numbers (read slice by slice)."""
        if isinstance(key, slice):
            start, stop, step = key.indices(self._rows)
            if step != 1:
                raise ValueError("a spool reads contiguous slices only")
            return self._read(start, max(start, stop))
        rows = np.asarray(key, dtype=np.int64)
        out = np.empty((len(rows), self.dimension), dtype=np.float32)
        for start in range(0, self._rows, SPOOL_SLICE):
            lo, hi = np.searchsorted(rows, [start, start + SPOOL_SLICE])
            if hi > lo:
                out[lo:hi] = self._read(start, min(start + SPOOL_SLICE, self._rows))[rows[lo:hi] - start]
        return out


def build(
    seeds_dir: Path,
    index_dir: Path,
    *,
    embedder: Embedder,
    chunk_size: int,
    chunk_overlap: int,
    show_progress: bool = False,
    full: bool = False,
    lock_timeout: float = LOCK_TIMEOUT,
    store: VectorStore | None = None,
) -> BuildReport:
    """Bring the index up to date with the seeds folder, re-reading and embedding only new or changed files.

    Unchanged files keep their stored passages and vectors; removed files lose theirs; BM25 is
    rebuilt from all passages. `full=True` re-reads and re-embeds everything. The embedder is only
    used (and a lazy one only loaded) when there are passages to embed. The previous index stays
    what load_pipeline opens until the new one is complete. `store` keeps the vectors (default FAISS);
    an index kept in another store is rebuilt in full (its passages are read and embedded again).
    """
    started = time.perf_counter()
    store = store or FaissStore()
    seeds_dir, index_dir = Path(seeds_dir), Path(index_dir)
    if not seeds_dir.is_dir():
        raise SeedsError(f"The seeds folder {seeds_dir}/ does not exist. Put .txt or .md articles there.")

    def waiting(message: str) -> None:
        if show_progress:
            print(message, file=sys.stderr, flush=True)

    with index_lock(index_dir, timeout=lock_timeout, on_wait=waiting):
        remove_leftovers(index_dir, store=store)
        return _build_locked(
            seeds_dir,
            index_dir,
            embedder=embedder,
            chunk_size=chunk_size,
            chunk_overlap=chunk_overlap,
            show_progress=show_progress,
            full=full,
            started=started,
            store=store,
        )


def _build_locked(
    seeds_dir: Path,
    index_dir: Path,
    *,
    embedder: Embedder,
    chunk_size: int,
    chunk_overlap: int,
    show_progress: bool,
    full: bool,
    started: float,
    store: VectorStore,
) -> BuildReport:
    paths = {str(p.relative_to(seeds_dir)): p for p in list_seed_files(seeds_dir)}
    hashes = {rel: sha256_file(p) for rel, p in paths.items()}

    try:
        previous: Manifest | None = read_manifest(index_dir)
    except (IndexNotBuiltError, IndexMismatchError, IndexCorruptError):
        previous = None  # nothing to compare with: every file is new
    old_sources = previous.sources if previous else {}
    # `base`: the previous index when its stored passages can be reused as they are.
    base = previous
    if full or (
        base is not None
        and _incompatible(
            base,
            embedding_model=embedder.model_id,
            chunk_size=chunk_size,
            chunk_overlap=chunk_overlap,
            store=store.kind,
        )
    ):
        base = None
    if base is not None and not _loads(index_dir, store):
        base = None  # a damaged index is rebuilt by a plain `rag build`, not reported as up to date

    if base is not None and old_sources == hashes:  # nothing changed: no new version is written
        files = [stored_report(base, rel) for rel in paths]
        return BuildReport(
            index_dir=str(index_dir),
            docs=base.docs,
            chunks=base.chunks,
            seconds=time.perf_counter() - started,
            skipped=[SkippedFile(path=f.path, reason=f.reason) for f in files if f.status == "skipped"],
            rebuilt=False,
            files=files,
        )

    def reusable(rel: str) -> bool:
        return base is not None and rel in hashes and old_sources.get(rel) == hashes[rel]

    old_rows: dict[str, list[int]] = {}
    old_index: VectorIndex | None = None
    if base is not None and any(reusable(rel) for rel in paths):
        old_rows, old_index = _old_passages(index_dir, base, store)

    reports: list[FileReport] = []
    # Files read now, chunked at once: a file's documents are dropped as soon as it is chunked.
    new_chunks: dict[str, list[Chunk]] = {}
    with _progress(len(paths), "files", "file", show_progress) as bar:
        for rel, path in paths.items():
            if reusable(rel):
                assert base is not None
                reports.append(stored_report(base, rel))
            else:
                reading = _read(path, rel, seeds_dir)
                if reading.report.status == "skipped":
                    status = "skipped"
                elif rel not in old_sources:
                    status = "added"
                else:
                    status = "unchanged" if old_sources[rel] == hashes[rel] else "changed"
                reports.append(replace(reading.report, path=rel, status=status))
                if status != "skipped":
                    new_chunks[rel] = chunk_documents(reading.docs, chunk_size=chunk_size, chunk_overlap=chunk_overlap)
            bar.update(1)
    reports += [FileReport(path=rel, status="removed") for rel in sorted(set(old_sources) - set(hashes))]
    skipped = [SkippedFile(path=r.path, reason=r.reason) for r in reports if r.status == "skipped"]
    docs = sum(r.articles for r in reports if r.status not in ("skipped", "removed"))
    if docs == 0:
        why = summarize_skipped(skipped, limit=3) if skipped else f"no {' or '.join(_suffixes())} files"
        raise SeedsError(f"No usable article in {seeds_dir}/ ({why}). The existing index was left as it was.")

    # Rows in file order: stored vectors of unchanged files copied, new passages embedded in full
    # batches across files; all of them go through a spool on disk, not a list of arrays, so the
    # store's own copy is the only one in memory.
    embedded = sum(len(c) for c in new_chunks.values())
    dimension = base.dimension if base is not None and not embedded else embedder.dimension
    chunks: list[Chunk] = []
    with VectorSpool(index_dir, dimension) as spool:
        with _progress(embedded, "passages", "passage", show_progress) as bar:
            pending: list[Chunk] = []

            def embed_pending() -> None:
                if pending:
                    spool.append(embedder.embed_passages([passage_text(c) for c in pending]))
                    bar.update(len(pending))
                    pending.clear()

            for rel in paths:
                if rel in new_chunks:
                    for chunk in new_chunks.pop(rel):
                        chunks.append(chunk)
                        pending.append(chunk)
                        if len(pending) == EMBED_BATCH:
                            embed_pending()
                elif old_index is not None and (rows := old_rows.get(rel) if reusable(rel) else None):
                    embed_pending()
                    chunks += [old_index.chunks[i] for i in rows]
                    spool.append(old_index.vectors(rows))
            embed_pending()
        old_index = None  # its vectors are freed before the new index takes its copy
        manifest = Manifest(
            embedding_model=embedder.model_id,
            dimension=dimension,
            chunk_size=chunk_size,
            chunk_overlap=chunk_overlap,
            separators=JAPANESE_SEPARATORS,
            # Skipped files are hashed too, so fixing one makes the index stale and it is read next time.
            sources=hashes,
            docs=docs,
            chunks=len(chunks),
            skipped={s.path: s.reason for s in skipped},
            created_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            reader=reader_fingerprint(),
            files={
                r.path: {"articles": r.articles, "kept_chars": r.kept_chars, "dropped_chars": r.dropped_chars}
                for r in reports
                if r.status != "removed"
            },
        )
        _publish(index_dir, VectorIndex.from_vectors(manifest, chunks, spool, store=store), store)
    return BuildReport(
        index_dir=str(index_dir),
        docs=docs,
        chunks=len(chunks),
        seconds=time.perf_counter() - started,
        skipped=skipped,
        files=reports,
        embedded=embedded,
    )


def _loads(index_dir: Path, store: VectorStore) -> bool:
    """True if the current index opens without damage (no embedder needed: the model was compared already)."""
    try:
        VectorIndex.load(index_dir, store=store)
    except IndexCorruptError:
        return False
    return True


def _read(path: Path, rel: str, seeds_dir: Path) -> FileReading:
    """read_file, except that an unexpected failure on one file skips that file instead of the whole build."""
    try:
        return read_file(path, root=seeds_dir)
    except Exception as exc:  # a reader bug on one odd file must not keep every other file out of the index
        reason = f"could not be read ({type(exc).__name__}: {exc}); fix or remove the file and run `rag build` again"
        return FileReading(docs=[], drops=[], report=FileReport(path=rel, status="skipped", reason=reason))


def _suffixes() -> tuple[str, ...]:
    from rag.documents import SEED_SUFFIXES

    return SEED_SUFFIXES


def stored_report(manifest: Manifest, rel: str) -> FileReport:
    """The report of an unchanged file, as the manifest recorded it (the file is not read again)."""
    if rel in manifest.skipped:
        return FileReport(path=rel, status="skipped", reason=manifest.skipped[rel])
    counts = manifest.files.get(rel, {})
    return FileReport(
        path=rel,
        articles=int(counts.get("articles", 0)),
        kept_chars=int(counts.get("kept_chars", 0)),
        dropped_chars=int(counts.get("dropped_chars", 0)),
        status="unchanged",
    )


def build_from_documents(
    docs: list[Document],
    index_dir: Path,
    *,
    embedder: Embedder,
    chunk_size: int,
    chunk_overlap: int,
    sources: dict[str, str] | None = None,
    skipped: dict[str, str] | None = None,
    show_progress: bool = False,
    store: VectorStore | None = None,
) -> VectorIndex:
    """Chunk, embed and save already-loaded documents (an evaluation corpus) as a new index version."""
    chunks = chunk_documents(docs, chunk_size=chunk_size, chunk_overlap=chunk_overlap)
    vectors = embed_passages(embedder, [passage_text(c) for c in chunks], show_progress=show_progress)
    manifest = Manifest(
        embedding_model=embedder.model_id,
        dimension=embedder.dimension,
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        separators=JAPANESE_SEPARATORS,
        sources=sources or {},
        docs=len(docs),
        chunks=len(chunks),
        skipped=skipped or {},
        created_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    index = VectorIndex.from_vectors(manifest, chunks, vectors, store=store)
    index.stamp = index.save(Path(index_dir))
    index.source_dir = Path(index_dir)
    return index
