"""The on-disk index: manifest + FAISS vectors + chunk store. Build, save (atomic), load (checked)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rag.chunking import JAPANESE_SEPARATORS, chunk_documents, passage_text
from rag.documents import file_sha256, list_seed_files, load_documents
from rag.embedding import Embedder
from rag.errors import IndexCorruptError, IndexMismatchError, IndexNotBuiltError, SeedsError
from rag.lexical import BM25Index
from rag.types import BuildReport, Chunk, Document

# Bump when the files or their meaning change; an index of another version is rebuilt, not guessed at.
FORMAT_VERSION = 2  # 2: BM25 index beside the vectors
MANIFEST = "manifest.json"
VECTORS = "vectors.faiss"
CHUNKS = "chunks.jsonl"
LEXICAL = "bm25"


@dataclass(frozen=True)
class Manifest:
    """How an index was built; loading compares it with the settings in use."""

    embedding_model: str
    dimension: int
    chunk_size: int
    chunk_overlap: int
    separators: list[str]
    sources: dict[str, str]  # seed file (relative path) -> sha256 of its bytes
    docs: int
    chunks: int
    skipped: dict[str, str] = field(default_factory=dict)  # file -> reason
    format_version: int = FORMAT_VERSION
    created_at: str = ""


class VectorIndex:
    """Chunks and their normalized vectors in a FAISS inner-product index (= cosine similarity)."""

    def __init__(self, manifest: Manifest, chunks: list[Chunk], faiss_index: object, lexical: BM25Index) -> None:
        self.manifest = manifest
        self.chunks = chunks
        self._faiss = faiss_index
        self.lexical = lexical

    @classmethod
    def from_vectors(cls, manifest: Manifest, chunks: list[Chunk], vectors: np.ndarray) -> VectorIndex:
        """Build the FAISS index for vectors row-aligned with chunks."""
        import faiss

        index = faiss.IndexFlatIP(manifest.dimension)
        if len(vectors):
            index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return cls(manifest, chunks, index, BM25Index.build([passage_text(c) for c in chunks]))

    def __len__(self) -> int:
        return len(self.chunks)

    def search(self, query_vectors: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """For each query vector, up to k (chunk position, cosine score), best first."""
        k = min(k, len(self.chunks))
        if k <= 0:
            return [[] for _ in range(len(query_vectors))]
        scores, ids = self._faiss.search(np.ascontiguousarray(query_vectors, dtype=np.float32), k)
        return [
            [(int(i), float(s)) for i, s in zip(row_ids, row_scores, strict=True) if i >= 0]
            for row_ids, row_scores in zip(ids, scores, strict=True)
        ]

    def save(self, index_dir: Path) -> None:
        """Write to a temporary folder beside index_dir, then swap it in: a crash leaves the old index."""
        import faiss

        index_dir = Path(index_dir)
        index_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{index_dir.name}.tmp-", dir=index_dir.parent))
        try:
            faiss.write_index(self._faiss, str(tmp / VECTORS))
            self.lexical.save(tmp / LEXICAL)
            with open(tmp / CHUNKS, "w", encoding="utf-8") as fh:
                for chunk in self.chunks:
                    fh.write(json.dumps(asdict(chunk), ensure_ascii=False) + "\n")
            # The manifest is written last: its presence marks a complete index.
            (tmp / MANIFEST).write_text(
                json.dumps(asdict(self.manifest), ensure_ascii=False, indent=2), encoding="utf-8"
            )
            old = None
            if index_dir.exists():
                old = index_dir.parent / f".{index_dir.name}.old-{os.getpid()}-{time.time_ns()}"
                os.rename(index_dir, old)
            os.rename(tmp, index_dir)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def load(cls, index_dir: Path, *, expected_model: str | None = None) -> VectorIndex:
        """Read an index, refusing one built with another format or embedding model."""
        import faiss

        index_dir = Path(index_dir)
        manifest = read_manifest(index_dir)
        if expected_model is not None and manifest.embedding_model != expected_model:
            raise IndexMismatchError(
                f"The index in {index_dir}/ was built with the embedding model {manifest.embedding_model!r}, "
                f"but {expected_model!r} is in use. Run `rag build --index {index_dir}` to rebuild it."
            )
        try:
            faiss_index = faiss.read_index(str(index_dir / VECTORS))
            with open(index_dir / CHUNKS, encoding="utf-8") as fh:
                chunks = [Chunk(**json.loads(line)) for line in fh if line.strip()]
            lexical = BM25Index.load(index_dir / LEXICAL)
        except (OSError, RuntimeError, ValueError, TypeError, KeyError) as exc:
            raise IndexCorruptError(
                f"The index in {index_dir}/ is damaged ({exc}). Run `rag build` to rebuild it."
            ) from exc
        if faiss_index.ntotal != len(chunks) or faiss_index.d != manifest.dimension:
            raise IndexCorruptError(
                f"The index in {index_dir}/ is inconsistent ({faiss_index.ntotal} vectors, {len(chunks)} chunks). "
                "Run `rag build` to rebuild it."
            )
        return cls(manifest, chunks, faiss_index, lexical)


def read_manifest(index_dir: Path) -> Manifest:
    """The manifest of an index; IndexNotBuiltError if there is none."""
    path = Path(index_dir) / MANIFEST
    if not path.is_file():
        raise IndexNotBuiltError(f"No index in {index_dir}/. Run `rag build` (or `make index`) first.")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(f"{path} is unreadable ({exc}). Run `rag build` to rebuild the index.") from exc
    if raw.get("format_version") != FORMAT_VERSION:
        raise IndexMismatchError(
            f"The index in {index_dir}/ has format version {raw.get('format_version')}, this 記事QA reads "
            f"version {FORMAT_VERSION}. Run `rag build` to rebuild it."
        )
    try:
        return Manifest(**raw)
    except TypeError as exc:
        raise IndexCorruptError(f"{path} is missing fields ({exc}). Run `rag build` to rebuild the index.") from exc


def seed_hashes(seeds_dir: Path) -> dict[str, str]:
    """sha256 of every seed file, keyed by its path relative to seeds_dir."""
    return {str(p.relative_to(seeds_dir)): file_sha256(p) for p in list_seed_files(Path(seeds_dir))}


def stale_reason(
    index_dir: Path, seeds_dir: Path, *, embedding_model: str, chunk_size: int, chunk_overlap: int
) -> str | None:
    """Why the index must be rebuilt (missing, other model, seeds changed), or None if it is current."""
    try:
        manifest = read_manifest(index_dir)
    except (IndexNotBuiltError, IndexMismatchError, IndexCorruptError) as exc:
        return str(exc)
    if manifest.embedding_model != embedding_model:
        return f"embedding model changed ({manifest.embedding_model} -> {embedding_model})"
    if (manifest.chunk_size, manifest.chunk_overlap) != (chunk_size, chunk_overlap):
        return "chunking parameters changed"
    current = seed_hashes(Path(seeds_dir))
    if current != manifest.sources:
        added = sorted(set(current) - set(manifest.sources))
        removed = sorted(set(manifest.sources) - set(current))
        changed = sorted(k for k in set(current) & set(manifest.sources) if current[k] != manifest.sources[k])
        return f"seeds changed (added {added}, removed {removed}, changed {changed})"
    return None


def build(
    seeds_dir: Path,
    index_dir: Path,
    *,
    embedder: Embedder,
    chunk_size: int,
    chunk_overlap: int,
    show_progress: bool = False,
) -> BuildReport:
    """Read seeds, chunk, embed and save a new index; the previous index stays until the new one is complete."""
    started = time.perf_counter()
    seeds_dir = Path(seeds_dir)
    if not seeds_dir.is_dir():
        raise SeedsError(f"The seeds folder {seeds_dir}/ does not exist. Put .txt or .md articles there.")
    hashes = seed_hashes(seeds_dir)
    docs, skipped = load_documents(seeds_dir)
    if not docs:
        why = "; ".join(f"{s.path}: {s.reason}" for s in skipped) or "no .txt or .md files"
        raise SeedsError(f"No usable article in {seeds_dir}/ ({why}). The existing index was left as it was.")
    index = build_from_documents(
        docs,
        Path(index_dir),
        embedder=embedder,
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        sources=hashes,
        skipped={s.path: s.reason for s in skipped},
        show_progress=show_progress,
    )
    return BuildReport(
        index_dir=str(index_dir),
        docs=len(docs),
        chunks=len(index),
        seconds=time.perf_counter() - started,
        skipped=skipped,
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
) -> VectorIndex:
    """Chunk, embed and atomically save already-loaded documents (seeds, or an evaluation corpus)."""
    chunks = chunk_documents(docs, chunk_size=chunk_size, chunk_overlap=chunk_overlap)
    vectors = embedder.embed_passages([passage_text(c) for c in chunks], show_progress=show_progress)
    manifest = Manifest(
        embedding_model=embedder.model_id,
        dimension=embedder.dimension,
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        separators=JAPANESE_SEPARATORS,
        # Skipped files are hashed too, so fixing one makes the index stale and it is read next time.
        sources=sources or {},
        docs=len(docs),
        chunks=len(chunks),
        skipped=skipped or {},
        created_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    index = VectorIndex.from_vectors(manifest, chunks, vectors)
    index.save(Path(index_dir))
    return index
