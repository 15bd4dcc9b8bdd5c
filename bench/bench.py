"""Benchmark (not a test): index build time, retrieval latency, time to first token, tokens/s, peak RSS.

    python bench/bench.py [--runs 3] [--llm-name qwen2.5-coder-1.5b] [--seeds seeds]

Prints medians of several runs; the machine is shared and noisy, so compare variants within one run.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.config import Settings
from rag.factories import load_embedder, load_generator, load_pipeline
from rag.ingest import build_index

QUESTIONS = [
    "ロシア軍がクルスク州で奪還を目指している要衝の町はどこですか?",
    "在日米軍の強化計画を中止すると、どれくらいの予算を削減できますか?",
    "ゼレンスキー氏の再選を願う国民の割合は何%ですか?",
]


def peak_rss_mb() -> float:
    """Peak resident set size of this process, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seeds", default="seeds")
    parser.add_argument("--llm-name", default=None)
    parser.add_argument("--top-k", type=int, default=None)
    args = parser.parse_args()
    settings = Settings.from_env().with_overrides(seeds_dir=args.seeds, llm_name=args.llm_name, top_k=args.top_k)

    t = time.perf_counter()
    embedder = load_embedder(settings)
    print(f"embedder load: {time.perf_counter() - t:.2f} s")
    with tempfile.TemporaryDirectory() as tmp:
        index_dir = Path(tmp) / "index"
        builds = []
        for _ in range(args.runs):
            report = build_index(settings=settings, index_dir=index_dir, embedder=embedder, full=True)
            builds.append(report.seconds)
        print(
            f"index build: median {statistics.median(builds):.2f} s over {args.runs} runs "
            f"({report.docs} docs, {report.chunks} chunks)"
        )

        t = time.perf_counter()
        generator = load_generator(settings)
        print(f"LLM load: {time.perf_counter() - t:.2f} s")
        pipe = load_pipeline(settings=settings, index_dir=index_dir, embedder=embedder, generator=generator)

        latencies = []
        for _ in range(args.runs):
            for q in QUESTIONS:
                t = time.perf_counter()
                pipe.retrieve(q)
                latencies.append((time.perf_counter() - t) * 1000)
        print(f"retrieval: median {statistics.median(latencies):.1f} ms/query over {len(latencies)} queries")

        ttft, tps, total, prompt, fresh = [], [], [], [], []
        for run in range(args.runs):
            for q in QUESTIONS:
                answer = pipe.ask(q)
                gen_seconds = answer.seconds_total - answer.seconds_to_first_token
                ttft.append(answer.seconds_to_first_token)
                total.append(answer.seconds_total)
                prompt.append(answer.prompt_tokens)
                fresh.append(answer.prompt_tokens - getattr(generator, "reused_prompt_tokens", 0))
                if gen_seconds > 0 and answer.completion_tokens > 1:
                    tps.append((answer.completion_tokens - 1) / gen_seconds)
                if run == 0:
                    print(f"  {q}\n    -> {answer.text[:80]!r} cites {[c.source for c in answer.citations]}")
        print(
            f"prompt tokens: median {statistics.median(prompt):.0f} "
            f"({statistics.median(fresh):.0f} evaluated, the rest reused from llama.cpp's cache)"
        )
        print(f"time to first token: median {statistics.median(ttft):.2f} s (min {min(ttft):.2f}, max {max(ttft):.2f})")
        print(f"generation: median {statistics.median(tps):.1f} tokens/s")
        print(f"answer total: median {statistics.median(total):.2f} s")
    print(f"peak RSS: {peak_rss_mb():.0f} MiB")


if __name__ == "__main__":
    main()
