"""The verdict on an answer: what the person sees, what is refused, and why.

The one place that calls the checks on the model's text: citations (which passage supports each
sentence, rag/citations.py), the answer's kind against the question's (rag/answertype.py) and the
fitted answerability decision (rag/answerability.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from rag import answerability
from rag.answertype import answer_phrase, misfit
from rag.citations import REFUSAL_TEXT, attach_citations, is_refusal, phrase_found, with_title
from rag.types import Answer, Citation, Hit


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
