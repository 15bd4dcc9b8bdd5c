"""Re-apply the answer checks to raw model outputs saved by eval/quality.py (no model run).

    python eval/rescore.py OUT/SET.jsonl [...] [--show refused|wrong|all]

Prints, per file, the scores the current checks give and, with --show, the questions whose outcome
the checks decide. Use it on the tuning sets only: looking at report-set outputs is tuning on them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))

from rag import evaluation as ev
from rag.types import Chunk, Hit
from rag.verdict import make_answer, wants_phrase, with_phrase


def load_records(path: Path) -> list[dict]:
    """The records of one quality.py output file."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def hits_of(record: dict) -> list[Hit]:
    """The passages the model was given, as Hits (best first)."""
    hits = []
    for p in sorted(record["passages"], key=lambda p: p["n"]):
        doc_id = p["chunk_id"].rsplit("/", 1)[0]
        chunk = Chunk(
            chunk_id=p["chunk_id"], doc_id=doc_id, source=p["source"], title=p["title"], text=p["text"], position=0
        )
        hits.append(Hit(chunk=chunk, score=p["score"]))
    return hits


def item_of(record: dict) -> ev.QAItem:
    """The QA item a record answers."""
    return ev.QAItem(
        qid=record["qid"],
        question=record["question"],
        answers=record.get("answers", []),
        source=record.get("source"),
        unanswerable=record["unanswerable"],
        history=[tuple(t) for t in record.get("history", [])],
        answer_in_passage=False,
    )


def rescore(record: dict, form: str = "sentence"):
    """(QAItem, Answer, AnswerRecord) with the current checks applied to the saved raw text.

    form "short" / "phrase" as RAG_ANSWER_FORM; "phrase" uses the follow-up reply the record saved.
    """
    item = item_of(record)
    hits = hits_of(record)
    logprobs = record.get("logprobs") or None
    answer = make_answer(item.question, record["raw"], hits, logprobs=logprobs, short=form != "sentence")
    if form == "phrase" and record.get("follow_up") and wants_phrase(item.question, answer):
        answer = with_phrase(item.question, answer, record["follow_up"], hits)
    return item, answer, ev.score_answer(item, answer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--show", choices=["refused", "wrong", "all"])
    parser.add_argument(
        "--answerability", choices=["on", "off"], default="on", help="off: score without the fitted decision"
    )
    parser.add_argument("--form", choices=["sentence", "short", "phrase"], default="sentence", help="RAG_ANSWER_FORM")
    args = parser.parse_args()
    if args.answerability == "off":
        from rag import answerability

        answerability.THRESHOLD = answerability.THRESHOLD_NO_LOGPROBS = 0.0
    for path in args.files:
        records = load_records(path)
        scored = []
        for record in records:
            item, answer, rec = rescore(record, args.form)
            scored.append(rec)
            show = args.show == "all" or (
                args.show == "refused" and answer.refused and not item.unanswerable
            ) or (args.show == "wrong" and not rec.correct and not answer.refused)
            if show:
                print(f"- {item.qid} {item.question}\n  gold {item.answers}  raw {record['raw']!r}")
                print(f"  -> {answer.text!r} {answer.refusal_reason}")
        print(path, json.dumps({k: round(v, 3) for k, v in ev.answer_scores(scored).items()}))


if __name__ == "__main__":
    main()
