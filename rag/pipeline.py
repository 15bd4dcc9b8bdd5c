"""RagPipeline: the one place retrieval meets generation (question -> passages -> model -> verdict -> Answer)."""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import replace

from rag.config import Settings
from rag.errors import RagError
from rag.gate import AnswerStream, QuestionGate
from rag.generation import (
    PHRASE_FOLLOW_UP,
    PHRASE_TOKENS,
    READING_TOKENS,
    Generator,
    Message,
    build_messages,
    build_reading_messages,
)
from rag.question import MAX_HISTORY_TURNS, History, clean_history, clean_question, is_follow_up
from rag.retrieval import Retriever
from rag.types import Answer, Hit
from rag.verdict import answer_from_readings, judge, make_answer, settles, wants_phrase, with_phrase

ANSWER_FORMS = ("sentence", "short", "phrase")  # Settings.answer_form


class RagPipeline:
    """Answers questions from the index with the LLM; models are injected (see load_pipeline)."""

    def __init__(self, retriever: Retriever, generator: Generator, *, settings: Settings | None = None) -> None:
        self.retriever = retriever
        self.generator = generator
        self.settings = settings or Settings()
        self._reload_lock = threading.Lock()
        self._failed_stamp: str | None = None  # a new index that failed to load is not retried every question
        self.gate = QuestionGate(self.settings.max_waiting)
        if self.settings.answer_form not in ANSWER_FORMS:
            raise RagError(
                f"RAG_ANSWER_FORM={self.settings.answer_form!r}: choose one of {', '.join(ANSWER_FORMS)}."
            )

    def reload_if_changed(self) -> bool:
        """Open the index again if a build replaced it since it was loaded; the models are kept. True if reloaded."""
        from rag.vector_index import VectorIndex
        from rag.versions import current_stamp

        index = self.retriever.index
        if index.source_dir is None:  # built in memory, not read from an index folder
            return False
        stamp = current_stamp(index.source_dir)
        if stamp is None or stamp in (index.stamp, self._failed_stamp):
            return False
        with self._reload_lock:
            if self.retriever.index.stamp == stamp:  # another thread reloaded it meanwhile
                return False
            embedder = self.retriever.embedder
            try:
                fresh = VectorIndex.load(index.source_dir, expected_model=embedder.model_id, store=index.store)
            except RagError as exc:
                self._failed_stamp = stamp
                warnings.warn(f"Kept answering from the index loaded before: {exc}", stacklevel=2)
                return False
            # A new Retriever, not a changed one: a question being answered keeps the index it started with.
            self.retriever = Retriever(fresh, embedder, mode=self.retriever.mode)
        return True

    def retrieve(self, question: str, *, k: int | None = None, history: History = ()) -> list[Hit]:
        """The passages an answer to `question` would be written from, best first."""
        self.reload_if_changed()  # articles added by `rag add` or the chat page are answered without a restart
        k = k or self.settings.top_k
        previous = [q for q, _ in history][-MAX_HISTORY_TURNS:] if is_follow_up(question) else []
        retriever = self.retriever  # one index for the whole question, even if a reload happens meanwhile
        return retriever.complete_sentences(retriever.retrieve_in_conversation(question, previous, k=k))

    def ask(
        self,
        question: str,
        *,
        k: int | None = None,
        history: History = (),
        max_tokens: int | None = None,
        passages: Sequence[Hit] | None = None,
    ) -> Answer:
        """Answer a question (optionally a follow-up to `history`) with numbered citations.

        passages: the hits to answer from, as retrieve() gave them (default: retrieved now).
        Safe to call from several threads: questions are answered one at a time (BusyError when
        more than settings.max_waiting are already waiting).
        """
        with self.stream(question, k=k, history=history, max_tokens=max_tokens, passages=passages) as stream:
            for _ in stream:
                pass
        assert stream.answer is not None  # set when the iterator is exhausted
        return stream.answer

    def stream(
        self,
        question: str,
        *,
        k: int | None = None,
        history: History = (),
        max_tokens: int | None = None,
        passages: Sequence[Hit] | None = None,
    ) -> AnswerStream:
        """Like ask(), but yields text pieces as the model writes them; `.answer` is set at the end.

        The question is checked and its place in the queue taken now (QuestionError, BusyError);
        the first piece comes when its turn has come. max_tokens caps the answer below settings.max_tokens.
        """
        question = clean_question(question)
        turns = clean_history(history)[-MAX_HISTORY_TURNS:] if is_follow_up(question) else []
        limit = self.settings.max_tokens if max_tokens is None else max(1, min(max_tokens, self.settings.max_tokens))
        ticket = self.gate.enter()
        result: list[Answer] = []
        cancelled = threading.Event()

        def cancel() -> None:
            cancelled.set()
            self.gate.wake()

        stream = AnswerStream(
            self._run(question, k, turns, limit, passages, ticket, cancelled, result),
            release=lambda: self.gate.leave(ticket),
            result=result,
            cancel=cancel,
        )
        stream.ahead = self.gate.ahead(ticket)
        return stream

    def _run(
        self,
        question: str,
        k: int | None,
        history: list[tuple[str, str]],
        max_tokens: int,
        passages: Sequence[Hit] | None,
        ticket: object,
        cancelled: threading.Event,
        out: list[Answer],
    ) -> Iterator[str]:
        try:
            if not self.gate.wait(ticket, cancelled):
                return
            # closing(): the model's generation stops here, before the next token, also on GeneratorExit.
            with contextlib.closing(self._answer(question, k, history, max_tokens, passages, out)) as pieces:
                for piece in pieces:
                    if cancelled.is_set():
                        return
                    yield piece
        finally:  # also when the reader stops early (GeneratorExit): the next question goes on
            self.gate.leave(ticket)

    def _answer(
        self,
        question: str,
        k: int | None,
        history: list[tuple[str, str]],
        max_tokens: int,
        passages: Sequence[Hit] | None,
        out: list[Answer],
    ) -> Iterator[str]:
        started = time.perf_counter()
        hits = list(passages) if passages is not None else self.retrieve(question, k=k, history=history)
        if self.settings.reader == "passages":
            yield from self._read_passages(question, hits, history, max_tokens, started, out)
            return
        while True:
            messages = build_messages(question, hits, history=history, context_chars=self.settings.context_chars)
            prompt_tokens = self.generator.count_prompt_tokens(messages)
            # The oldest turns go first when the prompt and the answer would not fit in the context.
            if not history or prompt_tokens + max_tokens <= self.settings.n_ctx:
                break
            history = history[1:]
        pieces: list[str] = []
        first = 0.0
        for piece in self.generator.stream_chat(messages, max_tokens=max_tokens):
            if not pieces:
                first = time.perf_counter() - started
            pieces.append(piece)
            yield piece
        raw = "".join(pieces)
        form = self.settings.answer_form
        answer = make_answer(
            question,
            raw,
            hits,
            logprobs=getattr(self.generator, "last_logprobs", None),
            short=form != "sentence",
            prompt_tokens=prompt_tokens,
            completion_tokens=len(pieces),
            seconds_to_first_token=first,
            seconds_total=time.perf_counter() - started,
        )
        if form == "phrase" and wants_phrase(question, answer):  # a thing asked, a clause said: ask for the phrase
            reply = list(self._follow_up(messages, raw, PHRASE_FOLLOW_UP))
            tokens = len(getattr(self.generator, "last_logprobs", None) or reply)
            said = "".join(reply) if tokens < PHRASE_TOKENS else ""  # a reply cut off is no phrase
            answer = replace(
                with_phrase(question, answer, said, hits),
                completion_tokens=answer.completion_tokens + len(reply),
                seconds_total=time.perf_counter() - started,
            )
        out.append(answer)

    def _follow_up(self, messages: list[Message], said: str, text: str) -> Iterator[str]:
        """The model's reply to one more user turn after its answer (its cache reused when it has one)."""
        follow_up = getattr(self.generator, "follow_up", None)
        if follow_up is not None:
            yield from follow_up(text, max_tokens=PHRASE_TOKENS)
            return
        turn = [{"role": "assistant", "content": said}, {"role": "user", "content": text}]
        yield from self.generator.stream_chat([*messages, *turn], max_tokens=PHRASE_TOKENS)

    def _read_passages(
        self,
        question: str,
        hits: list[Hit],
        history: list[tuple[str, str]],
        max_tokens: int,
        started: float,
        out: list[Answer],
    ) -> Iterator[str]:
        """Read the passages one at a time, best first, until one settles the question (rag.verdict.choose)."""
        candidates, raws, prompt_tokens, completion_tokens = [], [], 0, 0
        for n in range(1, len(hits) + 1):
            while True:
                messages = build_reading_messages(question, hits, n, history=history)
                tokens = self.generator.count_prompt_tokens(messages)
                if not history or tokens + READING_TOKENS <= self.settings.n_ctx:
                    break
                history = history[1:]
            prompt_tokens += tokens
            pieces = list(self.generator.stream_chat(messages, max_tokens=min(max_tokens, READING_TOKENS)))
            completion_tokens += len(pieces)
            raws.append("".join(pieces))
            candidates.append(judge(question, raws[-1], n, hits))
            if settles(candidates[-1]):
                break
        answer = answer_from_readings(
            question,
            hits,
            candidates,
            raws,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            seconds_to_first_token=time.perf_counter() - started,
            seconds_total=time.perf_counter() - started,
        )
        yield answer.text
        out.append(answer)
