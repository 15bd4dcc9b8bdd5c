"""Write the JSQuAD evaluation sets as article files + QA files (run on demand; output is not tracked).

    python eval/jsquad_sets.py [--jsquad ../shared/jsquad/valid-v1.3.json] [--out eval/out/sets]

For each split (tune: even-numbered articles; report: odd-numbered, never looked at while tuning):
  refusal-<split>/seeds/   the even-numbered articles of the split, one file per paragraph
  refusal-<split>/qa.jsonl their questions (answerable) + questions of the split's other articles
                           whose answers appear nowhere in those files (unanswerable)
Then: rag build --seeds DIR/seeds --index DIR/index && rag eval DIR/qa.jsonl --index DIR/index
The answer-accuracy halves need no files: rag eval JSQUAD.json --split report --limit 300.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.evaluation import SPLITS, refusal_set, write_jsonl, write_squad_files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jsquad", default="../shared/jsquad/valid-v1.3.json")
    parser.add_argument("--out", default="eval/out/sets")
    args = parser.parse_args()
    for split in SPLITS:
        folder = Path(args.out) / f"refusal-{split}"
        indexed, items = refusal_set(Path(args.jsquad), split=split)
        files = {it.qid: it.source for it in write_squad_files(Path(args.jsquad), folder / "seeds", articles=indexed)}
        items = [it if it.unanswerable else type(it)(**{**vars(it), "source": files[it.qid]}) for it in items]
        write_jsonl(items, folder / "qa.jsonl")
        n_un = sum(it.unanswerable for it in items)
        print(f"{folder}: {len(indexed)} articles indexed, {len(items) - n_un} answerable, {n_un} unanswerable")


if __name__ == "__main__":
    main()
