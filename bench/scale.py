"""Benchmark (not a test): retrieval over synthetic corpora of 100k and 1M passages.

    python bench/scale.py [--sizes 100000 1000000] [--queries 200] [--threads 1]

Each size runs in its own process (so RSS is that size's alone) and prints build seconds, RSS,
query p50/p95 of dense search, BM25 and the whole hybrid path (Retriever.retrieve, fusion included,
the query embedding excluded: what RagPipeline.retrieve does for a first question), exact-search p50 for comparison, and recall@10 of the index
rag.build builds at that size against exact search. A last process times the query embedding
(real e5, one question at a time), which does not depend on the corpus size.

How the corpus is made (embedding a million texts on 2 cores would take hours):
- texts: the 1,145 JSQuAD paragraphs, tokenized once with rag.lexical.tokenize; passage i is
  paragraph i mod 1145 with 15% of its tokens dropped, 10% replaced by tokens drawn from the
  whole corpus (so by corpus frequency) and two rare tokens of a 500k-word synthetic vocabulary
  added (the vocabulary of a real archive keeps growing). BM25 is built from these token lists, so
  "BM25 build" excludes tokenizing; the tokenizing rate on real paragraphs is printed to project it.
- vectors: real e5 vectors of the JSQuAD paragraphs (embedded once and cached); vector i is
  w·a + (1-w)·b + noise of two random paragraph vectors (w in [0.5, 1], noise σ=0.012 per
  dimension, about 0.24 in norm), normalized: spread over the region real passages occupy, with
  no exact duplicates. Queries are real e5 query vectors of JSQuAD questions.

Recall@10 is the share of the exact top 10 (brute force, faiss.knn) that the index returns.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
JSQUAD = REPO.parent / "shared" / "jsquad" / "valid-v1.3.json"
CACHE = Path(tempfile.gettempdir()) / "kijiqa-scale-cache"
K = 10


def load_jsquad(n_queries: int) -> tuple[list[tuple[str, str]], list[str]]:
    """(title, text) of every paragraph and n_queries questions spread over the set."""
    data = json.loads(JSQUAD.read_text(encoding="utf-8"))
    paragraphs, questions = [], []
    for article in data["data"]:
        for para in article["paragraphs"]:
            title, _, text = para["context"].partition(" [SEP] ")
            paragraphs.append((title, text))
            questions += [qa["question"] for qa in para["qas"]]
    step = max(1, len(questions) // n_queries)
    return paragraphs, questions[::step][:n_queries]


def real_vectors(paragraphs: list[tuple[str, str]], questions: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """e5 vectors of the paragraphs (as passages) and questions (as queries), cached in CACHE."""
    CACHE.mkdir(exist_ok=True)
    key = f"{len(paragraphs)}-{len(questions)}"
    pfile, qfile = CACHE / f"para-{key}.npy", CACHE / f"query-{key}.npy"
    if not (pfile.is_file() and qfile.is_file()):
        from rag.chunking import passage_text
        from rag.config import Settings
        from rag.factories import load_embedder
        from rag.types import Chunk

        embedder = load_embedder(Settings.from_env())
        texts = [passage_text(Chunk("c", "d", "s", t, x, 0)) for t, x in paragraphs]
        np.save(pfile, embedder.embed_passages(texts))
        np.save(qfile, embedder.embed_queries(questions))
    return np.load(pfile), np.load(qfile)


def synth_vectors(base: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n normalized vectors: noisy mixtures of two real passage vectors each (see the module doc)."""
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        a, b = base[rng.integers(0, len(base), m)], base[rng.integers(0, len(base), m)]
        w = rng.uniform(0.5, 1.0, (m, 1)).astype(np.float32)
        x = w * a + (1 - w) * b + rng.normal(0, 0.012, (m, base.shape[1])).astype(np.float32)
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def synth_tokens(base: list[list[str]], n: int, rng: np.random.Generator) -> list[list[str]]:
    """n token lists: noisy copies of the paragraphs' token lists (see the module doc)."""
    words = sorted({t for tokens in base for t in tokens})
    rare = [f"語{i}" for i in range(500_000)]
    vocab = np.array(words + rare, dtype=object)
    code = {w: i for i, w in enumerate(words)}
    base_ids = [np.array([code[t] for t in tokens], dtype=np.int64) for tokens in base]
    pool = np.concatenate(base_ids)  # drawing from it draws by corpus frequency
    out: list[list[str]] = []
    for start in range(0, n, 20_000):
        rows = np.arange(start, min(n, start + 20_000))
        parts = [base_ids[i % len(base)] for i in rows]
        flat = np.concatenate(parts)
        owner = np.repeat(np.arange(len(rows)), [len(p) for p in parts])
        flat = np.where(rng.random(len(flat)) < 0.10, pool[rng.integers(0, len(pool), len(flat))], flat)
        keep = rng.random(len(flat)) >= 0.15
        flat, owner = flat[keep], owner[keep]
        extra = len(words) + rng.integers(0, len(rare), (len(rows), 2))
        ends = np.cumsum(np.bincount(owner, minlength=len(rows)))
        for doc, (a, b) in enumerate(zip(np.concatenate([[0], ends[:-1]]), ends, strict=True)):
            out.append(vocab[np.concatenate([flat[a:b], extra[doc]])].tolist())
    return out


