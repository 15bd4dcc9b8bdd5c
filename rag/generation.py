"""Generator protocol, the llama.cpp implementation, and prompt building (pure functions)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

from rag.errors import ModelError
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
TITLE_CHARS = 20  # enough to say what the article is about; shown once per article
_GRAMMAR_BIGRAM = re.compile(r"[\u3040-\u309f]{2}")  # です, ます, ている: shared by any two sentences
RANK_PENALTY = 0.05  # a sentence of a lower-ranked passage needs a little more overlap to be picked


def _bigrams(text: str) -> set[str]:
    t = re.sub(r"\s", "", text)
    return {t[i : i + 2] for i in range(len(t) - 1)}


def _content_bigrams(text: str) -> set[str]:
    return {g for g in _bigrams(text) if not _GRAMMAR_BIGRAM.fullmatch(g)}


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
        asked = _bigrams(question)
        ranked = sorted(
            range(len(sentences)),
            key=lambda i: -len(_bigrams(sentences[i][1]) & asked) / (len(_bigrams(sentences[i][1])) ** 0.5 + 1),
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


def format_passages(question: str, hits: Sequence[Hit], *, budget: int = CONTEXT_CHARS) -> str:
    """Number the passages [1] (best) … [k] with the sentences picked for the question, best last.

    The article title goes before an article's first passage (headlines state the point the body
    only implies: on hard seed questions 21 of 22 right with titles, 17 of 21 without). Passages
    are listed best-last, right before the question: a small model leans on what it read last.
    """
    lines, titled = [], set()
    for n, text in sorted(select_context(question, hits, budget=budget).items(), reverse=True):
        title = hits[n - 1].chunk.title[:TITLE_CHARS]
        if title and title not in titled:
            titled.add(title)
            text = f"（{title}）{text}"
        lines.append(f"[{n}] {text}")
    return "\n".join(lines)


def build_messages(
    question: str,
    hits: Sequence[Hit],
    *,
    history: Sequence[tuple[str, str]] = (),
    context_chars: int = CONTEXT_CHARS,
) -> list[Message]:
    """Chat messages: instruction, earlier turns (text only), then the numbered passages and the question."""
    messages: list[Message] = [{"role": "system", "content": SYSTEM_PROMPT}]
    for user_text, assistant_text in history:
        messages.append({"role": "user", "content": user_text})
        messages.append({"role": "assistant", "content": assistant_text})
    if hits:
        content = f"資料:\n{format_passages(question, hits, budget=context_chars)}\n\n質問: {question}"
    else:
        content = f"資料: (該当する資料はありません)\n\n質問: {question}"
    messages.append({"role": "user", "content": content})
    return messages


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class LlamaCppGenerator:
    """A GGUF model run by llama-cpp-python, prompted with the chat template stored in the file."""

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        temperature: float = 0.0,
        seed: int = 0,
    ) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        try:
            self.llm = Llama(
                model_path=str(model_path),
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_batch=512,
                seed=seed,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"llama.cpp could not load {model_path}: {exc}. Is it a GGUF model file?") from exc
        self.model_path = Path(model_path)
        self.temperature = temperature
        self.reused_prompt_tokens = 0  # of the last prompt, taken from llama.cpp's cache
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ModelError(f"{model_path} carries no chat template; use an instruct GGUF that has one.")
        eos = self._token_text(self.llm.token_eos())
        bos = self._token_text(self.llm.token_bos())
        self._formatter = Jinja2ChatFormatter(
            template=template, eos_token=eos, bos_token=bos, stop_token_ids=[self.llm.token_eos()]
        )

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="ignore")

    def _prompt(self, messages: list[Message]) -> tuple[str, list[str]]:
        result = self._formatter(messages=messages)
        stop = result.stop if isinstance(result.stop, list) else [result.stop]
        # An empty stop string would end every answer before its first token.
        return result.prompt, [s for s in stop if s]

    def count_prompt_tokens(self, messages: list[Message]) -> int:
        """Tokens of the formatted prompt, as the model sees it."""
        prompt, _ = self._prompt(messages)
        return len(self.llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))

    def stream_chat(self, messages: list[Message], *, max_tokens: int) -> Iterator[str]:
        """Stream the reply; llama-cpp-python reuses the cached prefix (the fixed instruction) between calls."""
        prompt, stop = self._prompt(messages)
        tokens = self.llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        # llama-cpp-python evaluates only what follows the longest prefix shared with the last prompt.
        self.reused_prompt_tokens = _common_prefix(tokens, list(self.llm.input_ids[: self.llm.n_tokens]))
        for chunk in self.llm.create_completion(
            tokens,
            max_tokens=max_tokens,
            temperature=self.temperature,
            top_k=1 if self.temperature == 0 else 40,
            repeat_penalty=1.0,
            stop=stop,
            stream=True,
        ):
            piece = chunk["choices"][0]["text"]
            if piece:
                yield piece
