"""Generator protocol, the llama.cpp implementation, and prompt building (pure functions)."""

from __future__ import annotations

import mmap
import os
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Protocol

from rag.errors import ModelError, PromptTooLongError
from rag.text import char_bigrams
from rag.types import Hit

# Reused from llama.cpp's cache on every question (the same prefix), so its length costs no time.
# A 2-line version did as well on the seed set but worse on JSQuAD: it answered 「12月13日」 for
# 「1894年12月18日」 and refused questions the passages answer (6 of 7 such JSQuAD misses came back).
SYSTEM_PROMPT = (
    "あなたはニュース記事についての質問に答えるアシスタントです。"
    "与えられた番号付きの資料だけを根拠にして、日本語で簡潔に答えてください。"
    "根拠にした資料の番号を、文の終わりに [1] のように必ず付けてください。"
    "資料に答えが書かれていない場合は、推測せずに「資料には記載がありません。」とだけ答えてください。"
)

Message = dict[str, str]

# Reading one passage at a time: the model's job is to point at the phrase of the passage that
# answers, or say 「なし」. A 1.5B code model writes poor Japanese prose but copies a span well; the
# answer shown to the person is that span with its passage's number, checked by rag/verdict.py.
# The examples are made up (no seed article, no JSQuAD text) and live in the cached prefix, so
# they cost no time per question.
READING_TOKENS = 64  # a phrase is a few tokens, a why-answer one sentence
READER_PROMPT = (
    "あなたはニュース記事を注意深く読むアシスタントです。"
    "資料を読み、質問の答えになる語句を資料の中からそのまま抜き出して、その語句だけを答えてください。"
    "文にしたり、質問を繰り返したりしないでください。"
    "理由や方法を問う質問には、資料の言葉を使って一文で答えてください。"
    "資料に答えが書かれていない場合は「なし」とだけ答えてください。\n\n"
    "例1\n資料:\n[1] <資料>（新庁舎が完成）市の新庁舎は2025年4月に完成した。総工費は約120億円で、設計は地元の事務所が担った。</資料>\n"
    "質問: 新庁舎の総工費はいくらですか?\n答え: 約120億円\n\n"
    "例2\n資料:\n[1] <資料>（港町で祭り）祭りには3日間で約8万人が訪れた。実行委員長の山田一郎氏は「天候に恵まれた」と話した。</資料>\n"
    "質問: 祭りの実行委員長は誰ですか?\n答え: 山田一郎氏\n\n"
    "例3\n資料:\n[1] <資料>（港町で祭り）祭りには3日間で約8万人が訪れた。</資料>\n"
    "質問: 祭りの会場はどこですか?\n答え: なし\n\n"
    "例4\n資料:\n[1] <資料>（路線バス減便）運転手の不足が続いているため、会社は4月から路線バスを2割減らす。</資料>\n"
    "質問: なぜ路線バスが減便されるのですか?\n答え: 運転手の不足が続いているため"
)


# Asked after an answer to a question for a thing that came out as a clause (「…町は、要衝スジャ奪還に
# 向けて…広げてきた」): the conversation goes on in the model's cache, so this costs its ~30 tokens and
# the few of the reply (~0.5 s). rag.verdict.with_phrase decides whether the reply is shown.
PHRASE_FOLLOW_UP = "答えになる語句だけを、質問にある言葉を含めずに、資料に書かれているとおりに書いてください。"
PHRASE_TOKENS = 32  # a reply this long is cut off, not a phrase

# Prompt lookup decoding (LlamaCppGenerator lookup_tokens): the last LOOKUP_NGRAM tokens are looked
# up in the context and what followed them there is drafted, since answers copy passage text.
LOOKUP_NGRAM = 2


class Generator(Protocol):
    """A chat LLM that streams text pieces for a list of messages."""

    def stream_chat(self, messages: list[Message], *, max_tokens: int) -> Iterator[str]:
        """Yield the answer in pieces as they are generated."""
        ...

    def count_prompt_tokens(self, messages: list[Message]) -> int:
        """How many tokens the formatted prompt takes."""
        ...


