"""The incremental build: seed files -> passages -> vectors -> a new index version, reusing unchanged files.

Only new or changed files are read and embedded; unchanged ones keep their stored passages and
vectors; removed ones lose theirs; BM25 is rebuilt from all passages. The new version is published
through rag/versions.py, so the previous one stays what readers open until it is complete.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from rag import manifest as manifest_mod
from rag.chunking import JAPANESE_SEPARATORS, chunk_documents, passage_text
from rag.documents import list_seed_files, read_for_build, summarize_skipped
from rag.embedding import EMBED_BATCH, Embedder
from rag.errors import DiskFullError, IndexCorruptError, IndexMismatchError, IndexNotBuiltError, SeedsError
from rag.files import TMP_PREFIX, sha256_file
from rag.manifest import DEFAULT_STORE, Manifest
from rag.stores import VectorStore
from rag.stores.faiss_store import FaissStore
from rag.types import BuildReport, Chunk, Document, FileReport, SkippedFile
from rag.vector_index import VectorIndex
from rag.versions import LOCK_TIMEOUT, index_lock, publish, read_manifest, remove_leftovers

SPOOL_SLICE = 16_384  # spooled rows read back at a time (24 MB of 384-d vectors)


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
    ray_settings: Any = None,
) -> BuildReport:
    """Bring the index up to date with the seeds folder, re-reading and embedding only new or changed files.

    Unchanged files keep their stored passages and vectors; removed files lose theirs; BM25 is
    rebuilt from all passages. `full=True` re-reads and re-embeds everything. The embedder is only
    used (and a lazy one only loaded) when there are passages to embed. The previous index stays
    what load_pipeline opens until the new one is complete. `store` keeps the vectors (default FAISS);
    an index kept in another store is rebuilt in full (its passages are read and embedded again).
    `ray_settings` (a Settings with ray_address): new and changed files are read, chunked and
    embedded on Ray (rag/ray_build.py); the rest of the build is the same.
    """
    started = time.perf_counter()
    store = store or FaissStore()
    seeds_dir, index_dir = Path(seeds_dir), Path(index_dir)
    if not seeds_dir.is_dir():
        raise SeedsError(f"The seeds folder {seeds_dir}/ does not exist. Put .txt or .md articles there.")

    def waiting(message: str) -> None:
        if show_progress:
            print(message, file=sys.stderr, flush=True)

    with index_lock(index_dir, timeout=lock_timeout, on_wait=waiting), _disk_full_message(index_dir):
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
            ray_settings=ray_settings,
        )


@contextlib.contextmanager
def _disk_full_message(index_dir: Path) -> Iterator[None]:
    """Turn ENOSPC anywhere in a build into one message: the disk is full, the previous index still answers."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise DiskFullError(
            f"The disk holding {index_dir}/ is full: the new index could not be written. The previous index is "
            "still the one in use. Free some space and run `rag build` again; it removes what this build left. "
            "(ディスクがいっぱいで索引を書けませんでした。前の索引をそのまま使っています。空きを作ってから "
            "`rag build` をもう一度実行してください。)"
        ) from exc


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
    ray_settings: Any = None,
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
        and manifest_mod.incompatible(
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
    if ray_settings is not None:
        return _build_on_ray(
            seeds_dir, index_dir, paths=paths, hashes=hashes, reusable=reusable, base=base,
            old_sources=old_sources, old_rows=old_rows, old_index=old_index, model_id=embedder.model_id,
            ray_settings=ray_settings, chunk_size=chunk_size, chunk_overlap=chunk_overlap,
            show_progress=show_progress, started=started, store=store,
        )  # fmt: skip

    reports: list[FileReport] = []
    # Files read now, chunked at once: a file's documents are dropped as soon as it is chunked.
    new_chunks: dict[str, list[Chunk]] = {}
    with _progress(len(paths), "files", "file", show_progress) as bar:
        for rel, path in paths.items():
            if reusable(rel):
                assert base is not None
                reports.append(stored_report(base, rel))
            else:
                reading = read_for_build(path, rel, seeds_dir)
                status = _status(reading.report.status, rel, old_sources, hashes)
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
        _write_version(
            index_dir, store, spool, chunks, reports, model_id=embedder.model_id, chunk_size=chunk_size,
            chunk_overlap=chunk_overlap, hashes=hashes, docs=docs,
        )  # fmt: skip
    return BuildReport(
        index_dir=str(index_dir),
        docs=docs,
        chunks=len(chunks),
        seconds=time.perf_counter() - started,
        skipped=skipped,
        files=reports,
        embedded=embedded,
    )


def _write_version(
    index_dir: Path,
    store: VectorStore,
    spool: VectorSpool,
    chunks: list[Chunk],
    reports: list[FileReport],
    *,
    model_id: str,
    chunk_size: int,
    chunk_overlap: int,
    hashes: dict[str, str],
    docs: int,
) -> None:
    """Write the new index version from the spooled vectors and publish it (the atomic `CURRENT` switch)."""
    manifest = Manifest(
        embedding_model=model_id,
        dimension=spool.dimension,
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        separators=JAPANESE_SEPARATORS,
        # Skipped files are hashed too, so fixing one makes the index stale and it is read next time.
        sources=hashes,
        docs=docs,
        chunks=len(chunks),
        skipped={r.path: r.reason for r in reports if r.status == "skipped"},
        created_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        reader=manifest_mod.reader_fingerprint(),
        files={
            r.path: {"articles": r.articles, "kept_chars": r.kept_chars, "dropped_chars": r.dropped_chars}
            for r in reports
            if r.status != "removed"
        },
    )
    publish(index_dir, VectorIndex.from_vectors(manifest, chunks, spool, store=store), store)


def _status(reading_status: str, rel: str, old_sources: dict[str, str], hashes: dict[str, str]) -> str:
    if reading_status == "skipped":
        return "skipped"
    if rel not in old_sources:
        return "added"
    return "unchanged" if old_sources[rel] == hashes[rel] else "changed"


def _build_on_ray(
    seeds_dir: Path,
    index_dir: Path,
    *,
    paths: dict[str, Path],
    hashes: dict[str, str],
    reusable: Any,
    base: Manifest | None,
    old_sources: dict[str, str],
    old_rows: dict[str, list[int]],
    old_index: VectorIndex | None,
    model_id: str,
    ray_settings: Any,
    chunk_size: int,
    chunk_overlap: int,
    show_progress: bool,
    started: float,
    store: VectorStore,
) -> BuildReport:
    """The same build, with new and changed files read, chunked and embedded on Ray (rag/ray_build.py)."""
    from rag import ray_build

    to_read = [(rel, path) for rel, path in paths.items() if not reusable(rel)]
    results = ray_build.process(
        to_read, seeds_dir, settings=ray_settings, chunk_size=chunk_size, chunk_overlap=chunk_overlap
    )
    reports: list[FileReport] = []
    chunks: list[Chunk] = []
    embedded = 0
    spool: VectorSpool | None = None

    def append(rows: np.ndarray) -> None:
        nonlocal spool
        if len(rows) == 0:
            return
        if spool is None:
            spool = VectorSpool(index_dir, rows.shape[1])
        spool.append(rows)

    try:
        with _progress(len(to_read), "files (Ray)", "file", show_progress) as bar:
            for rel in paths:
                if reusable(rel):
                    assert base is not None
                    reports.append(stored_report(base, rel))
                    if old_index is not None and (rows := old_rows.get(rel)):
                        chunks += [old_index.chunks[i] for i in rows]
                        append(old_index.vectors(rows))
                    continue
                result = next(results)
                if result.rel != rel:  # preserve_order is what keeps passages in file order
                    raise RuntimeError(f"Ray returned {result.rel} where {rel} was expected")
                status = _status(result.report.status, rel, old_sources, hashes)
                reports.append(replace(result.report, path=rel, status=status))
                if status != "skipped":
                    chunks += result.chunks
                    append(result.vectors)
                    embedded += len(result.chunks)
                bar.update(1)
        reports += [FileReport(path=rel, status="removed") for rel in sorted(set(old_sources) - set(hashes))]
        skipped = [SkippedFile(path=r.path, reason=r.reason) for r in reports if r.status == "skipped"]
        docs = sum(r.articles for r in reports if r.status not in ("skipped", "removed"))
        if docs == 0 or spool is None:
            why = summarize_skipped(skipped, limit=3) if skipped else f"no {' or '.join(_suffixes())} files"
            raise SeedsError(f"No usable article in {seeds_dir}/ ({why}). The existing index was left as it was.")
        old_index = None
        _write_version(
            index_dir, store, spool, chunks, reports, model_id=model_id, chunk_size=chunk_size,
            chunk_overlap=chunk_overlap, hashes=hashes, docs=docs,
        )  # fmt: skip
    finally:
        if spool is not None:
            spool.close()
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


# ---- staleness ----


def seed_hashes(seeds_dir: Path) -> dict[str, str]:
    """sha256 of every seed file, keyed by its path relative to seeds_dir."""
    return {str(p.relative_to(seeds_dir)): sha256_file(p) for p in list_seed_files(Path(seeds_dir))}


def stale_reason(
    index_dir: Path,
    seeds_dir: Path,
    *,
    embedding_model: str,
    chunk_size: int,
    chunk_overlap: int,
    store: str = DEFAULT_STORE,
) -> str | None:
    """Why the index must be rebuilt (missing, other model, seeds changed), or None if it is current."""
    try:
        manifest = read_manifest(index_dir)
    except (IndexNotBuiltError, IndexMismatchError, IndexCorruptError) as exc:
        return str(exc)
    why = manifest_mod.incompatible(
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
    present = (
        {str(p.relative_to(seeds_dir)) for p in list_seed_files(Path(seeds_dir))} if Path(seeds_dir).is_dir() else set()
    )
    return sorted(set(manifest.sources) - present)
