"""Settings with defaults; only the edges (cli.py, app.py) read the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from rag.errors import RagError

DEFAULT_LLM = "qwen2.5-coder-1.5b"


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kiji-qa"


@dataclass(frozen=True)
class Settings:
    """Everything a pipeline needs to know; pass overrides as keyword arguments."""

    index_dir: Path = Path("index")
    seeds_dir: Path = Path("seeds")
    models_dir: Path = Path("models")
    llm_name: str = DEFAULT_LLM  # a bundled GGUF (see rag.models.LLMS); ignored if llm_path is set
    llm_path: Path | None = None  # any GGUF file the user has
    # An OpenAI-compatible server (llama.cpp's server, vLLM, Ollama) instead of the embedded model:
    # its base URL (…/v1), the model name it serves ("": its first) and an API key if it wants one.
    llm_url: str = ""
    llm_model: str = ""
    llm_api_key: str = field(default="", repr=False)  # kept out of printed settings
    embed_model_path: Path | None = None  # a sentence-transformers folder; default: converted e5
    # "onnx": ONNX Runtime on the fp32 file `rag models` exported, no torch on the query path, the same
    # vectors as sentence-transformers (an index built by either reads with the other); a folder
    # without an export uses torch. "torch": sentence-transformers, the reference.
    embed_runtime: str = "onnx"
    # ONNX int8 (where it agrees with fp32): faster builds; its vectors differ slightly, so an index
    # keeps "+int8" in its model id and is not mixed with fp32 ones (rebuild when switching).
    embed_int8: bool = False
    top_k: int = 4
    retrieval_mode: str = "hybrid"  # "hybrid" (dense + BM25, fused), "dense" or "lexical"
    # Measured on eval/seed_qa.jsonl (bench/tune_chunks.py): 200/40 gave the best recall@5 and MRR,
    # and short passages keep the prompt (and the wait for the first word) small.
    chunk_size: int = 200
    chunk_overlap: int = 40
    # 0: the model reads the 2 sentences of each passage closest to the question (most accurate);
    # N: the closest sentences of all passages up to N characters (faster). See rag.generation.
    context_chars: int = 0
    # "passages": each passage is read alone for the answer phrase (rag.generation.READER_PROMPT), the
    # best-ranked one that passes the checks answers; "all": one prompt with every passage.
    reader: str = "all"
    # What the person reads first (reader "all"): "sentence": the model's checked sentences;
    # "short": the answer phrase and its passage first (「スジャ[1]」, rag.verdict.answer_first);
    # "phrase": that, and the model is asked once more for the phrase when it wrote a clause.
    # "sentence" stays the default: on held-out JSQuAD "short" was 1.3 points less often right and
    # "phrase" 4.0 (bench/README.md, "The answer first").
    answer_form: str = "sentence"
    # The LLM's context in tokens: instruction, passages, question, earlier turns and the answer. A
    # question with its passages takes ~300–700 tokens and an answer at most max_tokens, so 2048
    # leaves room for the two earlier turns a follow-up carries; 4096 gave the same answers (the
    # same tokens and log-probabilities on 40 JSQuAD questions) with ~95 MiB more at a cold `rag ask`'s
    # peak: llama.cpp clears the attention cache and sizes its compute buffer for the whole context
    # (bench/README.md, "A question from a cold start").
    n_ctx: int = 2048
    max_tokens: int = 384
    n_threads: int = _cpu_count()
    # llama.cpp feeding (bench/README.md, "llama.cpp build and options"): prompt tokens per
    # llama_eval call / per compute batch, flash attention, attention-cache type ("f16", "q8_0").
    n_batch: int = 512
    n_ubatch: int = 512
    flash_attn: bool = False
    kv_cache_type: str = "f16"
    temperature: float = 0.0  # greedy: the same question gives the same answer
    # Prompt lookup decoding: this many tokens copied from the passages are drafted and checked in one
    # batch. 0 (off) by default: on 2 cores a batch of n tokens costs about n single steps, so 3
    # gave whole answers only 5% sooner and changed 2 of 12 seed answers, one of them to a wrong one
    # (bench/README.md, "Prompt lookup decoding"); it may pay on more cores.
    lookup_tokens: int = 0
    # True: the GGUF is mapped (used in place without repacking); with llm_repack the pages llama.cpp has copied out of it (it repacks the weights
    # for the CPU's kernels) are released while it loads, so the file does not stay resident beside
    # the copy (rag.generation.release_mapped_pages; Linux). False: the file is read into memory,
    # ~1 s slower and ~0.1 GB more with the default model. The same logits either way.
    llm_mmap: bool = True
    # False: the weights are used as the file holds them (llama.cpp's use_extra_bufts off): no copy at
    # load, prompts ~1.4x faster and generation ~0.75x on AVX-512 (first word ~0.72x); slightly other
    # logits. True: llama.cpp repacks them for its AVX2/AVX-512 kernels. bench/README.md, "Repacking".
    llm_repack: bool = False
    # Kept between processes: the evaluated instruction prefix (rag.generation), so a cold start
    # does not evaluate it again. Default: $XDG_CACHE_HOME/kiji-qa (~/.cache/kiji-qa).
    cache_dir: Path = field(default_factory=_default_cache_dir)
    # The model answers one question at a time; this many more may wait their turn (the page and the
    # HTTP API share the queue). Beyond it a question is refused with BusyError (HTTP 503): 20 users
    # asking at once all get their answer, a pile-up of hundreds does not grow without bound.
    max_waiting: int = 24
    # Where the vectors live (rag/stores): "faiss" (files in index/, the default) or "qdrant": a server
    # at qdrant_url, else qdrant-client's local mode in qdrant_path (default: index_dir/qdrant).
    store: str = "faiss"
    qdrant_url: str = ""
    qdrant_path: Path | None = None
    qdrant_api_key: str = field(default="", repr=False)
    # `rag build --ray [ADDRESS]` (RAG_RAY_ADDRESS): new and changed files are read, chunked and
    # embedded on Ray (rag/ray_build.py). "auto" joins the running cluster, "local" starts an
    # instance on this machine, "" (default) builds in this process. ray_workers embedding actors
    # (each loads the embedder once) with ray_cpus CPUs each.
    ray_address: str = ""
    ray_workers: int = 2
    ray_cpus: float = 1.0
    # `rag serve`'s HTTP API asks for this bearer token when set (RAG_API_KEY); kept out of repr().
    api_key: str = field(default="", repr=False)

    def with_overrides(self, **overrides: object) -> Settings:
        """Return a copy with the given non-None fields replaced (paths coerced to Path)."""
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise RagError(f"Unknown setting(s): {', '.join(sorted(unknown))}. Known: {', '.join(sorted(known))}.")
        clean: dict[str, object] = {}
        for name, value in overrides.items():
            if value is None:
                continue
            if name.endswith(("_dir", "_path")):
                value = Path(value)  # type: ignore[arg-type]
            clean[name] = value
        return replace(self, **clean)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Read RAG_* variables (RAG_INDEX_DIR, RAG_LLM_PATH, RAG_TOP_K, ...) over the defaults."""
        env = os.environ if environ is None else environ
        overrides: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(f"RAG_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            default = getattr(cls(), f.name)
            try:
                if isinstance(default, bool):
                    overrides[f.name] = raw.lower() in {"1", "true", "yes"}
                elif isinstance(default, int):
                    overrides[f.name] = int(raw)
                elif isinstance(default, float):
                    overrides[f.name] = float(raw)
                else:
                    overrides[f.name] = raw
            except ValueError:
                raise RagError(f"RAG_{f.name.upper()}={raw!r} is not a valid {type(default).__name__}.") from None
        return cls().with_overrides(**overrides)
