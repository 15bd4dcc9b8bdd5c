"""`rag build --ray`: new and changed files are read, chunked and embedded as a Ray Data pipeline.

Two stages over the files to read: `map` reads and chunks one file per task (any worker), and
`map_batches` embeds on a pool of actors that each load the embedder once (`ray_workers`
actors, `ray_cpus` CPUs each). The results stream back in file order (`preserve_order`) to the
one process that writes the index version, which takes them into its spool; everything else of
the build (the lock, the incremental rules, the atomic `CURRENT` switch, the per-file report) is
rag/build.py's. Ray is imported only here, and only for `--ray`.

Every worker reads the files by their path: on a cluster the seeds folder must be at the same
path on every machine (a shared disk), and this package and the prepared models installed there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.config import Settings
from rag.errors import RagError
from rag.types import Chunk, FileReport

LOCAL = "local"  # `rag build --ray` without an address: start a Ray instance on this machine
FILES_PER_BATCH = 8  # files per embedding call on an actor (a few hundred passages)


@dataclass(frozen=True)
class FileResult:
    """One file as the cluster read, chunked and embedded it."""

    rel: str
    report: FileReport
    chunks: list[Chunk]
    vectors: np.ndarray  # float32, one row per chunk


def _read_and_chunk(row: dict[str, Any]) -> dict[str, Any]:
    """Stage 1 (a Ray task): read one file and cut it into passages."""
    from rag.chunking import chunk_documents, passage_text
    from rag.documents import read_for_build

    rel, path, seeds = row["rel"], Path(row["path"]), Path(row["seeds"])
    reading = read_for_build(path, rel, seeds)
    chunks = []
    if reading.report.status != "skipped":
        chunks = chunk_documents(
            reading.docs, chunk_size=int(row["chunk_size"]), chunk_overlap=int(row["chunk_overlap"])
        )
    return {
        "rel": rel,
        "report": json.dumps(asdict(reading.report), ensure_ascii=False),
        "chunks": json.dumps([asdict(c) for c in chunks], ensure_ascii=False),
        "texts": json.dumps([passage_text(c) for c in chunks], ensure_ascii=False),
    }


class EmbedActor:
    """Stage 2 (a Ray actor): loads the embedder once, then embeds the passages of a batch of files."""

    def __init__(self, settings: Settings) -> None:
        from rag.factories import load_embedder

        # As many threads as the CPUs Ray gave this actor: two actors on two cores must not each run two.
        self.embedder = load_embedder(settings.with_overrides(n_threads=max(1, round(settings.ray_cpus))))

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from rag.embedding import EMBED_BATCH

        texts_per_file = [json.loads(t) for t in batch["texts"]]
        flat = [t for texts in texts_per_file for t in texts]
        parts = [
            np.asarray(self.embedder.embed_passages(flat[i : i + EMBED_BATCH]), dtype=np.float32)
            for i in range(0, len(flat), EMBED_BATCH)
        ]
        vectors = np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)
        out, at = [], 0
        for texts in texts_per_file:
            out.append(vectors[at : at + len(texts)].tobytes())
            at += len(texts)
        dim = np.full(len(texts_per_file), vectors.shape[1] if vectors.size else 0, dtype=np.int64)
        return {"rel": batch["rel"], "report": batch["report"], "chunks": batch["chunks"], "vectors": out, "dim": dim}


def connect(address: str) -> None:
    """Join the Ray cluster at `address` ("auto": the running one), or start a local instance ("local")."""
    try:
        import ray
    except ImportError as exc:
        raise RagError(
            "`rag build --ray` needs Ray: pip install -e '.[ray]' (Ray Data). Without --ray the build runs in this process."
        ) from exc
    if ray.is_initialized():
        return
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    try:
        if address == LOCAL:
            ray.init(address="local", **options)  # a new instance, never a cluster that happens to run here
        else:
            ray.init(address=address, **options)
    except ConnectionError as exc:
        raise RagError(
            f"No Ray cluster at {address!r}: start one with `ray start --head` (and `ray start --address=HEAD:6379` "
            f"on each worker), or use `rag build --ray` alone for a local instance. ({exc})"
        ) from exc


def process(
    files: list[tuple[str, Path]],
    seeds_dir: Path,
    *,
    settings: Settings,
    chunk_size: int,
    chunk_overlap: int,
) -> Iterator[FileResult]:
    """Read, chunk and embed `files` (relative name, path) on Ray; yield one result per file, in the given order."""
    import ray.data

    connect(settings.ray_address or LOCAL)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # same passage order as the one-process build
    context.enable_progress_bars = False
    rows = [
        {
            "rel": rel,
            "path": str(Path(path).resolve()),
            "seeds": str(Path(seeds_dir).resolve()),
            "chunk_size": chunk_size,
            "chunk_overlap": chunk_overlap,
        }
        for rel, path in files
    ]
    if not rows:
        return
    dataset = (
        ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), 64)))
        .map(_read_and_chunk, num_cpus=settings.ray_cpus)
        .map_batches(
            EmbedActor,
            fn_constructor_kwargs={"settings": settings},
            batch_size=FILES_PER_BATCH,
            compute=ray.data.ActorPoolStrategy(size=max(1, settings.ray_workers)),
            num_cpus=settings.ray_cpus,
            batch_format="numpy",
        )
    )
    for row in dataset.iter_rows():
        chunks = [Chunk(**c) for c in json.loads(row["chunks"])]
        dim = int(row["dim"])
        vectors = (
            np.frombuffer(row["vectors"], dtype=np.float32).reshape(-1, dim) if chunks else np.zeros((0, 0), np.float32)
        )
        yield FileResult(rel=row["rel"], report=FileReport(**json.loads(row["report"])), chunks=chunks, vectors=vectors)
