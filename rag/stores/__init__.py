"""Where an index version keeps its vectors: the VectorStore seam.

One module per backend kind, chosen once in `rag.factories.load_store` (RAG_STORE / `--store`):

- rag/stores/faiss_store.py: a FAISS file inside the version folder (the default, nothing to run);
- rag/stores/qdrant_store.py: one Qdrant collection per version, in a local folder or on a server.

Everything else stays in the version folder whatever the store: the manifest, the chunk store and
the BM25 index. So the lexical and the dense side always describe the same passages, row i being
chunk i on both, and a version is published (CURRENT replaced) only after its vectors are complete.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from rag.manifest import Manifest
    from rag.types import Chunk

STORES = ("faiss", "qdrant")

class Rows(Protocol):
    """A float32 matrix in memory (numpy) or on disk (rag.build.VectorSpool): len() rows, read by slices."""

    def __len__(self) -> int: ...

    def __getitem__(self, key: Any) -> np.ndarray: ...


class VectorSet(Protocol):
    """The vectors of one index version: row i is the vector of chunk i (inner product = cosine)."""

    dimension: int

    def __len__(self) -> int: ...

    def search(self, query_vectors: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """For each query vector, up to k (row, score), best first."""
        ...

    def vectors(self, rows: Sequence[int] | None = None) -> np.ndarray:
        """The stored vectors of `rows` (all rows when None), in that order."""
        ...

    def write(self, folder: Path, version: str, chunks: Sequence[Chunk] = ()) -> None:
        """Store the vectors (and, where the store keeps them, the chunks' metadata) of the version written in `folder`.

        Complete when this returns: the version is published right after.
        """
        ...

    def describe(self) -> dict[str, Any]:
        """The manifest fields that say where and how the vectors are kept (store, vector_index, nprobe, collection)."""
        ...


class VectorStore(Protocol):
    """A backend kind: makes, opens and drops the VectorSets of index versions."""

    kind: str  # recorded in each manifest ("faiss", "qdrant"): loading with another store fails loudly

    def prepare(self, vectors: Rows, dimension: int, *, approx_threshold: int | None = None) -> VectorSet:
        """A set holding `vectors` (row-aligned with the chunks), stored for good by its write().

        `vectors` may be rows on disk, readable until write() returns: read them slice by slice.
        """
        ...

    def open(self, folder: Path, manifest: Manifest) -> VectorSet:
        """The vectors of the version in `folder`; IndexCorruptError naming what is missing or damaged."""
        ...

    def drop(self, version: str) -> None:
        """Delete what the store keeps outside the version folder for `version` (nothing for FAISS)."""
        ...
