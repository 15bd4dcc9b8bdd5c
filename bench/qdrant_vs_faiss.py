"""Retrieval with the vectors in Qdrant vs FAISS exact, on JSQuAD paragraphs (real e5). Prints a table.

    RAG_N_THREADS=1 python bench/qdrant_vs_faiss.py [--paragraphs N] [--json ../shared/jsquad/valid-v1.3.json]
    RAG_QDRANT_URL=http://localhost:6333 python bench/qdrant_vs_faiss.py   # against a server

The passages are embedded once; the same vectors go into a FAISS index and a Qdrant collection
(local mode in a temp folder unless RAG_QDRANT_URL is set), so any difference in recall@5 comes
from the store. The first N paragraphs (all of the file with --paragraphs 0) and their questions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag import evaluation as ev
from rag.build import build_from_documents
from rag.config import Settings
from rag.factories import load_embedder, load_store
from rag.retrieval import Retriever
from rag.vector_index import VectorIndex


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=str(Path(__file__).resolve().parents[2] / "shared/jsquad/valid-v1.3.json"))
    parser.add_argument("--paragraphs", type=int, default=200, help="first N paragraphs (0: all)")
    args = parser.parse_args()

    settings = Settings.from_env()
    docs, items = ev.load_squad(Path(args.json))
    if args.paragraphs:
        docs = docs[: args.paragraphs]
        kept = {d.source for d in docs}
        items = [i for i in items if i.source in kept]
    embedder = load_embedder(settings)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        faiss_index = build_from_documents(
            docs, Path(tmp) / "faiss", embedder=embedder, chunk_size=settings.chunk_size, chunk_overlap=settings.chunk_overlap
        )
        embed_s = time.perf_counter() - started
        store = load_store(settings.with_overrides(store="qdrant", index_dir=Path(tmp) / "qdrant"))
        started = time.perf_counter()
        built = VectorIndex.from_vectors(faiss_index.manifest, faiss_index.chunks, faiss_index.vectors(), store=store)
        built.save(Path(tmp) / "qdrant")
        upload_s = time.perf_counter() - started
        qdrant_index = VectorIndex.load(Path(tmp) / "qdrant", expected_model=embedder.model_id, store=store)
        print(
            f"{len(docs)} paragraphs, {len(faiss_index)} passages, {len(items)} questions; embedding {embed_s:.1f} s, "
            f"Qdrant version (BM25 + upload) {upload_s:.2f} s ({store.location})"
        )
        print(f"{'store':>7} {'mode':>7} {'R@1':>6} {'R@5':>6} {'R@10':>6} {'MRR':>6} {'dense ms p50':>12}")
        for mode in ("dense", "hybrid"):
            for name, index in (("faiss", faiss_index), ("qdrant", qdrant_index)):
                retriever = Retriever(index, embedder, mode=mode)
                ranked = [retriever.retrieve(i.question, k=10) for i in items]
                vectors = embedder.embed_queries([i.question for i in items[:50]])
                times = []
                for v in vectors:
                    t = time.perf_counter()
                    index.search(v[None, :], 30)
                    times.append((time.perf_counter() - t) * 1000)
                s = ev.retrieval_scores(ranked, items)
                print(
                    f"{name:>7} {mode:>7} {s['recall@1']:6.3f} {s['recall@5']:6.3f} {s['recall@10']:6.3f} "
                    f"{s['mrr']:6.3f} {statistics.median(times):12.2f}"
                )


if __name__ == "__main__":
    main()
