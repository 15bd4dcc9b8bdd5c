"""Vectors in Qdrant (`--store qdrant`, RAG_STORE=qdrant) through qdrant-client.

Chosen by `rag.factories.load_store`; retrieval and generation do not know which store they use.

- Where: a Qdrant server (RAG_QDRANT_URL, e.g. http://localhost:6333, with RAG_QDRANT_API_KEY if it
  wants one), or qdrant-client's local mode in a folder (RAG_QDRANT_PATH, default index/qdrant/).
  Local mode is one process at a time (qdrant-client locks the folder): `rag serve` with uploads
  works, but `rag add` from a second shell while `rag serve` runs needs a server.
- One collection per index version, named `kijiqa-<version>`: a build writes the whole collection
  (upserts with wait=True) before the version folder is renamed and CURRENT replaced, so readers see
  the old or the new index, never a half-filled collection. Collections of removed versions (and of
  builds killed half-way, found by their `.tmp-v-…` folders) are dropped with their folders.
- Point id = the passage's row in chunks.jsonl, so hits map to chunks and BM25 rows exactly as FAISS
  rows do. Distance DOT on the normalized e5 vectors = FAISS's inner product; not COSINE, which
  would re-normalize them on the server and return slightly different vectors to the next
  incremental build. The payload holds the passage's metadata (chunk_id, source, title, date, url,
  position; the text stays in chunks.jsonl, once): a server user can inspect or filter by source.
- Search: exact (SearchParams(exact=True)) up to APPROX_THRESHOLD passages, as FAISS stays flat;
  above it the server's HNSW index with hnsw_ef=HNSW_EF. Local mode always searches exactly (it is a
  NumPy scan, meant for tests and small corpora; qdrant-client warns above 20k points).
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from rag.errors import VectorStoreError, damaged, short
from rag.stores import Rows
from rag.stores.faiss_store import APPROX_THRESHOLD

if TYPE_CHECKING:
    from rag.manifest import Manifest
    from rag.types import Chunk

COLLECTION_PREFIX = "kijiqa-"
UPSERT_BATCH = 512  # points per upsert request (a 384-float vector is ~1.5 kB, so ~1 MB per request)
RETRIEVE_BATCH = 1024  # points per retrieve request when an incremental build reads vectors back
HNSW_EF = 128  # beam width of an HNSW query above APPROX_THRESHOLD (Qdrant's default is 100)
TIMEOUT_SECONDS = 60
PAYLOAD_FIELDS = ("chunk_id", "doc_id", "source", "title", "position", "date", "url", "page")
EXACT, HNSW = "exact", "hnsw"

T = TypeVar("T")

# Local mode locks its folder for one client per process: every store of the same folder in this
# process (the serving pipeline, an upload's build, a reload) shares one client and one lock.
_LOCAL: dict[str, tuple[Any, threading.RLock]] = {}
_LOCAL_GUARD = threading.Lock()


def close_local_clients() -> None:
    """Close every local-mode client this process opened (tests; a server process never needs it)."""
    with _LOCAL_GUARD:
        for client, lock in _LOCAL.values():
            with lock:
                client.close()
        _LOCAL.clear()


class QdrantStore:
    """One Qdrant collection per index version, on a server (url) or in a local folder (path)."""

    kind = "qdrant"

    def __init__(
        self,
        *,
        url: str = "",
        path: Path | None = None,
        api_key: str = "",
        prefix: str = COLLECTION_PREFIX,
        approx_threshold: int | None = None,
    ) -> None:
        if not url and path is None:
            raise VectorStoreError("The Qdrant store needs a server URL (RAG_QDRANT_URL) or a local folder (RAG_QDRANT_PATH).")
        if url and not url.startswith(("http://", "https://")):
            raise VectorStoreError(
                f"RAG_QDRANT_URL={url!r} is not an http(s) URL. Give the server's REST address, e.g. http://localhost:6333."
            )
        self.url = url.rstrip("/")
        self.path = None if url else Path(path)  # type: ignore[arg-type]
        self.api_key = api_key
        self.prefix = prefix
        self.approx_threshold = APPROX_THRESHOLD if approx_threshold is None else approx_threshold
        self._client: Any = None
        self._lock: threading.RLock | None = None  # local mode only: its SQLite files are not for two threads at once

    @property
    def local(self) -> bool:
        """True in local mode (a folder), False with a server."""
        return self.path is not None

    @property
    def location(self) -> str:
        """Where the collections are, for messages."""
        return self.url or f"{self.path}/ (Qdrant local mode)"

    def __repr__(self) -> str:
        return f"QdrantStore({self.location!r})"

    def collection_name(self, version: str) -> str:
        """The collection that holds a version's vectors."""
        return f"{self.prefix}{version}"

    # ---- talking to Qdrant ----

    def _connect(self) -> Any:
        from qdrant_client import QdrantClient

        if self._client is not None:
            return self._client
        if self.path is None:
            try:
                self._client = QdrantClient(url=self.url, api_key=self.api_key or None, timeout=TIMEOUT_SECONDS)
            except Exception as exc:  # a bad URL or an incompatible server: say where and what to do
                raise self._unreachable(exc) from exc
            return self._client
        key = str(self.path.resolve())
        with _LOCAL_GUARD:
            if key not in _LOCAL:
                try:
                    client = QdrantClient(path=key, force_disable_check_same_thread=True)
                except RuntimeError as exc:  # "already accessed by another instance of Qdrant client"
                    raise VectorStoreError(
                        f"The Qdrant folder {self.path}/ is open in another process (local mode serves one "
                        f"process at a time: is `rag serve` running?). Stop that process, or run a Qdrant server "
                        f"and set RAG_QDRANT_URL (see README, 'Vectors in Qdrant'). ({short(exc)})"
                    ) from exc
                if not _LOCAL:
                    # Closed before the interpreter tears modules down: qdrant-client's own __del__
                    # at exit prints "ImportError: sys.meta_path is None" otherwise.
                    atexit.register(close_local_clients)
                _LOCAL[key] = (client, threading.RLock())
            self._client, self._lock = _LOCAL[key]
        return self._client

    def _unreachable(self, exc: BaseException) -> VectorStoreError:
        return VectorStoreError(
            f"Qdrant at {self.location} did not answer ({short(exc)}). Start it (e.g. "
            f"`docker run -p 6333:6333 qdrant/qdrant`) or fix RAG_QDRANT_URL; unset RAG_STORE to use FAISS files. "
            "(Qdrant に接続できません。サーバを起動するか RAG_QDRANT_URL を確認してください。)"
        )

    def call(self, fn: Callable[[Any], T]) -> T:
        """Run fn(client): one thread at a time in local mode; connection failures become VectorStoreError."""
        client = self._connect()
        try:
            if self._lock is None:
                return fn(client)
            with self._lock:
                return fn(client)
        except VectorStoreError:
            raise
        except Exception as exc:
            if _is_connection_error(exc):
                raise self._unreachable(exc) from exc
            raise

    # ---- the VectorStore protocol ----

    def prepare(self, vectors: Rows, dimension: int, *, approx_threshold: int | None = None) -> QdrantVectors:
        """Vectors not yet in Qdrant: write() uploads them as the version's collection."""
        threshold = self.approx_threshold if approx_threshold is None else approx_threshold
        if isinstance(vectors, np.ndarray):
            vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, dimension)
        return QdrantVectors(self, dimension, pending=vectors, exact=len(vectors) <= threshold)

    def open(self, folder: Path, manifest: Manifest) -> QdrantVectors:
        """The version's collection, checked: it exists, holds vectors of the manifest's size, one per passage."""
        name = manifest.collection
        where = f"the Qdrant collection {name!r} at {self.location}"
        if not name:
            raise damaged(Path(folder) / "manifest.json", "names no Qdrant collection")
        if not self.call(lambda c: c.collection_exists(name)):
            raise damaged(where, f"(named by {Path(folder) / 'manifest.json'}) is missing")
        info = self.call(lambda c: c.get_collection(name))
        params = info.config.params.vectors
        size = int(getattr(params, "size", 0) or 0)
        vectors = QdrantVectors(self, size, collection=name, exact=manifest.vector_index != HNSW)
        vectors.count = int(self.call(lambda c: c.count(name, exact=True).count))
        return vectors

    def drop(self, version: str) -> None:
        """Delete the version's collection if there is one."""
        name = self.collection_name(version)
        if self.call(lambda c: c.collection_exists(name)):
            self.call(lambda c: c.delete_collection(name))

    def collections(self) -> list[str]:
        """Names of the collections this store's prefix owns (for tests and clean-up checks)."""
        found = self.call(lambda c: c.get_collections()).collections
        return sorted(c.name for c in found if c.name.startswith(self.prefix))