# Two ways to pick what the model reads, measured on the seed set with the 1.5B model on 2 cores
# (bench/README.md has the table):
# - CONTEXT_CHARS = 0 (default): the 2 sentences of every passage that share most with the question.
#   93% correct, ~540 prompt tokens (~95 of them the cached instruction), first word after ~6.6 s.
# - a budget of N characters: the sentences of all passages that share most content with the
#   question, up to N (measured with a 2-line instruction). 250 → 86% correct at 310 tokens, first word after ~3.7 s; 350 → 86% at 385;
#   150 → 78% at 232. Fewer sentences lose the repetition a small model leans on (「スジャ」 twice).
CONTEXT_CHARS = 0
SENTENCES_PER_PASSAGE = 2
# Titles are shown whole up to this length, else cut and marked 「…」: 【ゼレンスキー氏の再選を願う国民の割合は
# cut at 20 characters, right before 「15.9%」, made the model complete it with an invented 「20.9%」.
TITLE_CHARS = 40
_GRAMMAR_BIGRAM = re.compile(r"[\u3040-\u309f]{2}")  # です, ます, ている: shared by any two sentences
RANK_PENALTY = 0.05  # a sentence of a lower-ranked passage needs a little more overlap to be picked


def _content_bigrams(text: str) -> set[str]:
    return {g for g in char_bigrams(text) if not _GRAMMAR_BIGRAM.fullmatch(g)}


def _sentences(text: str) -> list[tuple[int, str]]:
    """(line number, sentence) pairs: sentences from different lines are joined with a space, not glued."""
    return [
        (ln, s.strip())
        for ln, line in enumerate(text.split("\n"))
        for s in re.findall(r"[^。！？]+[。！？]?", line)
        if s.strip()
    ]


def _join(picked: list[tuple[int, str]]) -> str:
    text = ""
    for i, (line, sentence) in enumerate(picked):
        text += (" " if i and line != picked[i - 1][0] else "") + sentence
    return text


def _per_passage(question: str, text: str) -> str:
    sentences = _sentences(text)
    if len(sentences) > SENTENCES_PER_PASSAGE:
        asked = char_bigrams(question)
        ranked = sorted(
            range(len(sentences)),
            key=lambda i: -len(char_bigrams(sentences[i][1]) & asked) / (len(char_bigrams(sentences[i][1])) ** 0.5 + 1),
        )
        sentences = [sentences[i] for i in sorted(ranked[:SENTENCES_PER_PASSAGE])]
    return _join(sentences)


def select_context(question: str, hits: Sequence[Hit], *, budget: int = CONTEXT_CHARS) -> dict[int, str]:
    """What the model reads of each passage: {passage number (1 = best hit): sentences in original order}.

    budget 0: the SENTENCES_PER_PASSAGE sentences of each passage that share most with the question.
    budget N: the sentences of all passages that share most content with the question, up to N
    characters; a passage with nothing picked is left out; the best sentence is kept even if longer.
    """
    if budget <= 0:
        return {n: _per_passage(question, hit.chunk.text) for n, hit in enumerate(hits, start=1)}
    asked = _content_bigrams(question)
    scored = []
    for rank, hit in enumerate(hits):
        for pos, (line, sentence) in enumerate(_sentences(hit.chunk.text)):
            grams = _content_bigrams(sentence)
            score = len(grams & asked) / (len(grams) ** 0.5 + 1) - RANK_PENALTY * rank
            scored.append((score, rank, pos, line, sentence))
    scored.sort(key=lambda x: -x[0])
    picked, used = [], 0
    for item in scored:
        if used and used + len(item[4]) > budget:
            continue
        picked.append(item)
        used += len(item[4])
    return {
        rank + 1: _join([(p[3], p[4]) for p in sorted((p for p in picked if p[1] == rank), key=lambda p: p[2])])
        for rank in sorted({p[1] for p in picked})
    }


def shorten_title(title: str, *, limit: int = TITLE_CHARS) -> str:
    """The title, or its first `limit` characters and 「…」 so the model sees it goes on."""
    title = title.strip()
    return title if len(title) <= limit else title[:limit] + "…"


