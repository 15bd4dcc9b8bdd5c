"""llama.cpp runtime options compared on the same prompt tokens, in one process, in turn.

    python bench/speed.py --dump-prompts PROMPTS.json
    python bench/llama_options.py PROMPTS.json --runs 3 'n_ubatch=512' 'n_ubatch=256' 'flash_attn=1' ...

PROMPTS.json is what bench/speed.py hands its raw runs ({"model", "options", "prefix", "prompts"};
`bench/speed.py --dump-prompts FILE` writes it). Each argument is a set of overrides of "options";
each run times every variant on every prompt, variants alternating prompt by prompt so they see
the same machine load. Prints medians of prompt tokens/s, generation tokens/s and the raw time to
first token, and whether each variant's greedy answers match the first variant's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GEN_TOKENS = 24


def parse(spec: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for part in filter(None, spec.split(",")):
        key, _, value = part.partition("=")
        out[key] = value if key == "kv_cache_type" else (value in {"1", "true"} if key == "flash_attn" else int(value))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prompts", type=Path)
    parser.add_argument("variants", nargs="+", help="comma-separated overrides, e.g. n_ubatch=256,flash_attn=1")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the raw numbers as JSON (bench/cpu_flags.py)")
    args = parser.parse_args()

    import llama_cpp
    import numpy as np

    from rag.generation import loaded_cpu_variant, open_llama

    data = json.loads(args.prompts.read_text())
    prefix = data["prefix"]
    llms = []
    for spec in args.variants:
        llm = open_llama(Path(data["model"]), **{**data["options"], **parse(spec)})
        llm.reset()
        llm.eval(prefix)
        llms.append(llm)
    n_vocab = llms[0].n_vocab()
    vocab = llama_cpp.llama_model_get_vocab(llms[0]._model.model)
    stats = [{"prompt_tps": [], "gen_tps": [], "ttft": []} for _ in llms]
    texts: list[list[str]] = [[] for _ in llms]
    for run in range(args.runs):
        for tokens in data["prompts"]:
            for i, llm in enumerate(llms):
                t0 = time.perf_counter()
                llm.n_tokens = len(prefix)
                llm.eval(tokens[len(prefix) :])
                t1 = time.perf_counter()
                token = int(np.argmax(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))))
                t2 = time.perf_counter()
                answer, ended = [token], llama_cpp.llama_vocab_is_eog(vocab, token)
                for _ in range(GEN_TOKENS - 1):
                    llm.eval([token])
                    token = int(np.argmax(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))))
                    ended = ended or llama_cpp.llama_vocab_is_eog(vocab, token)
                    if not ended:
                        answer.append(token)
                t3 = time.perf_counter()
                stats[i]["prompt_tps"].append((len(tokens) - len(prefix)) / (t1 - t0))
                stats[i]["ttft"].append(t2 - t0)
                stats[i]["gen_tps"].append((GEN_TOKENS - 1) / (t3 - t2))
                if run == 0:
                    texts[i].append(llm.detokenize(answer).decode("utf-8", errors="replace"))
    if args.json:
        print(json.dumps([{**s, "texts": t} for s, t in zip(stats, texts, strict=True)]))
        return
    med = statistics.median
    print(f"CPU backend: {loaded_cpu_variant() or 'single build'}; base options {data['options']}")
    print(
        f"{len(data['prompts'])} prompts x {args.runs} runs, variants in turn; same answers = same {GEN_TOKENS} tokens"
    )
    print("| options | prompt tok/s | generation tok/s | raw TTFT p50 | same answers as first |")
    print("|---|---|---|---|---|")
    for spec, s, t in zip(args.variants, stats, texts, strict=True):
        same = sum(a == b for a, b in zip(t, texts[0], strict=True))
        print(
            f"| {spec or 'base'} | {med(s['prompt_tps']):.1f} | {med(s['gen_tps']):.1f} | {med(s['ttft']):.2f} s | "
            f"{same}/{len(t)} |"
        )
    for spec, t in zip(args.variants[1:], texts[1:], strict=True):
        for a, b in zip(texts[0], t, strict=True):
            if a != b:
                print(f"  {spec}: {b[:60]!r} (first: {a[:60]!r})")


if __name__ == "__main__":
    main()
