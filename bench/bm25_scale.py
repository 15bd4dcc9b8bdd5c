"""Benchmark (not a test): BM25 query time at 1M passages, built without bm25s's per-passage Python loops.

    python bench/bm25_scale.py [--sizes 100000 1000000] [--queries 100]

bench/scale.py builds BM25 with bm25s itself, which at 1M passages takes tens of minutes on this
shared machine. This script makes the same synthetic token lists as bench/scale.py (as flat id
arrays) and computes bm25s's index arrays (Lucene BM25, k1=1.5, b=0.75: the scores bm25s stores,
one CSC column per token, rows sorted) with numpy, then times rag.lexical.BM25Index.search (what
the hybrid path calls) and, for comparison, bm25s's own retrieve on the same arrays.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from scale import load_jsquad, ms  # noqa: E402


def build(n: int, rng: np.random.Generator) -> tuple[object, float]:
    """A bm25s.BM25 whose score arrays hold n synthetic passages; and the seconds it took."""
    import bm25s

    from rag.lexical import tokenize

    paragraphs, _ = load_jsquad(1)
    base = [tokenize(f"{t}\n{x}") for t, x in paragraphs]
    started = time.perf_counter()
    words = sorted({t for tokens in base for t in tokens})
    rare = 500_000
    code = {w: i for i, w in enumerate(words)}
    base_ids = [np.array([code[t] for t in tokens], dtype=np.int64) for tokens in base]
    pool = np.concatenate(base_ids)
    lens = np.array([len(b) for b in base_ids])
    toks, docs = [], []
    for start in range(0, n, 100_000):
        rows = np.arange(start, min(n, start + 100_000))
        flat = np.concatenate([base_ids[i] for i in rows % len(base)])
        owner = np.repeat(rows, lens[rows % len(base)])
        flat = np.where(rng.random(len(flat)) < 0.10, pool[rng.integers(0, len(pool), len(flat))], flat)
        keep = rng.random(len(flat)) >= 0.15
        extra = len(words) + rng.integers(0, rare, (len(rows), 2))
        toks += [flat[keep], extra.ravel()]
        docs += [owner[keep], np.repeat(rows, 2)]
    tok, doc = np.concatenate(toks), np.concatenate(docs)
    vocab_size = len(words) + rare
    doc_len = np.bincount(doc, minlength=n).astype(np.float64)
    keys, tf = np.unique(tok * n + doc, return_counts=True)  # sorted by token, then row: CSC order
    del tok, doc
    col, row = keys // n, (keys % n).astype(np.int32)
    df = np.bincount(col, minlength=vocab_size)
    idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
    k1, b = 1.5, 0.75
    data = (idf[col] * tf / (tf + k1 * (1 - b + b * doc_len[row] / doc_len.mean()))).astype(np.float32)
    indptr = np.concatenate([[0], np.cumsum(df)]).astype(np.int64)
    model = bm25s.BM25()
    model.scores = {"data": data, "indices": row, "indptr": indptr, "num_docs": n}
    model.vocab_dict = {w: i for i, w in enumerate([*words, *(f"語{i}" for i in range(rare))])}
    model.nonoccurrence_array = None
    return model, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()
    from rag.lexical import BM25Index, tokenize
    from rag.retrieval import CANDIDATES

    _, questions = load_jsquad(args.queries)
    for n in args.sizes:
        model, seconds = build(n, np.random.default_rng(0))
        index = BM25Index(model)
        tokens = {q: [t for t in tokenize(q) if t in model.vocab_dict] for q in questions}
        times: dict[str, list[float]] = {"search": [], "bm25s": []}
        same = 0
        for round_ in range(2):
            for q in questions if round_ else questions[:20]:
                t0 = time.perf_counter()
                ours = index.search(q, CANDIDATES)
                t1 = time.perf_counter()
                if tokens[q]:
                    ids, scores = model.retrieve([tokens[q]], k=CANDIDATES, show_progress=False)
                    theirs = {int(i) for i, s in zip(ids[0], scores[0], strict=True) if s > 0}
                else:
                    theirs = set()
                t2 = time.perf_counter()
                if round_:
                    times["search"].append(t1 - t0)
                    times["bm25s"].append(t2 - t1)
                    same += len({i for i, _ in ours} & theirs) / max(1, len(theirs))
        print(json.dumps({
            "n": n,
            "arrays_build_s": seconds,
            "nnz": len(model.scores["data"]),
            "bm25_arrays_gb": sum(model.scores[x].nbytes for x in ("data", "indices", "indptr")) / 1e9,
            "search_p50_ms": ms(times["search"], 50), "search_p95_ms": ms(times["search"], 95),
            "bm25s_retrieve_p50_ms": ms(times["bm25s"], 50), "bm25s_retrieve_p95_ms": ms(times["bm25s"], 95),
            "overlap_with_bm25s": same / len(times["search"]),
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        }), flush=True)


if __name__ == "__main__":
    main()