class QdrantVectors:
    """The vectors of one version: in memory until write() uploads them, then in their collection."""

    def __init__(
        self,
        store: QdrantStore,
        dimension: int,
        *,
        pending: Rows | None = None,
        collection: str = "",
        exact: bool = True,
    ) -> None:
        self.store = store
        self.dimension = dimension
        self._pending = pending
        self.collection = collection
        self.exact = exact
        self.count = 0 if pending is None else len(pending)

    def __len__(self) -> int:
        return self.count

    def describe(self) -> dict[str, Any]:
        """Store, search kind and collection for the manifest."""
        return {"store": QdrantStore.kind, "vector_index": EXACT if self.exact else HNSW, "nprobe": 0, "collection": self.collection}

    def write(self, folder: Path, version: str, chunks: Sequence[Chunk] = ()) -> None:
        """Create the version's collection and upload every vector (and payload), waiting until Qdrant has them."""
        from qdrant_client import models

        if self._pending is None:
            raise VectorStoreError("These vectors are already in Qdrant; build a new index version to write them again.")
        name = self.store.collection_name(version)
        vectors = self._pending
        self.store.call(
            lambda c: c.create_collection(
                name, vectors_config=models.VectorParams(size=self.dimension, distance=models.Distance.DOT)
            )
        )
        for start in range(0, len(vectors), UPSERT_BATCH):
            stop = min(start + UPSERT_BATCH, len(vectors))
            batch = models.Batch(
                ids=list(range(start, stop)),
                vectors=vectors[start:stop].tolist(),
                payloads=[payload_of(c) for c in chunks[start:stop]] if chunks else None,
            )
            self.store.call(lambda c, b=batch: c.upsert(name, points=b, wait=True))
        self.collection = name
        self._pending = None

    def search(self, query_vectors: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """For each query vector, up to k (row, inner product), best first."""
        k = min(k, self.count)
        queries = np.asarray(query_vectors, dtype=np.float32)
        if k <= 0:
            return [[] for _ in range(len(queries))]
        if self._pending is not None:  # not uploaded yet: the same exact inner products, in memory
            scores = queries @ self._pending[0 : self.count].T
            order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            return [[(int(i), float(row[i])) for i in ids] for row, ids in zip(scores, order, strict=True)]
        from qdrant_client import models

        # Local mode ignores search parameters (it always scans) and warns about them: send none there.
        params = None if self.store.local else models.SearchParams(exact=self.exact, hnsw_ef=None if self.exact else HNSW_EF)
        requests = [
            models.QueryRequest(query=q.tolist(), limit=k, params=params, with_payload=False, with_vector=False)
            for q in queries
        ]
        name = self.collection
        responses = self.store.call(lambda c: c.query_batch_points(name, requests=requests))
        return [[(int(p.id), float(p.score)) for p in r.points] for r in responses]

    def vectors(self, rows: Sequence[int] | None = None) -> np.ndarray:
        """Stored vectors of `rows` (all when None), read back from the collection for an incremental build."""
        wanted = list(range(self.count)) if rows is None else [int(r) for r in rows]
        if self._pending is not None:
            return self._pending[0 : self.count][wanted]
        out = np.zeros((len(wanted), self.dimension), dtype=np.float32)
        name = self.collection
        for start in range(0, len(wanted), RETRIEVE_BATCH):
            ids = wanted[start : start + RETRIEVE_BATCH]
            points = self.store.call(lambda c, ids=ids: c.retrieve(name, ids=ids, with_vectors=True, with_payload=False))
            found = {int(p.id): p.vector for p in points}
            for offset, row in enumerate(ids):
                if row not in found:
                    raise damaged(f"the Qdrant collection {name!r} at {self.store.location}", f"has no point {row}")
                out[start + offset] = found[row]
        return out


def payload_of(chunk: Chunk) -> dict[str, Any]:
    """What Qdrant keeps beside a passage's vector: its metadata, not its text (that stays in chunks.jsonl)."""
    return {name: getattr(chunk, name) for name in PAYLOAD_FIELDS}


def _is_connection_error(exc: BaseException) -> bool:
    """True for a server that is down, unreachable or too slow (not for a request it refused)."""
    import httpx
    from qdrant_client.http.exceptions import ResponseHandlingException

    return isinstance(exc, ResponseHandlingException | httpx.TransportError | ConnectionError | TimeoutError)