def rss_gb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 1e9


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux


class FixedEmbedder:
    """Returns the precomputed query vector of each question: the hybrid timing excludes embedding."""

    def __init__(self, vectors: dict[str, np.ndarray], model_id: str = "bench") -> None:
        self._vectors = vectors
        self.model_id = model_id
        self.dimension = next(iter(vectors.values())).shape[0]

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return np.stack([self._vectors[t] for t in texts])

    def embed_passages(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
        raise NotImplementedError


def ms(values: list[float], q: float) -> float:
    return float(np.percentile(values, q) * 1000)


def run_size(n: int, n_queries: int, save: bool) -> dict[str, object]:
    """Build a synthetic index of n passages and time queries on it."""
    import faiss

    from rag.lexical import BM25Index, tokenize
    from rag.manifest import FORMAT_VERSION, Manifest
    from rag.retrieval import CANDIDATES, Retriever
    from rag.stores.faiss_store import FaissVectors, make_faiss_index
    from rag.types import Chunk
    from rag.vector_index import VectorIndex

    rng = np.random.default_rng(0)
    paragraphs, questions = load_jsquad(n_queries)
    base_vectors, query_vectors = real_vectors(paragraphs, questions)
    started = time.perf_counter()
    base_tokens = [tokenize(f"{t}\n{x}") for t, x in paragraphs]
    tokenize_rate = len(paragraphs) / (time.perf_counter() - started)
    rss_start = rss_gb()

    tokens = synth_tokens(base_tokens, n, rng)
    # The text a reader sees: the noisy tokens joined (Japanese has no spaces), one string per passage.
    chunks = [
        Chunk(
            chunk_id=f"syn-{i}",
            doc_id=f"syn-doc-{i // 4}",
            source=f"synthetic/{i // 4000:04d}.txt",
            title=paragraphs[i % len(paragraphs)][0],
            text="".join(toks),
            position=i % 4,
        )
        for i, toks in enumerate(tokens)
    ]
    vectors = synth_vectors(base_vectors, n, rng)
    rss_data = rss_gb()

    started = time.perf_counter()
    import bm25s

    model = bm25s.BM25()
    model.index(tokens, show_progress=False)
    lexical = BM25Index(model)
    bm25_seconds = time.perf_counter() - started
    del tokens

    started = time.perf_counter()
    faiss_index, kind, nprobe = make_faiss_index(vectors, vectors.shape[1])
    faiss_seconds = time.perf_counter() - started
    manifest = Manifest(
        embedding_model="bench",
        dimension=vectors.shape[1],
        chunk_size=0,
        chunk_overlap=0,
        separators=[],
        sources={},
        docs=n // 4,
        chunks=n,
        format_version=FORMAT_VERSION,
        vector_index=kind,
        nprobe=nprobe,
    )
    index = VectorIndex(manifest, chunks, FaissVectors(faiss_index, kind=kind, nprobe=nprobe), lexical)
    retriever = Retriever(index, FixedEmbedder(dict(zip(questions, query_vectors, strict=True))), mode="hybrid")
    rss_built = rss_gb()

    _, exact_ids = faiss.knn(query_vectors, vectors, K, metric=faiss.METRIC_INNER_PRODUCT)
    found = [[i for i, _ in row] for row in index.search(query_vectors, K)]
    recall = float(np.mean([len(set(a) & set(b.tolist())) / K for a, b in zip(found, exact_ids, strict=True)]))

    started = time.perf_counter()
    retriever.complete_sentences([])  # one-off: the map from a passage to the next one of its article
    next_map_seconds = time.perf_counter() - started
    times: dict[str, list[float]] = {"dense": [], "exact": [], "bm25": [], "hybrid": []}
    for round_ in range(2):  # a first round of 20 warms caches (page faults, tokenizer); only the second counts
        for qi, question in enumerate(questions if round_ else questions[:20]):
            q = query_vectors[qi : qi + 1]
            steps = {
                "dense": lambda q=q: index.search(q, CANDIDATES),
                "exact": lambda q=q: faiss.knn(q, vectors, CANDIDATES, metric=faiss.METRIC_INNER_PRODUCT),
                "bm25": lambda question=question: index.lexical.search(question, CANDIDATES),
                # What RagPipeline.retrieve does for a first question (4 passages, sentences completed).
                "hybrid": lambda question=question: retriever.complete_sentences(
                    retriever.retrieve_in_conversation(question, [], k=4)
                ),
            }
            for name, step in steps.items():
                t0 = time.perf_counter()
                step()
                if round_:
                    times[name].append(time.perf_counter() - t0)

    result: dict[str, object] = {
        "n": n,
        "index": kind,
        "nprobe": nprobe,
        "faiss_build_s": faiss_seconds,
        "bm25_build_s": bm25_seconds,
        "tokenize_per_s": tokenize_rate,
        "next_map_s": next_map_seconds,
        "rss_start_gb": rss_start,
        "rss_data_gb": rss_data,
        "rss_built_gb": rss_built,
        "peak_rss_gb": peak_rss_gb(),
        "recall10": recall,
        **{f"{name}_p50_ms": ms(v, 50) for name, v in times.items()},
        **{f"{name}_p95_ms": ms(v, 95) for name, v in times.items()},
    }
    if save:
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            started = time.perf_counter()
            index.save(Path(tmp))
            result["save_s"] = time.perf_counter() - started
            del index, retriever, chunks, lexical, faiss_index
            started = time.perf_counter()
            loaded = VectorIndex.load(Path(tmp))
            result["load_s"] = time.perf_counter() - started
            result["load_same_results"] = [[i for i, _ in row] for row in loaded.search(query_vectors, K)] == found
    return result


def run_query_embedding(n_queries: int) -> dict[str, object]:
    """Seconds to embed one question with the real e5 (what the hybrid timing leaves out)."""
    from rag.config import Settings
    from rag.factories import load_embedder

    _, questions = load_jsquad(n_queries)
    embedder = load_embedder(Settings.from_env())
    embedder.embed_queries(["準備"])
    times = []
    for q in questions[:50]:
        t0 = time.perf_counter()
        embedder.embed_queries([q])
        times.append(time.perf_counter() - t0)
    return {"embed_query_p50_ms": ms(times, 50), "embed_query_p95_ms": ms(times, 95)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="FAISS/BLAS threads (the machine is shared)")
    parser.add_argument("--save", action="store_true", help="also time saving and loading the index")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child: one size (0 = query embedding)
    args = parser.parse_args()

    if args.one is not None:
        import faiss

        faiss.omp_set_num_threads(args.threads)
        out = run_query_embedding(args.queries) if args.one == 0 else run_size(args.one, args.queries, args.save)
        print(json.dumps(out))
        return

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(args.threads), "RAG_N_THREADS": str(args.threads)}
    print(f"load average before: {os.getloadavg()[0]:.1f}", flush=True)
    rows = []
    for n in [*args.sizes, 0]:
        cmd = [sys.executable, __file__, "--one", str(n), "--queries", str(args.queries), "--threads", str(args.threads)]
        proc = subprocess.run(cmd + (["--save"] if args.save else []), capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"size {n} failed:\n{proc.stderr[-3000:]}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        print(json.dumps(row), flush=True)
        rows.append(row)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    print()
    print("| passages | index | build s (FAISS + BM25) | RSS GB (built / peak) | dense p50/p95 ms | exact p50 ms | BM25 p50/p95 ms | hybrid p50/p95 ms | recall@10 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows[:-1]:
        print(
            f"| {r['n']:,} | {r['index']} nprobe {r['nprobe']} | {r['faiss_build_s']:.1f} + {r['bm25_build_s']:.1f} | "
            f"{r['rss_built_gb']:.2f} / {r['peak_rss_gb']:.2f} | {r['dense_p50_ms']:.2f} / {r['dense_p95_ms']:.2f} | "
            f"{r['exact_p50_ms']:.2f} | {r['bm25_p50_ms']:.1f} / {r['bm25_p95_ms']:.1f} | "
            f"{r['hybrid_p50_ms']:.1f} / {r['hybrid_p95_ms']:.1f} | {r['recall10']:.3f} |"
        )
    e = rows[-1]
    print(f"\nquery embedding (real e5, one question): p50 {e['embed_query_p50_ms']:.1f} ms, p95 {e['embed_query_p95_ms']:.1f} ms")
    print(f"tokenizing real paragraphs: {rows[0]['tokenize_per_s']:.0f} passages/s (not in the BM25 build time)")


if __name__ == "__main__":
    main()
