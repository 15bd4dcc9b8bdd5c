"""JSQuAD valid paragraphs saved as article files, indexed by the real `rag build`, then searched.

The ingestion issue's check on text nobody tuned the reading rules on: every paragraph is written
as a file a user could save ("title", blank line, paragraph), `rag build` (a subprocess, the
command a user runs) indexes the folder, and then
- every paragraph must be in the index whole (each of its characters in a passage of its file);
- recall@1/5/10 and MRR of hybrid retrieval over all answerable questions, a hit counting when it
  comes from the question's paragraph file (the same definition `rag eval` uses on JSQuAD).

Run: `python bench/jsquad_files.py [--jsquad ../shared/jsquad/valid-v1.3.json] [--work DIR] [--limit N]`.
Embedding ~1,100 paragraphs takes several minutes on 2 cores; --work keeps the index for reruns.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from rag import evaluation as ev
from rag.config import Settings
from rag.factories import load_embedder
from rag.retrieval import Retriever
from rag.vector_index import VectorIndex

REPO = Path(__file__).resolve().parent.parent


def uncovered_chars(paragraph: str, passages: list[str]) -> int:
    """Characters of the paragraph that no passage of its file holds (whitespace and width ignored).

    A passage is at most a chunk long, so a sentence longer than that spans two passages: what
    counts is that every character is in one, not that every sentence is.
    """
    text = ev.normalize(paragraph)
    covered = [False] * len(text)
    for passage in passages:
        piece = ev.normalize(passage)
        start = text.find(piece)
        while piece and start >= 0:
            covered[start : start + len(piece)] = [True] * len(piece)
            start = text.find(piece, start + 1)
    return covered.count(False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jsquad", type=Path, default=REPO.parent / "shared" / "jsquad" / "valid-v1.3.json")
    parser.add_argument(
        "--work", type=Path, default=None, help="folder for the files and the index (default: temporary)"
    )
    parser.add_argument("--limit", type=int, default=None, help="questions, spread evenly (default: all)")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="kijiqa-jsquad-files-"))
    seeds, index_dir = work / "seeds", work / "index"
    items = ev.write_squad_files(args.jsquad, seeds, per="paragraph")
    files = sorted(p.name for p in seeds.glob("*.txt"))
    print(f"{len(files)} paragraph files in {seeds}/, {len(items)} questions")

    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "rag.cli", "build", "--seeds", str(seeds), "--index", str(index_dir), "--quiet"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    print(f"rag build: exit {done.returncode} in {time.perf_counter() - t0:.0f} s")
    print("\n".join(done.stdout.strip().splitlines()[-4:]))
    if done.returncode != 0:
        print(done.stderr[-2000:])
        sys.exit(1)

    settings = Settings.from_env()
    embedder = load_embedder(settings)
    index = VectorIndex.load(index_dir, expected_model=embedder.model_id)
    passages: dict[str, list[str]] = defaultdict(list)
    for chunk in index.chunks:
        passages[chunk.source].append(chunk.text)
    not_indexed = [f for f in files if f not in passages]
    incomplete = []
    for f in files:
        body = (seeds / f).read_text(encoding="utf-8").split("\n\n", 1)[1]
        if f in passages and uncovered_chars(body, passages[f]):
            incomplete.append(f)
    print(
        f"files indexed: {len(files) - len(not_indexed)}/{len(files)}; paragraphs with a character in no passage: {len(incomplete)}"
    )
    for f in (not_indexed + incomplete)[:5]:
        print(f"  {f}")

    retriever = Retriever(index, embedder, mode=settings.retrieval_mode)
    asked = ev.spread([it for it in items if not it.unanswerable], args.limit)
    t0 = time.perf_counter()
    ranked = [retriever.retrieve_in_conversation(it.question, [], k=10) for it in asked]
    scores = ev.retrieval_scores(ranked, asked)
    print(f"retrieval ({settings.retrieval_mode}, {len(asked)} questions, {time.perf_counter() - t0:.0f} s):")
    print("  " + "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in scores.items()))


if __name__ == "__main__":
    main()
