"""Choose among the one-prompt answer and the one-passage readings, offline (tuning sets only).

    python eval/readings.py SET --with-prompt --limit N --out DIR   # keep both readers' raw outputs
    python eval/combine.py DIR/SET.jsonl [...] [--show RULE]

For every question the record holds today's one-prompt answer (SYSTEM_PROMPT, every passage in
one prompt) and a reading of each passage alone (READER_PROMPT). Each rule below decides which
readings it would run and which candidate it shows; it is scored as `eval/quality.py` scores an
answer (rag.evaluation.score_answer), and its time is the sum of the recorded seconds of what it
ran. No model is run here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))

from rag import evaluation as ev
from rag.types import Answer, Chunk, Hit
from rag.verdict import Candidate, answer_first, answer_from_readings, choose, make_answer, prompt_candidate, settles

Rule = Callable[[dict], tuple[Answer, float]]


def _hits(rec: dict) -> list[Hit]:
    return [Hit(chunk=Chunk(**h["chunk"]), score=h["score"]) for h in rec["hits"]]


def _item(rec: dict) -> ev.QAItem:
    return ev.QAItem(
        qid=rec["qid"],
        question=rec["question"],
        answers=rec["answers"],
        source=rec["source"],
        unanswerable=rec["unanswerable"],
        history=[tuple(t) for t in rec.get("history", [])],
        answer_in_passage=False,
    )


class Q:
    """One question's recorded outputs, judged lazily (judging is the slow part)."""

    def __init__(self, rec: dict) -> None:
        self.rec = rec
        self.hits = _hits(rec)
        self.question = rec["question"]
        self._readings: list[Candidate] | None = None
        self._prompt: tuple[Answer, Candidate] | None = None

    @property
    def readings(self) -> list[Candidate]:
        if self._readings is None:
            from rag.verdict import judge

            self._readings = [judge(self.question, r["raw"], r["n"], self.hits) for r in self.rec["readings"]]
        return self._readings

    @property
    def prompt(self) -> tuple[Answer, Candidate]:
        if self._prompt is None:
            p = self.rec["prompt"]
            answer = make_answer(self.question, p["raw"], self.hits, logprobs=p.get("logprobs") or None, short=False)
            self._prompt = (answer, prompt_candidate(self.question, answer, self.hits))
        return self._prompt

    def secs(self, upto: int) -> float:
        return sum(r["seconds"] for r in self.rec["readings"][:upto])

    @property
    def prompt_secs(self) -> float:
        return self.rec["prompt"]["seconds"]

    def shown(self, chosen: Candidate | None) -> Answer:
        return answer_from_readings(self.question, self.hits, [chosen] if chosen else [], [""] if chosen else [])


def today(q: Q) -> tuple[Answer, float]:
    return q.prompt[0], q.prompt_secs


def today_answer_first(q: Q) -> tuple[Answer, float]:
    """What the default shows without the phrase follow-up (that needs the model): rag.verdict.answer_first."""
    return answer_first(q.question, q.prompt[0], q.hits), q.prompt_secs


def readings_choose(q: Q) -> tuple[Answer, float]:
    cands = q.readings
    upto = next((i + 1 for i, c in enumerate(cands) if settles(c)), len(cands))
    return q.shown(choose(cands)), q.secs(upto)


def _same(a: str, b: str) -> bool:
    a, b = ev.normalize(a), ev.normalize(b)
    return bool(a) and bool(b) and (a in b or b in a)


def prompt_then_readings(bar: float) -> Rule:
    """Today's answer when its sentence covers the question to `bar`; else read passages and choose among all."""

    def rule(q: Q) -> tuple[Answer, float]:
        cand = q.prompt[1]
        if cand.accepted and cand.coverage >= bar:
            return q.shown(cand), q.prompt_secs
        cands = q.readings
        upto = next((i + 1 for i, c in enumerate(cands) if settles(c)), len(cands))
        pool = [c for c in [*cands[:upto], cand] if c.accepted]
        chosen = max(pool, key=lambda c: (c.coverage, c is cand)) if pool else None
        return q.shown(chosen), q.prompt_secs + q.secs(upto)

    return rule


def readings_then_prompt(bar: float, *, prefer_prompt: bool = True) -> Rule:
    """Read passages until one settles at `bar`; if none does, ask the one prompt and choose among all."""

    def rule(q: Q) -> tuple[Answer, float]:
        cands = q.readings
        for i, c in enumerate(cands):
            if c.accepted and c.coverage >= bar:
                return q.shown(c), q.secs(i + 1)
        cand = q.prompt[1]
        accepted = [c for c in cands if c.accepted]
        if cand.accepted and (prefer_prompt or not accepted):
            return q.shown(cand), q.secs(len(cands)) + q.prompt_secs
        pool = accepted + ([cand] if cand.accepted else [])
        chosen = max(pool, key=lambda c: (c.coverage, -c.n)) if pool else None
        return q.shown(chosen), q.secs(len(cands)) + q.prompt_secs

    return rule


def agreement(q: Q) -> tuple[Answer, float]:
    """Today's answer and all readings: a phrase two readers agree on wins, else the best-covered one."""
    cand = q.prompt[1]
    cands = q.readings
    pool = [c for c in [cand, *cands] if c.accepted]
    if not pool:
        return q.shown(None), q.prompt_secs + q.secs(len(cands))
    support = {id(c): sum(_same(c.phrase, d.phrase) for d in pool if d is not c) for c in pool}
    chosen = max(pool, key=lambda c: (support[id(c)] > 0, c.coverage, c is cand))
    return q.shown(chosen), q.prompt_secs + q.secs(len(cands))


RULES: dict[str, Rule] = {
    "today (one prompt)": today,
    "today, answer first": today_answer_first,
    "one passage at a time": readings_choose,
    **{f"prompt if cov>={b}, else readings": prompt_then_readings(b) for b in (0.5, 0.75, 0.9, 1.01)},
    **{f"readings settle at {b}, else prompt": readings_then_prompt(b) for b in (0.75, 0.9, 1.01)},
    "readings settle at 0.75, else best of all": readings_then_prompt(0.75, prefer_prompt=False),
    "agreement across all": agreement,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+")
    parser.add_argument("--show", help="print the answers of this rule that are wrong or refused")
    args = parser.parse_args()
    for path in args.files:
        recs = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
        qs = [Q(r) for r in recs if r.get("prompt")]
        print(f"{path}: {len(qs)} questions")
        for name, rule in RULES.items():
            scored, secs = [], []
            for q in qs:
                answer, s = rule(q)
                scored.append(ev.score_answer(_item(q.rec), answer))
                secs.append(s)
                if args.show == name and not scored[-1].correct:
                    print(f"    {q.question} {q.rec['answers'][:2]} -> {answer.text}")
            s = ev.answer_scores(scored)
            print(
                f"  {name:42s} right {s['accuracy']:.3f}  false ref {s['false_refusal_rate']:.3f}  "
                f"unans ref {s['refusal_rate_unanswerable']:.3f}  cite {s['citation_accuracy']:.3f}  "
                f"s p50 {statistics.median(secs):.1f} mean {statistics.mean(secs):.1f}"
            )


if __name__ == "__main__":
    main()
