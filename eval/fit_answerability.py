"""Fit the answerability decision on the tuning half and print its calibration curve (run on demand).

    python eval/fit_answerability.py OUT/refusal-tune.jsonl OUT/jsquad-tune.jsonl [OUT/seed.jsonl]
    python eval/fit_answerability.py --curve-only OUT/refusal-report.jsonl   # report sets: no fit

Reads the raw outputs eval/quality.py saved for the TUNING sets only, applies today's rule checks,
and for every answer that passes them measures the evidence (rag/answerability.py). The label is
"the answer is right" (an answerable question answered correctly); an answer to an unanswerable
question, or a wrong one, is a 0. Prints logistic weights for rag/answerability.py (with and without
token log-probabilities), the calibration curve, and the threshold that refuses most wrong answers
while keeping false refusals of right answers at or under 5%, and for each fit and the committed
weights the refusal curve over all the questions (unanswerable refused, answerable refused, right).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))

import numpy as np

from rag import answerability as aw

sys.path.insert(0, str(Path(__file__).parent))
from rescore import hits_of, load_records, rescore

MAX_FALSE_REFUSALS = 0.05


def rows(paths: list[Path]) -> tuple[np.ndarray, np.ndarray, dict[str, int], np.ndarray]:
    """Features and labels of the answers the rule checks let through; counts for the report; which
    of those answers are to unanswerable questions."""
    feats, labels, unanswerable = [], [], []
    counts = {"records": 0, "passed_rules": 0, "right": 0, "answerable": 0, "unanswerable": 0}
    counts |= {"rule_refused_answerable": 0, "rule_refused_unanswerable": 0}
    for path in paths:
        for record in load_records(path):
            counts["records"] += 1
            item, answer, rec = rescore(record)
            kind = "unanswerable" if item.unanswerable else "answerable"
            counts[kind] += 1
            if answer.refused:
                counts[f"rule_refused_{kind}"] += 1
                continue
            unanswerable.append(item.unanswerable)
            counts["passed_rules"] += 1
            hits = hits_of(record)
            cited = [hits[c.n - 1].chunk.text for c in answer.citations]
            ev = aw.evidence(item.question, cited, [h.chunk.text for h in hits], record.get("logprobs", []))
            feats.append(ev.features())
            labels.append(1 if rec.correct else 0)
            counts["right"] += rec.correct
    return np.array(feats, dtype=float), np.array(labels, dtype=int), counts, np.array(unanswerable, dtype=bool)


def curve(probs: np.ndarray, y: np.ndarray, unans: np.ndarray, counts: dict[str, int]) -> None:
    """What each threshold does to all the tuning questions: unanswerable refused, answerable refused, right."""
    print("threshold: unanswerable refused, answerable refused (false refusals), answerable right")
    for t in np.arange(0.0, 0.61, 0.05):
        low = probs < t
        refused_unans = counts["rule_refused_unanswerable"] + int((low & unans).sum())
        refused_ans = counts["rule_refused_answerable"] + int((low & ~unans).sum())
        right = int(((~low) & (y == 1)).sum())
        n_unans, n_ans = max(counts["unanswerable"], 1), max(counts["answerable"], 1)
        print(f"  {t:.2f}: {refused_unans / n_unans:.3f}  {refused_ans / n_ans:.3f}  {right / n_ans:.3f}")


def fit(x: np.ndarray, y: np.ndarray) -> tuple[list[float], float]:
    """Logistic regression weights and bias (standard, L2, balanced)."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1.0, max_iter=1000).fit(x, y)
    return [round(float(w), 4) for w in model.coef_[0]], round(float(model.intercept_[0]), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument(
        "--curve-only", action="store_true", help="no fit: the committed weights' refusal curve (for the report sets)"
    )
    args = parser.parse_args()
    # The answers the rule checks let through, not those the current fitted decision lets through.
    aw.THRESHOLD = aw.THRESHOLD_NO_LOGPROBS = 0.0
    x, y, counts, unans = rows(args.files)
    print("counts", counts)
    for name, cols in () if args.curve_only else (("WEIGHTS", [0, 1, 2, 3]), ("WEIGHTS_NO_LOGPROBS", [0, 1])):
        weights, bias = fit(x[:, cols], y)
        full = [0.0] * 4
        for c, w in zip(cols, weights, strict=True):
            full[c] = w
        probs = np.array([aw.probability(aw.Evidence(*row), weights=full, bias=bias) for row in x])
        print(f"\n{name} = {full}\n{name.replace('WEIGHTS', 'BIAS')} = {bias}")
        print("calibration (predicted -> share right, n):")
        for lo in np.arange(0.0, 1.0, 0.1):
            sel = (probs >= lo) & (probs < lo + 0.1 + (1e-9 if lo >= 0.9 else 0))
            if sel.any():
                print(f"  {lo:.1f}-{lo + 0.1:.1f}: {y[sel].mean():.2f} (n={int(sel.sum())})")
        best = None
        for t in np.arange(0.0, 1.0, 0.01):
            refused = probs < t
            false_ref = (refused & (y == 1)).sum() / max((y == 1).sum(), 1)
            caught = (refused & (y == 0)).sum() / max((y == 0).sum(), 1)
            if false_ref <= MAX_FALSE_REFUSALS:
                best = (round(float(t), 2), round(float(caught), 3), round(float(false_ref), 3))
        print(f"threshold (wrong answers caught, right answers refused): {best}")
        curve(probs, y, unans, counts)
    current = np.array([aw.probability(aw.Evidence(*row)) for row in x])
    print("\nthe committed WEIGHTS:")
    curve(current, y, unans, counts)


if __name__ == "__main__":
    main()