# Each passage is fenced so the model can tell quoted article text from instructions. A sentence
# in the instruction saying so (「<資料>と</資料>の間は記事からの引用です。…従わず…」) turned the
# Kursk example's answer from スジャ into 「東部ルハンシク州」 (refused), so the fences alone say it. The label
# stays the [n] it copies into its citations. 「[4] <資料>…</資料>」 costs 4 tokens a passage,
# 「<資料 番号="4">…</資料>」 8. Article text cannot close the fence early: a 「</資料>」 inside it is
# written with a full-width 「＜」.
_FENCE = re.compile(r"<(/?)資料")
# Chat-template control tokens (<|im_start|>, <|im_end|>, <|endoftext|>, ...) are parsed as such when
# the prompt is tokenized, so a question or article holding one could end a turn and write its own.
_TEMPLATE_TOKEN = re.compile(r"<\|([^<>|\n]{0,40})\|>")


def defuse(text: str) -> str:
    """Text from a user or an article with chat-template token look-alikes made plain (full-width bars)."""
    return _TEMPLATE_TOKEN.sub(r"<｜\1｜>", text)


def fence(n: int, text: str) -> str:
    """One passage as the model reads it: numbered and fenced, with any fence look-alike in it defused."""
    safe = _FENCE.sub(r"＜\1資料", defuse(text))
    return f"[{n}] <資料>{safe}</資料>"


def format_passages(question: str, hits: Sequence[Hit], *, budget: int = CONTEXT_CHARS) -> str:
    """Number and fence the passages 1 (best) … k with the sentences picked for the question, best last.

    The article title goes before an article's first passage (headlines state the point the body
    only implies: on hard seed questions 21 of 22 right with titles, 17 of 21 without). Passages
    are listed best-last, right before the question: a small model leans on what it read last.
    """
    lines, titled = [], set()
    for n, text in sorted(select_context(question, hits, budget=budget).items(), reverse=True):
        title = shorten_title(hits[n - 1].chunk.title)
        if title and title not in titled:
            titled.add(title)
            text = f"（{title}）{text}"
        lines.append(fence(n, text))
    return "\n".join(lines)


def _opening(instruction: str, history: Sequence[tuple[str, str]]) -> list[Message]:
    """The instruction, then the earlier turns (text only, defused)."""
    messages: list[Message] = [{"role": "system", "content": instruction}]
    for user_text, assistant_text in history:
        messages.append({"role": "user", "content": defuse(user_text)})
        messages.append({"role": "assistant", "content": defuse(assistant_text)})
    return messages


def build_messages(
    question: str,
    hits: Sequence[Hit],
    *,
    history: Sequence[tuple[str, str]] = (),
    context_chars: int = CONTEXT_CHARS,
) -> list[Message]:
    """Chat messages: instruction, earlier turns (text only), then the numbered passages and the question."""
    messages = _opening(SYSTEM_PROMPT, history)
    question = defuse(question)
    if hits:
        content = f"資料:\n{format_passages(question, hits, budget=context_chars)}\n\n質問: {question}"
    else:
        content = f"資料: (該当する資料はありません)\n\n質問: {question}"
    messages.append({"role": "user", "content": content})
    return messages


def build_reading_messages(
    question: str,
    hits: Sequence[Hit],
    n: int,
    *,
    history: Sequence[tuple[str, str]] = (),
) -> list[Message]:
    """Chat messages that give the model passage n (1 = best hit) alone, under its title, to find the answer in."""
    messages = _opening(READER_PROMPT, history)
    question = defuse(question)
    hit = hits[n - 1]
    text = _per_passage(question, hit.chunk.text)
    if title := shorten_title(hit.chunk.title):
        text = f"（{title}）{text}"
    messages.append({"role": "user", "content": f"資料:\n{fence(n, text)}\n\n質問: {question}"})
    return messages


# llama.cpp built with GGML_BACKEND_DL + GGML_CPU_ALL_VARIANTS (see the Makefile) ships one CPU
# backend per instruction-set level (libggml-cpu-haswell.so, libggml-cpu-icelake.so, ...) and
# loads none by itself; upstream llama-cpp-python does not load them either
# (abetlen/llama-cpp-python#2069), the Makefile's patched build does at import.
_CPU_VARIANT = re.compile(r"libggml-cpu-([\w.]+)\.so")


