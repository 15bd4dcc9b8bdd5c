"""First word of two (or more) checkouts of this project on the same seed questions, runs alternating.

    python bench/ttft_checkouts.py CHECKOUT_A CHECKOUT_B [--runs 3] [--questions 12]

Each checkout answers with its own code and its own `index/` (build it there first with its own
`rag build`), in a fresh process per run, checkouts in turn so both see the same machine load.
Per question: time to the first piece of `RagPipeline.stream`, the prompt tokens llama.cpp
evaluated for it and how long that took (llama.cpp's own counters). The first question of each
run only warms up. Prints medians and the per-question ratio of each checkout to the first.
The same interpreter (this one, so the same llama.cpp build) runs every checkout.

Internal: `--child INDEX N` runs one checkout's questions (its folder first on sys.path) and prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

QA = Path(__file__).resolve().parent.parent / "eval" / "seed_qa.jsonl"


def questions(n: int) -> list[str]:
    """The first n+1 answerable, standalone seed questions (one for warm-up).

    Read as plain JSON, not with rag.evaluation: the child imports another checkout's `rag`.
    """
    rows = [json.loads(line) for line in QA.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["question"] for r in rows if not r.get("unanswerable") and not r.get("history")][: n + 1]


def child(index: str, n: int) -> None:
    import llama_cpp

    import rag

    pipe = rag.load_pipeline(index_dir=index)
    llm = next(v for v in vars(pipe.generator).values() if isinstance(v, llama_cpp.Llama))
    rows = []
    for q in questions(n):
        llama_cpp.llama_perf_context_reset(llm.ctx)
        started = time.perf_counter()
        first = None
        for piece in pipe.stream(q):
            if first is None and piece:
                first = time.perf_counter() - started
        perf = llama_cpp.llama_perf_context(llm.ctx)
        rows.append(
            {
                "ttft": first,
                "total": time.perf_counter() - started,
                "prompt_tokens": perf.n_p_eval,
                "prompt_s": perf.t_p_eval_ms / 1000,
            }
        )
    print(json.dumps(rows[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkouts", nargs="*", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--questions", type=int, default=12)
    parser.add_argument("--child", nargs=2, metavar=("INDEX", "N"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    if len(args.checkouts) < 2:
        parser.error("give at least two checkouts")
    runs: dict[Path, list[list[dict]]] = {c: [] for c in args.checkouts}
    for r in range(args.runs):
        for c in args.checkouts:
            env = {**os.environ, "PYTHONPATH": str(c.resolve())}
            cmd = [sys.executable, __file__, "--child", str(c / "index"), str(args.questions)]
            out = subprocess.run(cmd, cwd=c, env=env, capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"{c} failed:\n{out.stderr[-3000:]}")
            runs[c].append(json.loads(out.stdout.strip().splitlines()[-1]))
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            print(
                f"run {r + 1} {c}: TTFT p50 {statistics.median(x['ttft'] for x in runs[c][-1]):.2f} s (load {load})",
                flush=True,
            )

    def per_question(c: Path, key: str) -> list[float]:
        return [statistics.median(run[i][key] for run in runs[c]) for i in range(args.questions)]

    base = args.checkouts[0]
    for c in args.checkouts:
        ttft, tokens = per_question(c, "ttft"), per_question(c, "prompt_tokens")
        rate = statistics.median(
            run[i]["prompt_tokens"] / run[i]["prompt_s"] for run in runs[c] for i in range(args.questions)
        )
        line = (
            f"{c}: TTFT p50 {statistics.median(ttft):.2f} s, answer p50 {statistics.median(per_question(c, 'total')):.2f} s, "
            f"prompt tokens evaluated p50 {statistics.median(tokens):.0f}, {rate:.1f} tokens/s"
        )
        if c != base:
            ratio = statistics.median(a / b for a, b in zip(ttft, per_question(base, "ttft")))
            line += f"; TTFT / first checkout, median per question: {ratio:.2f}x"
        print(line)


if __name__ == "__main__":
    main()
