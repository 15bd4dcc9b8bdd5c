"""VectorIndex: one index version in memory (passages, their vectors in a store, BM25), written, published and loaded."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from rag.chunking import passage_text
from rag.errors import REBUILD_HINT, IndexCorruptError, IndexMismatchError, IndexNotBuiltError, damaged, short
from rag.lexical import BM25Index
from rag.manifest import MANIFEST, Manifest, read_manifest_file
from rag.stores import Rows, VectorSet, VectorStore
from rag.stores.faiss_store import VECTORS, FaissStore
from rag.types import Chunk
from rag.versions import (
    CHUNKS,
    LEXICAL,
    LOCK_TIMEOUT,
    VERSION_PREFIX,
    current_stamp,
    index_lock,
    publish,
    remove_leftovers,
    resolve,
)


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
        self.folder: Path | None = None  # the version folder it was read from
        self.stamp: str | None = None

    @classmethod
    def from_vectors(
        cls,
        manifest: Manifest,
        chunks: list[Chunk],
        vectors: Rows,
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
            return publish(index_dir, self, self.store)

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
        manifest = read_manifest_file(folder)
        if expected_model is not None:
            check_model(manifest, expected_model, folder)
        check_store(manifest, store, folder)
        vectors = store.open(folder, manifest)
        chunks = _read_chunks(folder / CHUNKS)
        lexical = _read_lexical(folder / LEXICAL)
        # Each part read fine on its own; a half-written or mixed-up version shows in the counts.
        where = folder / VECTORS if manifest.store == FaissStore.kind else f"the Qdrant collection {manifest.collection!r}"
        if vectors.dimension != manifest.dimension:
            raise damaged(where, f"holds vectors of dimension {vectors.dimension}, the manifest says {manifest.dimension}")
        if len(chunks) != manifest.chunks:
            raise damaged(folder / CHUNKS, f"holds {len(chunks)} passages, the manifest says {manifest.chunks}")
        if len(vectors) != len(chunks):
            raise damaged(where, f"holds {len(vectors)} vectors for {len(chunks)} passages")
        if lexical.n_docs != len(chunks):
            raise damaged(folder / LEXICAL, f"indexes {lexical.n_docs} passages, {CHUNKS} holds {len(chunks)}")
        index = cls(manifest, chunks, vectors, lexical, store=store)
        index.folder = folder
        return index

    def check_model(self, model_id: str) -> None:
        """IndexMismatchError unless this index was built with the embedding model `model_id`."""
        check_model(self.manifest, model_id, self.folder or self.source_dir or Path("."))


def check_model(manifest: Manifest, model_id: str, folder: Path) -> None:
    """IndexMismatchError when the version's vectors come from another embedding model than `model_id`."""
    if manifest.embedding_model == model_id:
        return
    raise IndexMismatchError(
        f"The index in {folder}/ was built with the embedding model {manifest.embedding_model!r} "
        f"({folder / MANIFEST}), but {model_id!r} is in use; its vectors cannot be compared with "
        f"the questions' vectors. {REBUILD_HINT}",
        path=str(folder / MANIFEST),
    )


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


def _read_chunks(path: Path) -> list[Chunk]:
    if not path.is_file():
        raise damaged(path, "is missing")
    chunks = []
    try:
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    chunks.append(Chunk(**json.loads(line)))
                except (ValueError, TypeError) as exc:  # not JSON, not an object, wrong fields
                    raise damaged(path, f"has a broken line {number} ({short(exc)})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise damaged(path, f"is unreadable ({short(exc)})") from exc
    return chunks


def _read_lexical(folder: Path) -> BM25Index:
    if not folder.is_dir():
        raise damaged(folder, "(the BM25 index) is missing")
    try:
        return BM25Index.load(folder)
    except FileNotFoundError as exc:
        raise damaged(Path(exc.filename or folder), "(part of the BM25 index) is missing") from exc
    except (OSError, ValueError, TypeError, KeyError, EOFError) as exc:
        raise damaged(folder, f"(the BM25 index) is truncated or damaged ({short(exc)})") from exc
