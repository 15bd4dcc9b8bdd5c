"""Retrieval on the seed QA set for several chunk sizes (real e5, real FAISS). Prints a table."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.config import Settings
from rag.evaluation import evaluate, load_jsonl
from rag.factories import load_embedder
from rag.ingest import build_index
from rag.retrieval import Retriever
from rag.vector_index import VectorIndex

SIZES = [(150, 30), (200, 40), (300, 60), (400, 80), (600, 100)]


def main() -> None:
    settings = Settings.from_env()
    embedder = load_embedder(settings)
    items = load_jsonl(Path(sys.argv[1] if len(sys.argv) > 1 else "eval/seed_qa.jsonl"))
    print(f"{'size':>5} {'overlap':>7} {'chunks':>6} {'R@1':>5} {'R@5':>5} {'R@10':>5} {'MRR':>5}")
    for size, overlap in SIZES:
        with tempfile.TemporaryDirectory() as tmp:
            report = build_index(settings=settings, index_dir=Path(tmp), embedder=embedder,
                                 chunk_size=size, chunk_overlap=overlap)
            retriever = Retriever(VectorIndex.load(Path(tmp)), embedder)

            def retrieve(item, retriever=retriever):
                return retriever.retrieve_in_conversation(item.question, [q for q, _ in item.history], k=10)

            scores = evaluate(items, retrieve=retrieve).retrieval
            print(f"{size:>5} {overlap:>7} {report.chunks:>6} {scores['recall@1']:.3f} {scores['recall@5']:.3f} "
                  f"{scores['recall@10']:.3f} {scores['mrr']:.3f}")


if __name__ == "__main__":
    main()
