"""Frozen dataclasses passed between the modules and returned to callers."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Document:
    """One article taken from a seed file, already cleaned of page boilerplate."""

    doc_id: str
    source: str  # seed file name, e.g. "000_b6beab82226e0b33.txt"
    title: str
    text: str
    date: str | None = None
    url: str | None = None
    # For a paged file (PDF): (character offset in text, page number) where each page's text starts.
    pages: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class Chunk:
    """A passage of a Document: the unit that is embedded, retrieved and cited."""

    chunk_id: str
    doc_id: str
    source: str
    title: str
    text: str
    position: int  # order of the chunk inside its document
    date: str | None = None
    url: str | None = None
    page: int | None = None  # page of a PDF where the passage starts (None: the file has no pages)


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its similarity score (higher is better)."""

    chunk: Chunk
    score: float


@dataclass(frozen=True)
class Citation:
    """A numbered source shown under an answer; `n` is the marker number, as in [n]."""

    n: int
    source: str
    title: str
    text: str
    score: float
    chunk_id: str
    date: str | None = None
    url: str | None = None
    quote: str = ""  # the sentence of `text` that supports the answer (highlighted in the chat page)
    page: int | None = None  # page of a PDF where the passage starts


@dataclass(frozen=True)
class Answer:
    """An answer written by the LLM from numbered passages, with the sources it cites."""

    question: str
    text: str
    citations: list[Citation]
    passages: list[Citation] = field(default_factory=list)  # every passage the model was given
    refused: bool = False  # True when the articles do not answer the question (text says so)
    refusal_reason: str = ""  # which check turned the model's text into the refusal (for developers)
    raw_text: str = ""  # what the model wrote, before the checks
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds_to_first_token: float = 0.0
    seconds_total: float = 0.0


@dataclass(frozen=True)
class SkippedFile:
    """A seed file that could not be used, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class Drop:
    """A piece of a file the cleaning step left out of the articles, and the rule that dropped it."""

    line_no: int  # 1-based line of the decoded text (HTML: of the main text extracted from the page)
    text: str
    rule: str  # short rule name shown by `rag inspect`, e.g. "menu", "repeated", "link list"
    page: int | None = None  # page of a PDF the piece was on


@dataclass(frozen=True)
class FileReport:
    """How one seed file went into the index: articles and characters kept, characters dropped."""

    path: str  # relative to the seeds folder
    articles: int = 0
    kept_chars: int = 0
    dropped_chars: int = 0
    # Set by the index build, comparing with the previous index: "added", "changed", "unchanged",
    # "removed" (gone from the seeds folder, its passages dropped) or "skipped" (no usable article:
    # see reason). BuildReport.embedded says how many passages were embedded anew.
    status: str = "read"
    reason: str = ""  # why a skipped file gave no article


@dataclass(frozen=True)
class BuildReport:
    """What `build_index` did."""

    index_dir: str
    docs: int
    chunks: int
    seconds: float
    skipped: list[SkippedFile] = field(default_factory=list)
    rebuilt: bool = True  # False when the index was already up to date
    files: list[FileReport] = field(default_factory=list)  # one per seed file, in path order, then removed files
    embedded: int = 0  # passages embedded by this build (the others were reused from the previous index)

    def count(self, status: str) -> int:
        """How many files have this status ("added", "changed", "unchanged", "removed", "skipped")."""
        return sum(1 for f in self.files if f.status == status)


@dataclass(frozen=True)
class AddReport:
    """What `add_documents` did: the names the files were saved under, and the index update."""

    saved: list[str]  # names in the seeds folder, in the order the files were given
    build: BuildReport
    unchanged: list[str] = field(default_factory=list)  # given files already in the seeds folder byte for byte