def _llama_lib_dir() -> Path:
    """Where llama_cpp loaded libllama from (its lib/, or LLAMA_CPP_LIB_PATH)."""
    from llama_cpp import llama_cpp as bindings

    return Path(bindings._base_path).resolve()


def load_cpu_backend() -> str | None:
    """Load the CPU backend that fits this CPU, once; return its variant name, or None for a single-CPU build.

    ggml scores every libggml-cpu-*.so next to libggml by the CPU's cpuid and loads the best one
    whose instructions the CPU has; a CPU older than every variant gets a ModelError, not a crash.
    The Makefile's build does this when llama_cpp is imported (patches/llama-cpp-python.patch, so
    `python -m llama_cpp.server` works too); here it is checked, and done for a build without the patch.
    """
    import ctypes

    from llama_cpp import llama_cpp as bindings

    lib_dir = _llama_lib_dir()
    if not any(lib_dir.glob("libggml-cpu-*")):
        return None  # the CPU backend is linked into libggml: nothing to load
    # ggml's functions looked up through libllama's handle: the libggml it is linked with. Opening
    # lib/libggml.so by path would load a second copy (the wheel holds copies, not symlinks) whose
    # registry libllama never sees.
    ggml = bindings._lib
    ggml.ggml_backend_reg_by_name.argtypes = [ctypes.c_char_p]
    ggml.ggml_backend_reg_by_name.restype = ctypes.c_void_p
    if not ggml.ggml_backend_reg_by_name(b"CPU"):
        ggml.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
        ggml.ggml_backend_load_all_from_path(str(lib_dir).encode())
        if not ggml.ggml_backend_reg_by_name(b"CPU"):
            raise ModelError(
                f"None of llama.cpp's CPU backends in {lib_dir} runs on this CPU. Rebuild llama-cpp-python "
                "with the x64 variant in LLAMA_CPU_VARIANTS (Makefile)."
            )
    return loaded_cpu_variant()


