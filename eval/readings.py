"""Read every retrieved passage alone and keep what the model says of each (run on demand, tuning sets only).

    python eval/readings.py SET [SET ...] [--limit N] [--out eval/out/readings] [--resume]
    python eval/readings.py --score OUT/SET.jsonl [...] [--k 4]   # the choice rules, offline, on kept readings

SET as in eval/quality.py. For each question the passages the pipeline would retrieve are read one
at a time with rag.generation.READER_PROMPT (all of them, no early stop, so every choice rule can
be scored afterwards without the model). Each record keeps the raw reading of each passage, its
prompt tokens (evaluated and cached) and seconds. --score applies rag.verdict.judge to every
reading and scores the choice rules: the first accepted reading in rank order (what an early stop
gives), and the best-scored accepted reading (agreement across readings, question words in the
sentence holding the phrase).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality

from rag import evaluation as ev
from rag.config import Settings
from rag.factories import load_embedder
from rag.generation import READER_PROMPT, READING_TOKENS, LlamaCppGenerator, build_messages, build_reading_messages
from rag.models import resolve_llm_path
from rag.pipeline import RagPipeline
from rag.question import MAX_HISTORY_TURNS, is_follow_up
from rag.retrieval import Retriever
from rag.types import Chunk, Hit
from rag.verdict import Candidate, choose, judge


def run(args: argparse.Namespace) -> None:
    settings = Settings.from_env()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    embedder = load_embedder(settings)
    path = resolve_llm_path(models_dir=settings.models_dir, llm_name=settings.llm_name, llm_path=settings.llm_path)
    generator = LlamaCppGenerator(path, n_ctx=settings.n_ctx, n_threads=settings.n_threads, instruction=READER_PROMPT)
    # The one-prompt reader (every passage in one prompt, SYSTEM_PROMPT) on its own model instance,
    # so that each keeps its instruction prefix cached.
    whole = LlamaCppGenerator(path, n_ctx=settings.n_ctx, n_threads=settings.n_threads) if args.with_prompt else None
    for name in args.sets:
        index, items = quality._corpus(name, settings, embedder, Path("eval/out/.index"))
        items = ev.spread(items, args.limit)
        pipe = RagPipeline(Retriever(index, embedder, mode=settings.retrieval_mode), generator, settings=settings)
        target = out / f"{name}.jsonl"
        done = quality._done_qids(target) if args.resume else set()
        with open(target, "a" if args.resume else "w", encoding="utf-8") as sink:
            for i, item in enumerate(it for it in items if it.qid not in done):
                history = item.history[-MAX_HISTORY_TURNS:] if is_follow_up(item.question) else []
                hits = pipe.retrieve(item.question, history=history)
                readings = []
                for n in range(1, len(hits) + 1):
                    messages = build_reading_messages(item.question, hits, n, history=history)
                    started = time.perf_counter()
                    raw = "".join(generator.stream_chat(messages, max_tokens=READING_TOKENS))
                    readings.append(
                        {
                            "n": n,
                            "raw": raw,
                            "prompt_tokens": generator.count_prompt_tokens(messages),
                            "cached_tokens": generator.reused_prompt_tokens,
                            "completion_tokens": len(generator.last_logprobs),
                            "seconds": time.perf_counter() - started,
                        }
                    )
                prompt = None
                if whole is not None:
                    messages = build_messages(
                        item.question, hits, history=history, context_chars=settings.context_chars
                    )
                    started = time.perf_counter()
                    raw, first = "", 0.0
                    for piece in whole.stream_chat(messages, max_tokens=settings.max_tokens):
                        first = first or time.perf_counter() - started
                        raw += piece
                    prompt = {
                        "raw": raw,
                        "logprobs": whole.last_logprobs,
                        "prompt_tokens": whole.count_prompt_tokens(messages),
                        "cached_tokens": whole.reused_prompt_tokens,
                        "first_token_seconds": first,
                        "seconds": time.perf_counter() - started,
                    }
                record = {
                    "qid": item.qid,
                    "question": item.question,
                    "answers": item.answers,
                    "source": item.source,
                    "unanswerable": item.unanswerable,
                    "history": history,
                    "hits": [{"chunk": vars(h.chunk), "score": h.score} for h in hits],
                    "readings": readings,
                    "prompt": prompt,
                }
                sink.write(json.dumps(record, ensure_ascii=False) + "\n")
                sink.flush()
                if (i + 1) % 10 == 0:
                    print(f"{name}: {i + 1} questions", flush=True)


# ---- choosing, offline ----


def candidates(record: dict) -> tuple[list[Hit], list[Candidate]]:
    hits = [Hit(chunk=Chunk(**h["chunk"]), score=h["score"]) for h in record["hits"]]
    return hits, [judge(record["question"], r["raw"], r["n"], hits) for r in record["readings"]]


def first_accepted(cands: list[Candidate]) -> Candidate | None:
    return next((c for c in cands if c.accepted), None)


def best_scored(cands: list[Candidate]) -> Candidate | None:
    accepted = [c for c in cands if c.accepted]
    if not accepted:
        return None
    votes = Counter(ev.normalize(c.phrase) for c in accepted)
    return max(accepted, key=lambda c: (votes[ev.normalize(c.phrase)], c.coverage, -c.n))


def most_covered(cands: list[Candidate]) -> Candidate | None:
    accepted = [c for c in cands if c.accepted]
    return max(accepted, key=lambda c: (c.coverage, -c.n)) if accepted else None


def covered_stop(bar: float):
    """Read in rank order; stop at the first accepted candidate whose sentence covers the question to `bar`."""

    def rule(cands: list[Candidate]) -> Candidate | None:
        for i, c in enumerate(cands):
            if c.accepted and c.coverage >= bar:
                rule.read = i + 1  # type: ignore[attr-defined]
                return c
        rule.read = len(cands)  # type: ignore[attr-defined]
        return most_covered(cands)

    return rule


RULES = {
    "first accepted": first_accepted,
    "best scored": best_scored,
    "most covered": most_covered,
    "covered >= 0.6": covered_stop(0.6),
    "covered >= 0.75": covered_stop(0.75),
    "covered >= 0.9": covered_stop(0.9),
    "rag.verdict.choose": choose,
}


def score(paths: list[str], k: int | None = None) -> None:
    for path in paths:
        records = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
        if k:  # as if only the first k passages had been retrieved and read
            records = [{**r, "hits": r["hits"][:k], "readings": r["readings"][:k]} for r in records]
        print(f"{path}: {len(records)} questions" + (f", first {k} passages" if k else ""))
        for rule_name, rule in RULES.items():
            right = refused_ans = refused_un = answerable = cite_ok = unanswerable = 0
            seconds = []
            for rec in records:
                hits, cands = candidates(rec)
                chosen = rule(cands)
                # What an early stop would have read: up to the chosen passage (all of them when none is accepted).
                if hasattr(rule, "read"):
                    upto = rule.read
                else:
                    upto = chosen.n if (chosen and rule is first_accepted) else len(rec["readings"])
                seconds.append(sum(r["seconds"] for r in rec["readings"][:upto]))
                if rec["unanswerable"]:
                    unanswerable += 1
                    refused_un += chosen is None
                    continue
                answerable += 1
                if chosen is None:
                    refused_ans += 1
                    continue
                text = ev.normalize(chosen.phrase)
                if any(ev.normalize(a) in text for a in rec["answers"]):
                    right += 1
                    chunk = hits[chosen.n - 1].chunk
                    cite_ok += chunk.source == rec["source"]
            print(
                f"  {rule_name:15s} right {right / max(answerable, 1):.3f}  false refusals "
                f"{refused_ans / max(answerable, 1):.3f}  unanswerable refused {refused_un / max(unanswerable, 1):.3f}"
                f"  citation ok {cite_ok / max(right, 1):.3f}  reading s p50 {statistics.median(seconds):.1f}"
            )
        union = sum(
            any(any(ev.normalize(a) in ev.normalize(c.phrase) for a in r["answers"]) for c in candidates(r)[1])
            for r in records
            if not r["unanswerable"]
        )
        print(f"  some reading right: {union}/{sum(not r['unanswerable'] for r in records)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sets", nargs="*", help=", ".join(quality.SETS))
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out", default="eval/out/readings")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument(
        "--with-prompt", action="store_true", help="also keep today's one-prompt answer of each question"
    )
    parser.add_argument("--score", nargs="+", metavar="JSONL")
    parser.add_argument("--k", type=int, help="with --score: score only the first K passages of each question")
    args = parser.parse_args()
    if args.score:
        score(args.score, args.k)
    else:
        run(args)


if __name__ == "__main__":
    main()
