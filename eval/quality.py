"""Answer quality on the tuning and report sets, with every raw model output kept (run on demand).

    python eval/quality.py SET [SET ...] [--limit N] [--out eval/out/quality]

SET is one of:
  seed            eval/seed_qa.jsonl over seeds/ (our own questions: tuning data)
  jsquad-tune     JSQuAD valid, questions of the even-numbered articles, all 1,145 paragraphs indexed
  jsquad-report   the same for the odd-numbered articles (never looked at while tuning)
  refusal-tune    index the even-numbered articles of the tune half; ask their questions (answerable)
                  and the questions of the half's other articles whose answers are nowhere in it
  refusal-report  the same inside the report half (never looked at while tuning)

Writes OUT/SET.jsonl (one record per question: the model's raw text, the checked answer, the
passages, token log-probabilities, timings) and OUT/SET.json (the scores). `eval/rescore.py`
re-applies the answer checks to the raw texts without running the model again.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))

from rag import evaluation as ev
from rag.build import build_from_documents
from rag.config import Settings
from rag.factories import load_embedder, load_generator
from rag.ingest import build_index
from rag.pipeline import RagPipeline
from rag.retrieval import Retriever
from rag.vector_index import VectorIndex

JSQUAD = Path("../shared/jsquad/valid-v1.3.json")
SETS = ("seed", "jsquad-tune", "jsquad-report", "refusal-tune", "refusal-report")


class Recording:
    """Wraps a generator and keeps the raw text and token log-probabilities of the last answer."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.raw = ""
        self.logprobs: list[float] = []

    def count_prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        return self.inner.count_prompt_tokens(messages)  # type: ignore[attr-defined]

    def stream_chat(self, messages: list[dict[str, str]], *, max_tokens: int) -> Iterator[str]:
        self.raw = ""
        for piece in self.inner.stream_chat(messages, max_tokens=max_tokens):  # type: ignore[attr-defined]
            self.raw += piece
            yield piece
        self.logprobs = list(getattr(self.inner, "last_logprobs", []) or [])
        self.follow = ""

    @property
    def last_logprobs(self) -> list[float]:
        return list(getattr(self.inner, "last_logprobs", []) or [])

    def follow_up(self, text: str, *, max_tokens: int) -> Iterator[str]:
        for piece in self.inner.follow_up(text, max_tokens=max_tokens):  # type: ignore[attr-defined]
            self.follow += piece
            yield piece


def _corpus(name: str, settings: Settings, embedder: object, cache: Path) -> tuple[VectorIndex, list[ev.QAItem]]:
    if name == "seed":
        index_dir = cache / "seed"
        build_index(settings=settings, index_dir=index_dir, embedder=embedder, if_stale=True)
        return VectorIndex.load(index_dir, expected_model=embedder.model_id), ev.load_jsonl(Path("eval/seed_qa.jsonl"))
    split = name.split("-")[1]
    docs, items = ev.load_squad(JSQUAD, split=split)
    if name.startswith("refusal"):
        indexed, items = ev.refusal_set(JSQUAD, split=split)
        data = json.loads(JSQUAD.read_text(encoding="utf-8"))["data"]
        titles = {f"{data[a]['title']}#" for a in indexed}
        docs = [d for d in docs if any(d.doc_id.startswith(t) and d.doc_id[len(t) :].isdigit() for t in titles)]
    index_dir = cache / f"{name}-{settings.chunk_size}-{settings.chunk_overlap}"
    try:
        return VectorIndex.load(index_dir, expected_model=embedder.model_id), items
    except Exception:  # not built yet, or built by another version
        index = build_from_documents(
            docs, index_dir, embedder=embedder, chunk_size=settings.chunk_size, chunk_overlap=settings.chunk_overlap
        )
        return index, items


def _done_qids(path: Path) -> set[str]:
    """Questions already answered in a previous, interrupted run (complete lines only)."""
    done = set()
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                done.add(json.loads(line)["qid"])
            except (ValueError, KeyError):
                continue
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sets", nargs="+", choices=SETS)
    parser.add_argument("--limit", type=int, default=None, help="questions per set, spread evenly")
    parser.add_argument("--out", default="eval/out/quality")
    parser.add_argument("--resume", action="store_true", help="keep OUT/SET.jsonl and ask only the questions not in it")
    parser.add_argument("--exclude", metavar="JSONL", help="leave out the questions of an earlier run (a fresh sample)")
    parser.add_argument("--instruction", metavar="FILE", help="try another one-prompt instruction (tuning sets only)")
    args = parser.parse_args()
    if args.instruction:
        import rag.generation

        rag.generation.SYSTEM_PROMPT = Path(args.instruction).read_text(encoding="utf-8").strip()
    settings = Settings.from_env()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    embedder = load_embedder(settings)
    generator = Recording(load_generator(settings))
    for name in args.sets:
        index, items = _corpus(name, settings, embedder, Path("eval/out/.index"))
        if args.exclude:
            seen = _done_qids(Path(args.exclude))
            items = [item for item in items if item.qid not in seen]
        items = ev.spread(items, args.limit)
        pipe = RagPipeline(Retriever(index, embedder, mode=settings.retrieval_mode), generator, settings=settings)
        scored, started = [], time.perf_counter()
        # One line per question as soon as it is answered: a run cut short still leaves its records.
        path = out / f"{name}.jsonl"
        done = _done_qids(path) if args.resume else set()
        items = [item for item in items if item.qid not in done]
        sink = open(path, "a" if args.resume else "w", encoding="utf-8")
        for n, item in enumerate(items, start=1):
            answer = pipe.ask(item.question, history=item.history)
            rec = ev.score_answer(item, answer)
            scored.append(rec)
            record = (
                {
                    **asdict(rec),
                    "answers": item.answers,
                    "source": item.source,
                    "history": item.history,
                    "raw": generator.raw,
                    "follow_up": generator.follow,
                    "follow_up_tokens": len(generator.last_logprobs) if generator.follow else 0,
                    "logprobs": [round(x, 4) for x in generator.logprobs],
                    "passages": [
                        {"n": c.n, "source": c.source, "title": c.title, "text": c.text, "score": c.score,
                         "chunk_id": c.chunk_id}
                        for c in answer.passages
                    ],
                    "cited": [c.n for c in answer.citations],
                }
            )
            sink.write(json.dumps(record, ensure_ascii=False) + "\n")
            sink.flush()
            if n % 10 == 0 or n == len(items):
                acc = ev.answer_scores(scored)
                print(
                    f"{name} {n}/{len(items)}: acc {acc['accuracy']:.3f} refused(unans) "
                    f"{acc['refusal_rate_unanswerable']:.3f} false-ref {acc['false_refusal_rate']:.3f} "
                    f"ttft p50 {acc['ttft_p50']:.1f}s",
                    flush=True,
                )
        sink.close()
        scores = ev.answer_scores(scored)
        scores["minutes"] = (time.perf_counter() - started) / 60
        scores["ttft_median"] = statistics.median(r.ttft for r in scored) if scored else 0.0
        (out / f"{name}.json").write_text(json.dumps(scores, indent=2), encoding="utf-8")
        print(name, json.dumps(scores), flush=True)


if __name__ == "__main__":
    main()
