"""Putting articles in, from Settings: build_index (the seeds folder) and add_documents (new files).

The library's entry points for `rag build`, `rag add` and the chat page's upload; the work itself is
rag/build.py (the incremental build) and rag/upload.py (checking and copying files).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from rag import build as build_mod
from rag.config import Settings
from rag.embedding import Embedder
from rag.errors import SeedsError
from rag.factories import lazy_embedder, load_store
from rag.stores import VectorStore
from rag.types import AddReport, BuildReport, SkippedFile
from rag.versions import read_manifest


def build_index(
    seeds_dir: str | Path | None = None,
    index_dir: str | Path | None = None,
    *,
    settings: Settings | None = None,
    embedder: Embedder | None = None,
    store: VectorStore | None = None,
    if_stale: bool = False,
    full: bool = False,
    show_progress: bool = False,
    **overrides: object,
) -> BuildReport:
    """Update the index from the seeds folder: only new or changed files are read and embedded.

    full=True re-reads and re-embeds every file. The embedding model is loaded only if there is
    something to embed. if_stale=True only compares hashes (the index is left alone when current).
    """
    settings = (settings or Settings()).with_overrides(seeds_dir=seeds_dir, index_dir=index_dir, **overrides)
    embedder = embedder or lazy_embedder(settings)
    store = store or load_store(settings)
    if if_stale and not full:
        reason = build_mod.stale_reason(
            settings.index_dir,
            settings.seeds_dir,
            embedding_model=embedder.model_id,
            chunk_size=settings.chunk_size,
            chunk_overlap=settings.chunk_overlap,
            store=store.kind,
        )
        if reason is None:
            manifest = read_manifest(settings.index_dir)
            return BuildReport(
                index_dir=str(settings.index_dir),
                docs=manifest.docs,
                chunks=manifest.chunks,
                seconds=0.0,
                skipped=[SkippedFile(path=p, reason=r) for p, r in manifest.skipped.items()],
                rebuilt=False,
                files=[build_mod.stored_report(manifest, rel) for rel in manifest.sources],
            )
    return build_mod.build(
        settings.seeds_dir,
        settings.index_dir,
        embedder=embedder,
        chunk_size=settings.chunk_size,
        chunk_overlap=settings.chunk_overlap,
        show_progress=show_progress,
        full=full,
        store=store,
        ray_settings=settings if settings.ray_address else None,
    )


def add_documents(
    paths: Iterable[str | Path],
    *,
    index_dir: str | Path | None = None,
    seeds_dir: str | Path | None = None,
    replace: bool = False,
    names: Iterable[str] | None = None,
    settings: Settings | None = None,
    embedder: Embedder | None = None,
    store: VectorStore | None = None,
    show_progress: bool = False,
    **overrides: object,
) -> AddReport:
    """Copy article files into the seeds folder (safe names, .txt/.md/.html ≤ 10 MB, .pdf/.docx ≤ 50 MB) and update the index.

    A file whose name is taken is refused unless replace=True; one refused file refuses the call and
    nothing changes. If the index update fails, the copied files are taken out again and the previous
    index stays. A running pipeline answers from the new index at its next question.
    """
    from rag.build import missing_sources
    from rag.upload import save_files, undo

    settings = (settings or Settings()).with_overrides(seeds_dir=seeds_dir, index_dir=index_dir, **overrides)
    # Adding must never take articles out: an index built from another folder would lose all of its own.
    missing = missing_sources(settings.index_dir, settings.seeds_dir)
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise SeedsError(
            f"The index in {settings.index_dir}/ holds files that are not in {settings.seeds_dir}/ ({shown}), so "
            f"it was probably built from another folder; adding here would drop them. Give the seeds folder it was "
            f"built from (--seeds), or run `rag build --seeds {settings.seeds_dir}` first if they were removed on purpose."
        )
    saved = save_files(paths, settings.seeds_dir, replace=replace, names=names)
    try:
        report = build_index(settings=settings, embedder=embedder, store=store, show_progress=show_progress)
    except BaseException:
        undo(saved, settings.seeds_dir)
        raise
    return AddReport(
        saved=[s.name for s in saved],
        build=report,
        unchanged=[s.name for s in saved if s.unchanged],
    )
