"""Errors raised by the library. Every message says what to do next."""

from __future__ import annotations

from pathlib import Path

REBUILD_HINT = (
    "Run `rag build --full` to rebuild the index from the articles. "
    "(索引を読めません。`rag build --full` で作り直してください。)"
)
_REASON_CHARS = 160  # FAISS's C++ messages run to several lines; the first words say enough


class RagError(Exception):
    """Base class for every error 記事QA raises on purpose."""


class ModelError(RagError):
    """A model file is missing, unverified or unusable."""


class LLMServerError(RagError):
    """The OpenAI-compatible LLM server (RAG_LLM_URL) is unreachable, too slow or answered with an error."""


class IndexNotBuiltError(RagError):
    """There is no index where one was expected."""


class IndexMismatchError(RagError):
    """The index was built with other settings (model, format) than the ones in use.

    `path` names the file that says so (the manifest), when known.
    """

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class IndexCorruptError(RagError):
    """The index files are unreadable or inconsistent; `path` names the damaged file, when known."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class IndexBusyError(RagError):
    """Another build holds the index lock and did not finish in time."""


class UploadError(RagError):
    """A file given to `rag add` (or the chat page's upload) cannot be added; nothing was changed.

    `filename` names the file and `code` says why ("type", "size", "exists", "empty", "missing",
    "unreadable", "duplicate") so the chat page can say it in Japanese.
    """

    def __init__(self, message: str, *, filename: str = "", code: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.filename = filename
        self.code = code
        self.detail = detail  # the reader's own reason, for code "unreadable"


class SeedsError(RagError):
    """The seeds folder is missing or holds no usable article."""


class DiskFullError(RagError):
    """The disk filled up while a build wrote the new index version; the previous one is still in use."""


class PromptTooLongError(RagError):
    """The question, history and passages do not fit in the model's context window."""


class QuestionError(RagError):
    """The question is empty, too long or not text."""


class QuestionTooLongError(QuestionError):
    """The question is longer than a question may be (see rag.question.MAX_QUESTION_CHARS)."""


class BusyError(RagError):
    """Too many questions are already waiting for the model; nothing was started. Try again shortly."""


class VectorStoreError(RagError):
    """The vector store (a Qdrant server or local folder) cannot be reached or refused a request."""


def damaged(path: Path | str, why: str) -> IndexCorruptError:
    """The one message every damage gives: which file (or collection), what is wrong with it, what to run."""
    return IndexCorruptError(f"The index is damaged: {path} {why}. {REBUILD_HINT}", path=str(path))


def short(exc: BaseException) -> str:
    """An exception's message on one line, cut to a readable length."""
    text = " ".join(str(exc).split())
    return text if len(text) <= _REASON_CHARS else text[:_REASON_CHARS] + "…"