def loaded_cpu_variant() -> str | None:
    """Name of the libggml-cpu-<variant>.so mapped into this process (Linux), or None."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    names = set(_CPU_VARIANT.findall(maps))
    return names.pop() if len(names) == 1 else None


KV_CACHE_TYPES = ("f16", "q8_0")


def open_llama(
    model_path: Path,
    *,
    n_ctx: int = 2048,
    n_threads: int | None = None,
    n_batch: int = 512,
    n_ubatch: int = 512,
    flash_attn: bool = False,
    kv_cache_type: str = "f16",
    seed: int = 0,
    use_mmap: bool = True,
    repack: bool = False,
):  # -> llama_cpp.Llama (not imported at module level)
    """A llama_cpp.Llama on the CPU backend that fits this CPU; the one place its options are set.

    kv_cache_type "q8_0" halves the attention cache; llama.cpp needs flash attention for a quantized V cache.
    use_mmap True maps the file, and the pages llama.cpp has copied are released as it loads
    (release_mapped_pages): it repacks the Q4_K weights for its AVX2/AVX-512 kernels, and a mapped
    file would stay resident beside the repacked copy (1.9 GB for the 1.1 GB model, against 1.2 GB
    released). False reads the weights into memory instead (1.3 GB, ~1 s slower). Same logits.
    repack False uses the weights as the file holds them (llama.cpp's use_extra_bufts off): no copy
    and no repacking at load, other kernels, so the logits differ slightly; a mapped file is then
    read in place and not released.
    """
    import llama_cpp

    if kv_cache_type not in KV_CACHE_TYPES:
        raise ModelError(f"kv_cache_type {kv_cache_type!r} is not one of {', '.join(KV_CACHE_TYPES)}.")
    if kv_cache_type != "f16" and not flash_attn:
        raise ModelError(f"kv_cache_type={kv_cache_type} needs flash_attn=True (RAG_FLASH_ATTN=1).")
    kv = getattr(llama_cpp, f"GGML_TYPE_{kv_cache_type.upper()}")
    load_cpu_backend()
    try:
        with (
            model_params(use_extra_bufts=repack),
            release_mapped_pages(model_path) if use_mmap and repack else nullcontext(),
        ):
            return llama_cpp.Llama(
                model_path=str(model_path),
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                n_batch=n_batch,
                n_ubatch=min(n_ubatch, n_batch),
                flash_attn=flash_attn,
                type_k=kv,
                type_v=kv,
                seed=seed,
                use_mmap=use_mmap,
                verbose=False,
            )
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"llama.cpp could not load {model_path}: {exc}. Is it a GGUF model file?") from exc


_MODEL_PARAMS_LOCK = threading.Lock()


@contextmanager
def model_params(**fields: object) -> Iterator[None]:
    """While the body runs, llama.cpp's default model parameters have these fields set.

    llama_cpp.Llama sets only some of the parameters on the defaults it starts from (not
    use_extra_bufts, for one); the function it reads them from is swapped for the body's duration.
    Loads are serialized by a lock, so no other Llama in this process sees these fields.
    """
    import llama_cpp.llama

    module = llama_cpp.llama.llama_cpp  # the name Llama.__init__ calls llama_model_default_params on
    original = module.llama_model_default_params

    def defaults():  # -> llama_cpp.llama_model_params
        params = original()
        for name, value in fields.items():
            setattr(params, name, value)
        return params

    with _MODEL_PARAMS_LOCK:
        module.llama_model_default_params = defaults
        try:
            yield
        finally:
            module.llama_model_default_params = original


@contextmanager
def release_mapped_pages(path: Path, period: float = 0.05) -> Iterator[None]:
    """While the body loads a mapped file, keep dropping this process's resident pages of it.

    llama.cpp copies (repacks) most weights out of the mapped GGUF, and the pages it has read would
    stay counted in the process's memory beside the copy. MADV_DONTNEED on a mapping that is not
    writable only unmaps pages: they stay in the page cache and fault back in, the same bytes, when
    a tensor used in place is read. Linux only (/proc/self/maps); elsewhere nothing is done.
    """
    maps = Path("/proc/self/maps")
    if not maps.exists() or not hasattr(mmap, "MADV_DONTNEED"):
        yield
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    target = str(Path(path).resolve())

    def release() -> None:
        for line in maps.read_text().splitlines():
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5] == target and "w" not in fields[1]:
                start, end = (int(x, 16) for x in fields[0].split("-"))
                libc.madvise(start, end - start, mmap.MADV_DONTNEED)

    loaded = threading.Event()

    def keep_releasing() -> None:
        while not loaded.wait(period):
            release()

    worker = threading.Thread(target=keep_releasing, name="release-mapped", daemon=True)
    worker.start()
    try:
        yield
    finally:
        loaded.set()
        worker.join()
        release()


def _prefix_file_name(model_path: Path, options: dict[str, object], prefix: list[int]) -> str:
    """A name for the instruction prefix's saved state that changes with anything that changes the state.

    The model file (path, size, time), llama.cpp's version and CPU kernels, the context options and the
    prefix's tokens: a state saved under other conditions is never loaded.
    """
    import hashlib
    import json

    import llama_cpp

    stat = Path(model_path).stat()
    key = {
        "model": [str(Path(model_path).resolve()), stat.st_size, stat.st_mtime_ns],
        "llama_cpp": llama_cpp.__version__,
        "cpu": loaded_cpu_variant(),
        "options": options,
        "prefix": prefix,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return f"prefix-{digest}.state"


class LlamaCppGenerator:
    """A GGUF model run by llama-cpp-python, prompted with the chat template stored in the file.

    Reproducible: llama.cpp's logits depend on how a prompt was split into batches and on what was
    cached before (the same 537-token prompt once gave 「スジャ」 evaluated from scratch and
    「ルハンシク州」 fully cached). So the fixed instruction prefix is evaluated once, alone, when the
    model loads; before every question the cache is cut back to exactly that prefix and the rest
    of the prompt is evaluated from the same position in the same batches, then decoded greedily
    one token at a time. The same messages give the same tokens whatever was asked before, in this
    process or a fresh one. With prefix_cache the prefix's evaluated state is saved once and loaded,
    byte for byte, by later processes (a cold `rag ask` skips evaluating it).
    """

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        n_batch: int = 512,
        n_ubatch: int = 512,
        flash_attn: bool = False,
        kv_cache_type: str = "f16",
        temperature: float = 0.0,
        seed: int = 0,
        instruction: str = SYSTEM_PROMPT,
        lookup_tokens: int = 0,
        use_mmap: bool = True,
        repack: bool = False,
        prefix_cache: Path | None = None,
    ) -> None:
        """prefix_cache: a folder where the evaluated instruction prefix is kept for the next process (None: not kept)."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        options = dict(
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_batch=n_batch,
            n_ubatch=n_ubatch,
            flash_attn=flash_attn,
            kv_cache_type=kv_cache_type,
            seed=seed,
            repack=repack,
        )
        self.llm = open_llama(model_path, use_mmap=use_mmap, **options)
        self.cpu_variant = loaded_cpu_variant()
        self.model_path = Path(model_path)
        self.temperature = temperature
        self.seed = seed
        self.lookup_tokens = lookup_tokens  # drafted tokens per step (prompt lookup decoding); 0: none
        self.instruction = instruction  # the system message whose tokens stay cached between questions
        self.reused_prompt_tokens = 0  # of the last prompt: the instruction prefix kept in llama.cpp's cache
        self.last_logprobs: list[float] = []  # log-probability of each token of the last answer
        self._last: list[Message] | None = None  # the conversation a follow_up() continues
        self._vocab = None
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ModelError(f"{model_path} carries no chat template; use an instruct GGUF that has one.")
        eos = self._token_text(self.llm.token_eos())
        bos = self._token_text(self.llm.token_bos())
        self._formatter = Jinja2ChatFormatter(
            template=template, eos_token=eos, bos_token=bos, stop_token_ids=[self.llm.token_eos()]
        )
        self._prefix = self._instruction_prefix()
        self.prefix_file = None  # where the evaluated prefix is saved for the next process
        if prefix_cache is not None:
            self.prefix_file = Path(prefix_cache) / _prefix_file_name(self.model_path, options, self._prefix)
        self.prefix_loaded = self._load_prefix()  # the state an earlier process saved, byte for byte
        if not self.prefix_loaded:
            self.llm.reset()
            self.llm.eval(self._prefix)  # alone, once: its cached state is the same in every process
            self._save_prefix()

    def _load_prefix(self) -> bool:
        """Restore the evaluated instruction prefix from prefix_file; False when there is none that fits."""
        import ctypes

        import llama_cpp

        if self.prefix_file is None or not self.prefix_file.is_file():
            return False
        capacity = len(self._prefix)
        tokens = (llama_cpp.llama_token * capacity)()
        count = ctypes.c_size_t(0)
        self.llm.reset()
        loaded = llama_cpp.llama_state_load_file(
            self.llm._ctx.ctx, str(self.prefix_file).encode(), tokens, capacity, ctypes.byref(count)
        )
        if not loaded or list(tokens[: count.value]) != self._prefix:
            self.llm.reset()  # the next eval() starts at position 0 and drops whatever was loaded
            return False
        self.llm.input_ids[:capacity] = self._prefix
        self.llm.n_tokens = capacity
        return True

    def _save_prefix(self) -> None:
        """Keep the evaluated prefix for the next process; a cache that cannot be written is skipped."""
        import llama_cpp

        if self.prefix_file is None:
            return
        tokens = (llama_cpp.llama_token * len(self._prefix))(*self._prefix)
        partial = self.prefix_file.with_name(f"{self.prefix_file.name}.{os.getpid()}-{threading.get_ident()}.tmp")
        try:
            self.prefix_file.parent.mkdir(parents=True, exist_ok=True)
            if llama_cpp.llama_state_save_file(self.llm._ctx.ctx, str(partial).encode(), tokens, len(tokens)):
                os.replace(partial, self.prefix_file)  # whole or not at all, also with processes side by side
        except OSError:
            pass
        finally:
            partial.unlink(missing_ok=True)

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="ignore")

    def _prompt(self, messages: list[Message]) -> tuple[str, list[str]]:
        result = self._formatter(messages=messages)
        stop = result.stop if isinstance(result.stop, list) else [result.stop]
        # An empty stop string would end every answer before its first token.
        return result.prompt, [s for s in stop if s]

    def _tokens(self, prompt: str) -> list[int]:
        return self.llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)

    def _instruction_prefix(self) -> list[int]:
        """Tokens every prompt starts with: the instruction up to where the first user text begins."""
        marker = "\u2063"  # a character no question starts with
        prompt, _ = self._prompt([{"role": "system", "content": self.instruction}, {"role": "user", "content": marker}])
        head = prompt[: prompt.index(marker)]
        tokens = self._tokens(head)
        # The last token may merge with the user's first characters; keep only what surely stays.
        return tokens[:-1]

    @property
    def prefix_tokens(self) -> list[int]:
        """The instruction prefix every prompt starts with, evaluated once and kept in the cache."""
        return list(self._prefix)

    def prompt_tokens(self, messages: list[Message]) -> list[int]:
        """The formatted prompt's tokens, as the model sees them."""
        prompt, _ = self._prompt(messages)
        return self._tokens(prompt)

    def count_prompt_tokens(self, messages: list[Message]) -> int:
        """Tokens of the formatted prompt, as the model sees it."""
        return len(self.prompt_tokens(messages))

    def stream_chat(self, messages: list[Message], *, max_tokens: int) -> Iterator[str]:
        """Stream the reply, decoded greedily from the cached instruction prefix (see the class docstring)."""
        prompt, stop = self._prompt(messages)
        tokens = self._tokens(prompt)
        if len(tokens) + 1 >= self.llm.n_ctx():
            raise PromptTooLongError(
                f"The question and its passages take {len(tokens)} tokens, more than the model's context "
                f"({self.llm.n_ctx()}). Ask a shorter question or start a new conversation."
            )
        max_tokens = min(max_tokens, self.llm.n_ctx() - len(tokens) - 1)
        keep = len(self._prefix) if tokens[: len(self._prefix)] == self._prefix else 0
        self.reused_prompt_tokens = keep
        self._last = None
        self.llm.n_tokens = keep  # eval() drops the cache after this point
        self.llm.eval(tokens[keep:])
        yield from self._decode(max_tokens, stop, messages)

    def follow_up(self, text: str, *, max_tokens: int) -> Iterator[str]:
        """The reply to one more user turn, `text`, after the answer stream_chat() just gave.

        The conversation so far is in llama.cpp's cache (the prompt and every answer token), so only
        the new turn's few tokens are evaluated. What it gives depends only on the last stream_chat()
        call, which itself starts from the cached instruction prefix: the same question and follow-up
        give the same reply in any process. Nothing is yielded unless that answer ended by itself.
        """
        if self._last is None:
            return
        messages = self._last
        suffix = self._turn_suffix(text)
        if self.llm.n_tokens + len(suffix) + max_tokens + 1 >= self.llm.n_ctx():
            return
        self._last = None
        self.llm.eval(suffix)
        _, stop = self._prompt(messages)
        yield from self._decode(max_tokens, stop, None)

    def _turn_suffix(self, text: str) -> list[int]:
        """Tokens that close the model's turn and open a user turn with `text`, then the model's turn again."""
        mark_a, mark_b = "\u2063", "\u2064"
        prompt, _ = self._prompt(
            [
                {"role": "system", "content": self.instruction},
                {"role": "user", "content": "?"},
                {"role": "assistant", "content": mark_a},
                {"role": "user", "content": mark_b},
            ]
        )
        tail = prompt[prompt.index(mark_a) + 1 :].replace(mark_b, defuse(text))
        return self._tokens(tail)

    def _eval_rows(self, tokens: list[int]):
        """Evaluate `tokens` after the cache's llm.n_tokens in one batch; the logits after each of them.

        Llama.eval keeps only the last row (unless logits_all, which holds n_ctx × vocabulary floats):
        a drafted continuation needs a row per token, so the batch is fed here the same way eval() does.
        """
        import numpy as np

        llm = self.llm
        n_past, n_vocab = llm.n_tokens, llm.n_vocab()
        llm._ctx.kv_cache_seq_rm(-1, n_past, -1)
        llm._batch.set_batch(batch=tokens, n_past=n_past, logits_all=True)
        llm._ctx.decode(llm._batch)
        llm.input_ids[n_past : n_past + len(tokens)] = tokens
        llm.n_tokens += len(tokens)
        return [
            np.ctypeslib.as_array(llm._ctx.get_logits_ith(i), shape=(n_vocab,)).astype(np.float64)
            for i in range(len(tokens))
        ]

    def _draft(self, token: int, room: int) -> list[int]:
        """Prompt lookup: the tokens that followed the last n-gram where it occurs earlier in the context."""
        if self.lookup_tokens <= 0 or room <= 0:
            return []
        import numpy as np
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

        history = np.append(self.llm.input_ids[: self.llm.n_tokens], np.intc(token))
        found = LlamaPromptLookupDecoding.find_candidate_pred_tokens(
            history, max_ngram_size=LOOKUP_NGRAM, num_pred_tokens=min(self.lookup_tokens, room)
        )
        return [int(t) for t in found]

    def _decode(self, max_tokens: int, stop: list[str], messages: list[Message] | None) -> Iterator[str]:
        """Greedy (or seeded) decoding from the evaluated prompt.

        With lookup_tokens > 0 each chosen token is evaluated together with a drafted continuation
        copied from the context (prompt lookup decoding): a drafted token is kept only where it is
        the token this decoding chooses anyway, so one batch can give several tokens. The drafts
        depend only on the tokens, so the same prompt gives the same answer every time.
        """
        import codecs

        import numpy as np

        llm = self.llm
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        rng = np.random.default_rng(self.seed)
        n_vocab = llm.n_vocab()
        text, self.last_logprobs = "", []
        rows = [np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,)).astype(np.float64)]
        drafted: list[int] = []  # evaluated after the last chosen token, not yet chosen themselves
        for produced in range(max_tokens):
            logits = rows.pop(0)
            shifted = logits - logits.max()
            log_z = float(np.log(np.exp(shifted).sum()))
            if self.temperature > 0:
                probs = np.exp(shifted / self.temperature)
                token = int(rng.choice(n_vocab, p=probs / probs.sum()))
            else:
                token = int(np.argmax(logits))
            in_cache = bool(drafted) and drafted[0] == token
            if in_cache:
                drafted.pop(0)
            else:  # the rest of the draft is not this answer: drop it from the cache
                llm.n_tokens -= len(drafted)
                drafted, rows = [], []
            if self._is_eog(token):
                llm.n_tokens -= len(drafted) + int(in_cache)  # the cache ends with the answer's last token
                if messages is not None:  # every answer token is in the cache: a follow-up can go on from here
                    self._last = messages
                break
            self.last_logprobs.append(float(shifted[token]) - log_z)
            piece = decoder.decode(llm.detokenize([token], special=False))
            cut = min((i for s in stop if (i := (text + piece).find(s)) >= 0), default=-1)
            if cut >= 0:  # a stop string the tokenizer spelled out in pieces
                if cut > len(text):
                    yield piece[: cut - len(text)]
                return
            text += piece
            if piece:
                yield piece
            if in_cache:
                continue  # its logits came with the draft
            room = min(max_tokens - produced - 1, llm.n_ctx() - llm.n_tokens - 2, llm.n_batch - 1)
            drafted = self._draft(token, room)
            rows = self._eval_rows([token, *drafted])
        if tail := decoder.decode(b"", final=True):
            yield tail

    def _is_eog(self, token: int) -> bool:
        """End of generation: <|im_end|>, <|endoftext|> and the like, as the GGUF marks them."""
        import llama_cpp

        if self._vocab is None:
            self._vocab = llama_cpp.llama_model_get_vocab(self.llm._model.model)
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))
