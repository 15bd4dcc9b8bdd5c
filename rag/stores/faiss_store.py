"""The default vector store: a FAISS inner-product index in `vectors.faiss` inside each version folder."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.errors import damaged
from rag.manifest import DEFAULT_STORE, FLAT
from rag.stores import Rows

if TYPE_CHECKING:
    from rag.manifest import Manifest
    from rag.types import Chunk

VECTORS = "vectors.faiss"

# Exact search (IndexFlatIP) up to this many passages; above it an IVF index that scans only the
# NPROBE closest of its lists. Measured on the shared 2-core machine (bench/scale.py, bench/README.md
# "Retrieval at scale"): one exact query costs 0.35-0.45 ms per 1,000 passages when the cores are
# busy (43 ms at 100k, 350 ms at 1M), which with BM25 misses the 50 ms budget at 100k; IVF answers
# in 1-5 ms at recall@10 0.97-0.98. Below 50k exact search stays under ~20 ms even on a busy machine,
# so the seeds, the tests and JSQuAD (a few thousand passages) keep exact, unchanged results.
APPROX_THRESHOLD = 50_000
NPROBE = 32  # lists scanned per query: recall@10 against exact 0.98 at 100k, 0.975 at 1M (bench/scale.py)
IVF_TRAIN_PER_LIST = 40  # k-means training points per list (faiss warns below 39)
ADD_SLICE = 16_384  # rows added to FAISS at a time


def ivf_lists(n: int) -> int:
    """How many IVF lists for n vectors: about 4·sqrt(n), a power of two, with enough points to train each."""
    lists = 1 << round(np.log2(4 * np.sqrt(max(n, 1))))
    while lists > 1 and lists * IVF_TRAIN_PER_LIST > n:
        lists //= 2
    return lists


def ivf_lists_of(vector_index: str) -> int:
    """The list count in an index_factory string ("IVF1024,Flat" -> 1024), 0 for flat."""
    found = re.match(r"IVF(\d+),", vector_index)
    return int(found.group(1)) if found else 0


def _add_in_slices(index: Any, vectors: Rows) -> None:
    """Add the rows slice by slice, so spooled rows are never read into memory all at once."""
    for start in range(0, len(vectors), ADD_SLICE):
        index.add(np.ascontiguousarray(vectors[start : start + ADD_SLICE], dtype=np.float32))


def make_faiss_index(vectors: Rows, dimension: int, *, approx_threshold: int | None = None) -> tuple[Any, str, int]:
    """A FAISS inner-product index holding vectors: exact up to approx_threshold rows, IVF above.

    vectors may be a matrix or rows on disk (rag.build.VectorSpool), read in slices: then the FAISS
    index is the only copy of the vectors in memory.

    Returns (index, its index_factory string, nprobe). The IVF index keeps the full vectors (no
    compression) and a direct map, so vectors() reads them back exactly for the next incremental
    build, and the only difference from exact search is which lists a query scans. Training uses a
    fixed sample and seed: the same vectors give the same index, so answers stay reproducible.
    """
    import faiss

    threshold = APPROX_THRESHOLD if approx_threshold is None else approx_threshold
    if isinstance(vectors, np.ndarray):
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vectors)
    if n <= threshold:
        index = faiss.IndexFlatIP(dimension)
        _add_in_slices(index, vectors)
        return index, FLAT, 0
    lists = ivf_lists(n)
    kind = f"IVF{lists},Flat"
    index = faiss.index_factory(dimension, kind, faiss.METRIC_INNER_PRODUCT)
    sample = min(n, lists * IVF_TRAIN_PER_LIST)
    rows = np.sort(np.random.default_rng(0).choice(n, size=sample, replace=False)) if sample < n else slice(None)
    ivf = faiss.extract_index_ivf(index)
    ivf.cp.seed = 1234
    index.train(np.ascontiguousarray(vectors[rows], dtype=np.float32))
    _add_in_slices(index, vectors)
    ivf.make_direct_map()
    nprobe = min(NPROBE, lists)
    ivf.nprobe = nprobe
    return index, kind, nprobe


class FaissVectors:
    """A FAISS index in memory; written as `vectors.faiss` into a version folder."""

    def __init__(self, faiss_index: Any, *, kind: str = FLAT, nprobe: int = 0) -> None:
        self.index = faiss_index
        self.kind = kind
        self.nprobe = nprobe
        self.dimension = int(faiss_index.d)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(self, query_vectors: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """For each query vector, up to k (row, inner product), best first."""
        k = min(k, len(self))
        if k <= 0:
            return [[] for _ in range(len(query_vectors))]
        scores, ids = self.index.search(np.ascontiguousarray(query_vectors, dtype=np.float32), k)
        return [
            [(int(i), float(s)) for i, s in zip(row_ids, row_scores, strict=True) if i >= 0]
            for row_ids, row_scores in zip(ids, scores, strict=True)
        ]

    def vectors(self, rows: Sequence[int] | None = None) -> np.ndarray:
        """Stored vectors read back from FAISS (flat and IVF-Flat keep them exactly)."""
        n = len(self)
        if n == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if rows is None:
            return np.asarray(self.index.reconstruct_n(0, n), dtype=np.float32)
        rows = [int(r) for r in rows]
        out = np.empty((len(rows), self.dimension), dtype=np.float32)
        at = 0
        for start, stop in _runs(rows):  # a file's rows are contiguous: read them as a few runs, not all rows
            out[at : at + stop - start] = self.index.reconstruct_n(start, stop - start)
            at += stop - start
        return out

    def write(self, folder: Path, version: str, chunks: Sequence[Chunk] = ()) -> None:
        """Write vectors.faiss into the version folder."""
        import faiss

        faiss.write_index(self.index, str(Path(folder) / VECTORS))

    def describe(self) -> dict[str, Any]:
        """FAISS kind and nprobe for the manifest."""
        return {"store": FaissStore.kind, "vector_index": self.kind, "nprobe": self.nprobe, "collection": ""}


class FaissStore:
    """Vectors in the version folder: nothing to run, nothing outside index/ to clean up."""

    kind = DEFAULT_STORE

    def prepare(self, vectors: Rows, dimension: int, *, approx_threshold: int | None = None) -> FaissVectors:
        """Build the FAISS index (exact or IVF by size) for the vectors."""
        index, kind, nprobe = make_faiss_index(vectors, dimension, approx_threshold=approx_threshold)
        return FaissVectors(index, kind=kind, nprobe=nprobe)

    def open(self, folder: Path, manifest: Manifest) -> FaissVectors:
        """Read vectors.faiss and check it is the kind of index the manifest records."""
        path = Path(folder) / VECTORS
        index = _read_vectors(path)
        _check_kind(index, manifest, path)
        return FaissVectors(index, kind=manifest.vector_index, nprobe=manifest.nprobe)

    def drop(self, version: str) -> None:
        """Nothing: the FAISS file goes with the version folder."""

    def __repr__(self) -> str:
        return "FaissStore()"


def _read_vectors(path: Path) -> Any:
    import faiss

    if not path.is_file():
        raise damaged(path, "is missing")
    try:
        return faiss.read_index(str(path))
    except (RuntimeError, MemoryError, ValueError) as exc:  # faiss raises RuntimeError for a short or foreign file
        raise damaged(path, "is truncated or is not a FAISS index") from exc


def _check_kind(faiss_index: Any, manifest: Manifest, path: Path) -> None:
    """The FAISS file must be the kind the manifest records; an IVF index gets the recorded nprobe."""
    import faiss

    try:
        ivf = faiss.extract_index_ivf(faiss_index)
    except RuntimeError:  # not an IVF index
        ivf = None
    if (ivf is None) != (manifest.vector_index == FLAT) or (
        ivf is not None and ivf.nlist != ivf_lists_of(manifest.vector_index)
    ):
        raise damaged(path, f"is not the {manifest.vector_index!r} index its manifest records")
    if ivf is not None:
        ivf.nprobe = max(1, manifest.nprobe)


def _runs(rows: list[int]) -> list[tuple[int, int]]:
    """(start, stop) runs of consecutive row numbers, in the given order."""
    runs: list[tuple[int, int]] = []
    for r in rows:
        if runs and runs[-1][1] == r:
            runs[-1] = (runs[-1][0], r + 1)
        else:
            runs.append((r, r + 1))
    return runs
