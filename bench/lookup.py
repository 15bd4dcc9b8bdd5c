"""Prompt lookup decoding (issue 22): what a batch of drafted tokens costs, and what it gives.

    python bench/lookup.py [--questions 12] [--drafts 0,3,10] [--runs 2]

1. Batch cost: after a real seed prompt, batches of 1..11 tokens are evaluated the way
   LlamaCppGenerator verifies a draft (one logits row per token); median ms per batch. Drafting
   can only pay where a batch of n costs much less than n single steps.
2. Answers: the seed questions' real prompts (RagPipeline's retrieval and build_messages),
   answered with each draft length (`lookup_tokens`, RAG_LOOKUP_TOKENS) in turn, runs alternating;
   generation tokens/s (after the first token), whole-answer time, whether every answer is the
   same in every run (reproducible) and the same as without drafting.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from speed import seed_questions  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=12)
    parser.add_argument("--drafts", default="0,3,10", help="draft lengths to compare; 0 is no drafting")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    drafts = [int(d) for d in args.drafts.split(",")]

    from rag.config import Settings
    from rag.factories import load_pipeline
    from rag.generation import build_messages

    settings = Settings.from_env()
    pipe = load_pipeline(settings=settings)
    gen = pipe.generator
    print(f"CPU variant: {gen.cpu_variant or 'single build'}, threads {settings.n_threads}")
    questions = seed_questions(args.questions)
    prompts = [build_messages(q, pipe.retrieve(q), context_chars=settings.context_chars) for q in questions]

    llm = gen.llm
    tokens = gen.prompt_tokens(prompts[0])
    llm.n_tokens = len(gen.prefix_tokens)
    llm.eval(tokens[llm.n_tokens :])
    base = llm.n_tokens
    print("\nbatch of n tokens (one logits row each), median of 5:")
    single = None
    for n in (1, 2, 3, 4, 6, 8, 11):
        times = []
        for _ in range(5):
            llm.n_tokens = base
            t0 = time.perf_counter()
            gen._eval_rows(tokens[100 : 100 + n])
            times.append(time.perf_counter() - t0)
        ms = 1000 * statistics.median(times)
        single = single or ms
        print(f"  n={n:2d}: {ms:6.1f} ms  = {ms / single:4.2f} single steps")

    texts: dict[int, list[list[str]]] = {d: [] for d in drafts}
    stats: dict[int, list[tuple[float, float, int]]] = {d: [] for d in drafts}
    for _ in range(args.runs):
        for d in drafts:
            gen.lookup_tokens = d
            run = []
            for messages in prompts:
                t0 = time.perf_counter()
                first = None
                pieces = []
                for piece in gen.stream_chat(messages, max_tokens=settings.max_tokens):
                    first = first or time.perf_counter()
                    pieces.append(piece)
                end = time.perf_counter()
                run.append("".join(pieces))
                stats[d].append((end - (first or end), end - t0, len(gen.last_logprobs)))
            texts[d].append(run)
    print(f"\n{len(prompts)} seed questions × {args.runs} runs, draft lengths in turn:")
    print("| draft tokens | generation tok/s | whole answer p50 | reproducible | same as no draft |")
    print("|---|---|---|---|---|")
    ref = texts[drafts[0]][0]
    for d in drafts:
        gen_s = sum(s[0] for s in stats[d])
        n_tok = sum(max(s[2] - 1, 0) for s in stats[d])
        same_runs = all(run == texts[d][0] for run in texts[d])
        same_ref = sum(a == b for a, b in zip(texts[d][0], ref, strict=True))
        print(
            f"| {d} | {n_tok / gen_s:.1f} | {statistics.median(s[1] for s in stats[d]):.2f} s | "
            f"{'yes' if same_runs else 'NO'} | {same_ref}/{len(ref)} |"
        )
    for d in drafts[1:]:
        for i, (a, b) in enumerate(zip(ref, texts[d][0], strict=True)):
            if a != b:
                print(f"  q{i + 1} draft {d}: {b!r}\n      draft {drafts[0]}: {a!r}")


if __name__ == "__main__":
    main()
