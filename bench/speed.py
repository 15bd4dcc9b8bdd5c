"""First word and tokens/s on the seed questions' real prompts: the pipeline and raw llama.cpp side by side.

    python bench/speed.py [--runs 3] [--questions 12] [--index index] [--compare PYTHON ...]

- pipeline: RagPipeline.stream(question) with the default settings; time to its first piece
  (retrieval included) and generation tokens/s after it.
- raw: the same prompt tokens fed to llama_cpp.Llama directly, opened with the same options
  (rag.generation.open_llama) and the instruction prefix cached the same way: evaluating the rest
  of the prompt (prompt tokens/s) plus the first greedy token is the raw time to first token;
  GEN more tokens give generation tokens/s. pipeline/raw is the pipeline's overhead.
- --compare PYTHON: the raw part also runs under another interpreter, i.e. another
  llama-cpp-python build (the AVX2 one: see bench/README.md), on the same tokens; runs alternate
  between the builds so both see the same machine load, and the ratios are printed.

Internal: `--raw FILE` runs only the raw part on the prompts in FILE and prints JSON (what the
runs for each build call, so this build is timed in a fresh process like the others).
The machine is shared: numbers are medians, compare builds within one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GEN_TOKENS = 32
TTFT_TARGET_S = 2.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def raw_bench(data: dict, runs: int) -> dict:
    """Time prompt evaluation and greedy generation on llama.cpp alone (no retrieval, no prompt building)."""
    import llama_cpp
    import numpy as np

    from rag.generation import open_llama

    llm = open_llama(Path(data["model"]), **data["options"])
    prefix = data["prefix"]
    llm.reset()
    llm.eval(prefix)  # once, like LlamaCppGenerator
    n_vocab = llm.n_vocab()
    vocab = llama_cpp.llama_model_get_vocab(llm._model.model)

    def greedy() -> int:
        return int(np.argmax(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))))

    out: dict = {"prompt_tps": [], "gen_tps": [], "ttft": [], "texts": []}
    for _ in range(runs):
        texts = []
        for tokens in data["prompts"]:
            assert tokens[: len(prefix)] == prefix
            t0 = time.perf_counter()
            llm.n_tokens = len(prefix)
            llm.eval(tokens[len(prefix) :])
            t1 = time.perf_counter()
            token = greedy()
            t2 = time.perf_counter()
            answer, ended = [token], llama_cpp.llama_vocab_is_eog(vocab, token)
            for _ in range(GEN_TOKENS - 1):  # a fixed count for the timing, past the end of the answer if need be
                llm.eval([token])
                token = greedy()
                ended = ended or llama_cpp.llama_vocab_is_eog(vocab, token)
                if not ended:
                    answer.append(token)
            t3 = time.perf_counter()
            out["prompt_tps"].append((len(tokens) - len(prefix)) / (t1 - t0))
            out["ttft"].append(t2 - t0)
            out["gen_tps"].append((GEN_TOKENS - 1) / (t3 - t2))
            texts.append(llm.detokenize(answer).decode("utf-8", errors="replace"))
        out["texts"] = texts
    out["system_info"] = llama_cpp.llama_print_system_info().decode()
    from rag.generation import loaded_cpu_variant

    out["variant"] = loaded_cpu_variant() or "single build"
    return out


def run_raw(python: str, prompts_file: Path) -> dict:
    proc = subprocess.run(
        [python, str(Path(__file__).resolve()), "--raw", str(prompts_file), "--runs", "1"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{python} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def seed_questions(n: int) -> list[str]:
    lines = (ROOT / "eval" / "seed_qa.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()][:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--questions", type=int, default=12, help="the first N questions of eval/seed_qa.jsonl")
    parser.add_argument("--index", default="index")
    parser.add_argument("--compare", action="append", default=[], metavar="PYTHON", help="another build's python")
    parser.add_argument("--dump-prompts", type=Path, help="write the prompts for bench/llama_options.py and stop")
    parser.add_argument("--raw", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw:
        print(json.dumps(raw_bench(json.loads(args.raw.read_text()), args.runs)))
        return

    from rag.config import Settings
    from rag.factories import load_pipeline
    from rag.generation import build_messages

    settings = Settings.from_env()
    pipe = load_pipeline(args.index, settings=settings)
    gen = pipe.generator
    questions = seed_questions(args.questions)
    prompts = [
        gen.prompt_tokens(build_messages(q, pipe.retrieve(q), context_chars=settings.context_chars))  # type: ignore[attr-defined]
        for q in questions
    ]
    prefix = gen.prefix_tokens  # type: ignore[attr-defined]
    options = {
        k: getattr(settings, k) for k in ("n_ctx", "n_threads", "n_batch", "n_ubatch", "flash_attn", "kv_cache_type")
    }
    options |= {"use_mmap": settings.llm_mmap, "repack": settings.llm_repack}  # the weights as the pipeline has them
    data = {"model": str(gen.model_path), "options": options, "prefix": prefix, "prompts": prompts}  # type: ignore[attr-defined]

    if args.dump_prompts:
        args.dump_prompts.write_text(json.dumps(data))
        return

    pipeline: dict[str, list[float]] = {"ttft": [], "gen_tps": [], "total": []}
    builds = {"this": sys.executable, **{f"compare{i}": p for i, p in enumerate(args.compare, 1)}}
    raw: dict[str, dict] = {name: {"prompt_tps": [], "gen_tps": [], "ttft": []} for name in builds}
    answers: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        prompts_file = Path(tmp) / "prompts.json"
        prompts_file.write_text(json.dumps(data))
        for _ in range(args.runs):  # pipeline, then each build's raw run, in turn: all see the same load
            answers = []
            for q in questions:
                stream = pipe.stream(q)
                for _piece in stream:
                    pass
                a = stream.answer
                assert a is not None
                answers.append(a.raw_text)
                pipeline["ttft"].append(a.seconds_to_first_token)
                pipeline["total"].append(a.seconds_total)
                if a.completion_tokens > 1 and a.seconds_total > a.seconds_to_first_token:
                    pipeline["gen_tps"].append((a.completion_tokens - 1) / (a.seconds_total - a.seconds_to_first_token))
            for name, python in builds.items():
                result = run_raw(python, prompts_file)
                for key in ("prompt_tps", "gen_tps", "ttft"):
                    raw[name][key] += result[key]
                raw[name]["variant"] = result["variant"]
                raw[name]["texts"] = result["texts"]
                raw[name]["system_info"] = result["system_info"]

    evaluated = [len(p) - len(prefix) for p in prompts]
    med = statistics.median
    print(f"{len(questions)} seed questions x {args.runs} runs; options {options}")
    print(
        f"prompt tokens: {med(len(p) for p in prompts):.0f} p50 in all, of which {len(prefix)} cached instruction; "
        f"evaluated per question p50 {med(evaluated):.0f}, min {min(evaluated)}, max {max(evaluated)}"
    )
    same = sum(r.startswith(a[: len(r)]) or a.startswith(r) for a, r in zip(answers, raw["this"]["texts"], strict=True))
    print(f"raw llama.cpp wrote the pipeline's answer (same start) for {same}/{len(answers)} questions")
    for name in builds:
        if name != "this":
            agree = sum(a == b for a, b in zip(raw["this"]["texts"], raw[name]["texts"], strict=True))
            print(
                f"{name} ({builds[name]}) wrote the same {GEN_TOKENS} tokens as this build for {agree}/{len(answers)}"
            )
    print()
    print("| build | what | prompt tok/s | generation tok/s | TTFT p50 | TTFT p95 |")
    print("|---|---|---|---|---|---|")
    this = raw["this"]
    for name, r in raw.items():
        label = f"{name}: {r['variant']}"
        print(
            f"| {label} | raw llama.cpp | {med(r['prompt_tps']):.1f} | {med(r['gen_tps']):.1f} | "
            f"{med(r['ttft']):.2f} s | {percentile(r['ttft'], 0.95):.2f} s |"
        )
    print(
        f"| this | pipeline (RagPipeline.stream) | – | {med(pipeline['gen_tps']):.1f} | "
        f"{med(pipeline['ttft']):.2f} s | {percentile(pipeline['ttft'], 0.95):.2f} s |"
    )
    print()
    print(
        f"pipeline/raw TTFT p50: {med(pipeline['ttft']) / med(this['ttft']):.2f}x; "
        f"answer total p50 {med(pipeline['total']):.2f} s"
    )
    for name, r in raw.items():
        if name != "this":
            print(
                f"this/{name}: prompt tok/s {med(this['prompt_tps']) / med(r['prompt_tps']):.2f}x, "
                f"generation tok/s {med(this['gen_tps']) / med(r['gen_tps']):.2f}x, "
                f"raw TTFT {med(r['ttft']) / med(this['ttft']):.2f}x faster"
            )
    overhead = med(pipeline["ttft"]) - med(this["ttft"])
    budget = (TTFT_TARGET_S - overhead) * med(this["prompt_tps"])
    print(
        f"TTFT {TTFT_TARGET_S:.0f} s p50 at {med(this['prompt_tps']):.0f} prompt tok/s and {overhead:.2f} s outside "
        f"llama.cpp: at most ~{max(budget, 0):.0f} evaluated tokens per question (p50 today {med(evaluated):.0f})"
    )
    print(f"loaded: {this['system_info']}")


if __name__ == "__main__":
    main()
