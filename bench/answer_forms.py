"""First word and whole answer for each RAG_ANSWER_FORM on the seed questions, one model, forms in turn.

    python bench/answer_forms.py [--runs 3] [--questions 12]

The forms share one loaded model and index (`sentence`, the default, `short`, `phrase`); every
question is asked with each form in turn, so all see the same machine load. The first question
only warms up. Prints per form the medians over questions of the per-question medians over runs,
and the median per-question ratio of each form's whole answer to `sentence`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

QA = Path(__file__).resolve().parent.parent / "eval" / "seed_qa.jsonl"
FORMS = ("sentence", "short", "phrase")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--questions", type=int, default=12)
    args = parser.parse_args()
    from rag.factories import load_pipeline

    rows = [json.loads(line) for line in QA.read_text(encoding="utf-8").splitlines() if line.strip()]
    questions = [r["question"] for r in rows if not r.get("unanswerable") and not r.get("history")]
    questions = questions[: args.questions + 1]
    base = load_pipeline()
    pipes = {
        form: load_pipeline(
            settings=base.settings.with_overrides(answer_form=form),
            embedder=base.retriever.embedder,
            generator=base.generator,
        )
        for form in FORMS
    }
    first: dict[str, dict[str, list[float]]] = {f: {} for f in FORMS}
    whole: dict[str, dict[str, list[float]]] = {f: {} for f in FORMS}
    for run in range(args.runs):
        for i, question in enumerate(questions):
            for form in FORMS:
                started = time.perf_counter()
                stream = pipes[form].stream(question)
                seen = 0.0
                for _ in stream:
                    seen = seen or time.perf_counter() - started
                total = time.perf_counter() - started
                answer = stream.answer
                if i == 0 or answer is None:
                    continue  # warm-up
                first[form].setdefault(question, []).append(seen)
                whole[form].setdefault(question, []).append(total)
        print(f"run {run + 1} done", flush=True)

    def med(d: dict[str, list[float]]) -> float:
        return statistics.median(statistics.median(v) for v in d.values())

    base_whole = {q: statistics.median(v) for q, v in whole["sentence"].items()}
    for form in FORMS:
        ratio = statistics.median(statistics.median(v) / base_whole[q] for q, v in whole[form].items())
        print(
            f"{form:9s} first word p50 {med(first[form]):.2f} s  whole answer p50 {med(whole[form]):.2f} s  "
            f"whole / sentence per question {ratio:.2f}x"
        )


if __name__ == "__main__":
    main()
