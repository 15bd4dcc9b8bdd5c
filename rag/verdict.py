"""The verdict on an answer: what the person sees, what is refused, and why.

The one place that calls the checks on the model's text: citations (which passage supports each
sentence, rag/citations.py), the answer's kind against the question's (rag/answertype.py) and the
fitted answerability decision (rag/answerability.py).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace

from rag import answerability
from rag.answertype import COUNTERS, answer_phrase, asks_reason, misfit, typed_span
from rag.citations import (
    _INFLECTED,
    MAX_SPAN_CHARS,
    MIN_SUPPORT,
    REFUSAL_TEXT,
    attach_citations,
    holding_sentence,
    is_refusal,
    phrase_found,
    quote_span,
    span_norm,
    support,
    with_title,
)
from rag.types import Answer, Citation, Hit

_LEADING_LABEL = re.compile(r"^\s*(?:答え|回答|解答|A)\s*[:：]\s*")


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
        page=c.page,
        quote=quote,
    )


def _refusal(
    question: str, passages: list[Citation], raw_text: str, reason: str, timings: dict[str, float | int]
) -> Answer:
    """The refusal, with the closest passages still visible so the reader can see what was searched."""
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


def make_answer(
    question: str,
    raw_text: str,
    hits: Sequence[Hit],
    *,
    logprobs: Sequence[float] | None = None,
    short: bool = False,
    **timings: float | int,
) -> Answer:
    """Turn the model's text into an Answer whose every [n] names a passage that supports its sentence.

    logprobs: the log-probability of each generated token, when the backend reports them (None:
    the answerability decision uses its fallback weights, see rag/answerability.py).
    short: the answer first (answer_first: 「スジャ[1]」, Settings.answer_form "short"/"phrase");
    False (default) keeps the model's sentences, checked.
    """
    passages = [_citation(n, hit) for n, hit in enumerate(hits, start=1)]
    titles = [h.chunk.title for h in hits]
    # 「答え: スジャ[1]」: the label the instruction's examples put before an answer is not part of it.
    text, cited = attach_citations(_LEADING_LABEL.sub("", raw_text), [h.chunk.text for h in hits], question=question, titles=titles)
    cited_texts = [hits[c.n - 1].chunk.text for c in cited]
    reason = refusal_reason(question, text, cited, [with_title(titles[c.n - 1], hits[c.n - 1].chunk.text) for c in cited])
    bar = answerability.threshold(has_logprobs=bool(logprobs))
    if not reason and bar > 0:
        ev = answerability.evidence(question, cited_texts, [h.chunk.text for h in hits], logprobs or [])
        p = answerability.confidence(ev, has_logprobs=bool(logprobs))
        if p < bar:
            reason = f"the evidence is weak (answerability {p:.2f} < {bar})"
    if reason:
        return _refusal(question, passages, raw_text, reason, timings)
    citations = [_citation(c.n, hits[c.n - 1], c.quote) for c in sorted(cited, key=lambda c: c.n)]
    answer = Answer(question=question, text=text, citations=citations, passages=passages, raw_text=raw_text, **timings)  # type: ignore[arg-type]
    return answer_first(question, answer, hits) if short else answer


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


# ---- reading passages one at a time: candidates and the choice among them ----

NONE_WORDS = ("なし", "無し", "ありません", "ない")
_MARKERS = re.compile(r"\[\s*\d+(?:\s*[,、]\s*\d+)*\s*\]")
_OFFERS_CHOICE = re.compile(r"どちら|どっち|それとも|[?？].*[?？]")


@dataclass(frozen=True)
class Candidate:
    """What one reading of passage n offers as the answer, and whether the checks let it through."""

    n: int  # the passage read (1 = best hit)
    phrase: str  # the answer phrase, cleaned ("" when the reading found none)
    reason: str = ""  # why it is rejected ("" when accepted)
    quote: str = ""  # the sentence of the passage (or its title) that holds the phrase
    coverage: float = 0.0  # share of the question's content words in that sentence (and title)
    said: str = ""  # the sentence of a one-prompt answer it comes from, as the model wrote it (with its markers)

    @property
    def accepted(self) -> bool:
        return bool(self.phrase) and not self.reason


def clean_reading(raw: str, question: str = "") -> str:
    """The phrase a reading offers: first line, without a 「答え:」 label, markers, quotes or a restated question."""
    text = unicodedata.normalize("NFKC", raw).strip()
    text = text.split("\n", 1)[0].strip()
    text = _LEADING_LABEL.sub("", text)
    text = _MARKERS.sub("", text).strip()
    if not text or is_refusal(text) or text.strip("。.「」 ") in NONE_WORDS:
        return ""
    phrase = answer_phrase(text, question)
    return phrase.strip().rstrip("。.")


_BARE_NUMBER = re.compile(r"[\d,.]+|[〇一二三四五六七八九十百千万億兆]+")
_UNITS = sorted({*COUNTERS, "年", "月", "日", "時", "分", "秒", "歳", "%", "パーセント"}, key=len, reverse=True)


def _with_unit(phrase: str, sentence: str) -> str:
    """A bare number completed with the counter or unit the sentence writes right after it."""
    if not _BARE_NUMBER.fullmatch(phrase):
        return phrase
    text = unicodedata.normalize("NFKC", sentence)
    at = text.find(phrase)
    if at < 0:
        return phrase
    rest = text[at + len(phrase) :]
    return phrase + next((u for u in _UNITS if rest.startswith(u)), "")


def judge(question: str, raw: str, n: int, hits: Sequence[Hit], *, weigh_evidence: bool = True) -> Candidate:
    """Check one reading of passage n: is its phrase in that passage, of the kind asked, and about the question?

    weigh_evidence=False skips the answerability decision (for an answer that already passed it).
    """
    phrase = clean_reading(raw, question)
    if not phrase:
        return Candidate(n=n, phrase="", reason="the reading found no answer")
    if span_norm(phrase) in span_norm(question) and not _OFFERS_CHOICE.search(question):
        # 「荒梅雨あるいは何と呼ぶか」 -> 「荒梅雨」: the question's own words are never what it asks for,
        # unless it offers the choices (「長い？短い？」).
        return Candidate(n=n, phrase=phrase, reason=f"{phrase!r} only repeats the question")
    chunk = hits[n - 1].chunk
    titled = with_title(chunk.title, chunk.text)
    quote = holding_sentence(phrase, chunk.title, chunk.text)
    if quote:  # copied word for word: a bare number gets the unit the passage writes after it (15 -> 15種類)
        phrase = _with_unit(phrase, quote)
    else:
        short = len(span_norm(phrase)) <= MAX_SPAN_CHARS and not _INFLECTED.search(phrase)
        if short and not phrase_found(phrase, [titled]):
            return Candidate(n=n, phrase=phrase, reason=f"passage {n} does not contain {phrase!r} itself")
        if not short and support(phrase, titled, question=question) < MIN_SUPPORT:
            return Candidate(n=n, phrase=phrase, reason=f"passage {n} does not support {phrase!r}")
    if why := misfit(question, phrase):
        return Candidate(n=n, phrase=phrase, reason=why)
    bar = answerability.threshold(has_logprobs=False) if weigh_evidence else 0
    if bar > 0:
        ev = answerability.evidence(question, [chunk.text], [h.chunk.text for h in hits], [])
        if (p := answerability.confidence(ev, has_logprobs=False)) < bar:
            return Candidate(n=n, phrase=phrase, reason=f"the evidence is weak (answerability {p:.2f} < {bar})")
    if not quote:
        quote = quote_span(phrase, chunk.text, question=question)
    terms = answerability.question_terms(question)
    cov = answerability.coverage(terms, with_title(chunk.title if quote == chunk.title else "", quote))
    return Candidate(n=n, phrase=phrase, quote=quote, coverage=cov)


_FIRST_MARKER = re.compile(r"\[\s*(\d+)")


_CITED_SENTENCE = re.compile(r"[^。！？\n]+?(?:\[\d+\])+[。！？]?")


def prompt_candidate(question: str, answer: Answer, hits: Sequence[Hit]) -> Candidate:
    """The one-prompt answer as a candidate: of its cited sentences, the one about what was asked.

    Each sentence's phrase is judged against the passage it cites; the accepted one whose
    supporting sentence covers most of the question's words wins (the first on a tie): a model
    that writes a sentence of background before the answer is not shown the background.
    """
    if answer.refused:
        return Candidate(n=0, phrase="", reason=answer.refusal_reason or "the model found no answer in the passages")
    judged = []
    for m in _CITED_SENTENCE.finditer(answer.text):
        n = int(_FIRST_MARKER.search(m.group(0)).group(1))  # type: ignore[union-attr]
        judged.append(replace(judge(question, m.group(0), n, hits, weigh_evidence=False), said=m.group(0).strip()))
    accepted = [c for c in judged if c.accepted]
    if accepted:
        return max(accepted, key=lambda c: c.coverage)
    return judged[0] if judged else Candidate(n=0, phrase="", reason="no passage supports the answer")


# A candidate whose sentence holds this share of the question's content words settles the question:
# the passages after it are not read. Chosen on the tuning half (eval/readings.py; bench/README.md):
# the first accepted reading alone was right on 0.75 of jsquad-tune, the best-covered one on 0.82,
# and stopping at 0.75 kept 0.82 at a third of the reading time.
SETTLED_COVERAGE = 0.75


def settles(candidate: Candidate) -> bool:
    """True if no further passage needs reading: accepted, in a sentence about what was asked."""
    return candidate.accepted and candidate.coverage >= SETTLED_COVERAGE


def choose(candidates: Sequence[Candidate]) -> Candidate | None:
    """The candidate to show: the first that settles the question in rank order, else the best-covered accepted one."""
    if settled := next((c for c in candidates if settles(c)), None):
        return settled
    accepted = [c for c in candidates if c.accepted]
    return max(accepted, key=lambda c: (c.coverage, -c.n)) if accepted else None


def _is_span(phrase: str) -> bool:
    """A name, number or date (shown as the answer itself), not a clause in the model's words."""
    return len(span_norm(phrase)) <= MAX_SPAN_CHARS and not _INFLECTED.search(phrase)


def answer_text(candidate: Candidate) -> str:
    """What the person reads first: the phrase and its passage's number; a clause ends as a sentence."""
    if _is_span(candidate.phrase):
        return f"{candidate.phrase}[{candidate.n}]"
    return f"{candidate.phrase}[{candidate.n}]。"


def answer_from_readings(
    question: str,
    hits: Sequence[Hit],
    candidates: Sequence[Candidate],
    raw_texts: Sequence[str],
    **timings: float | int,
) -> Answer:
    """The Answer for passages read one at a time: the chosen candidate with its passage, or the refusal."""
    passages = [_citation(n, hit) for n, hit in enumerate(hits, start=1)]
    raw = "\n".join(f"[{c.n}] {text.strip()}" for c, text in zip(candidates, raw_texts, strict=True))
    chosen = choose(candidates)
    if chosen is None:
        reasons = "; ".join(f"[{c.n}] {c.reason}" for c in candidates) or "no passage was found"
        return _refusal(question, passages, raw, reasons, timings)
    citation = _citation(chosen.n, hits[chosen.n - 1], chosen.quote)
    return Answer(
        question=question,
        text=answer_text(chosen),
        citations=[citation],
        passages=passages,
        raw_text=raw,
        **timings,  # type: ignore[arg-type]
    )


REASON_SENTENCES = 2  # a why/how answer: at most this many sentences


def answer_first(question: str, answer: Answer, hits: Sequence[Hit]) -> Answer:
    """The checked one-prompt answer as a careful reader gives it: the answer first, short, with its source.

    A question that asks for a thing gets the phrase that answers it and its passage, 「スジャ[1]」,
    when that phrase is a span of the passage (a name, number, date); else the one sentence of the
    answer about what was asked, as written. A why/how question gets at most two sentences. The
    cited passage's quote is the sentence (or the title) holding the phrase. When no sentence's
    phrase passes the checks on its own (it only repeats the question, its passage lacks it), the
    checked answer stays as the model wrote it: this step never refuses (measured: refusing there
    raised false refusals on the JSQuAD report half from 0.057 to 0.103).
    """
    if answer.refused:
        return answer
    if asks_reason(question):
        kept = [m.group(0).strip() for m in _CITED_SENTENCE.finditer(answer.text)][:REASON_SENTENCES]
        text = "".join(kept) or answer.text
        numbers = {int(n) for n in re.findall(r"\[(\d+)\]", text)}
        citations = [c for c in answer.citations if c.n in numbers] or answer.citations
        return replace(answer, text=text, citations=citations)
    chosen = prompt_candidate(question, answer, hits)
    if not chosen.accepted:  # no phrase of it passes on its own: the checked sentences stay, nothing is refused
        return answer
    chunk = hits[chosen.n - 1].chunk
    quote = chosen.quote
    if not _is_span(chosen.phrase) and (span := typed_span(question, chosen.phrase)):
        if held := holding_sentence(span, chunk.title, chunk.text):  # 「2026年4月1日に…下落した」 asked いつ
            chosen, quote = replace(chosen, phrase=span), held
    if _is_span(chosen.phrase):
        text = f"{as_written(chosen.phrase, quote) if quote else chosen.phrase}[{chosen.n}]"
    else:  # the sentence as the model wrote it, citing the passage that holds its phrase
        body = _MARKERS.sub("", chosen.said).rstrip()
        stem = body.rstrip("。！？!?")
        text = f"{stem}[{chosen.n}]{body[len(stem) :]}"
    citation = _citation(chosen.n, hits[chosen.n - 1], quote)
    return replace(answer, text=text, citations=[citation])


def wants_phrase(question: str, answer: Answer) -> bool:
    """True if a question for a thing got a clause: the model is asked once more for the phrase alone."""
    if answer.refused or not answer.citations or asks_reason(question):
        return False
    return not _is_span(_MARKERS.sub("", answer.text).strip().rstrip("。"))


def trim_question_words(phrase: str, question: str) -> str:
    """The phrase without the question's own words at its start, or actions of the question at its end.

    「要衝スジャ奪還」 asked 「…奪還を目指している要衝の町は」 -> 「スジャ」. Only a name or a figure is cut
    out of a compound: what is left must hold a proper noun, a number or a word in katakana or
    Latin letters. A term of common nouns stays whole (「天体暦」, 「植物病理学」, 「減圧蒸留」 are not
    「暦」, 「病理学」, 「減圧」), as does a name whose head is the kind asked (「東京大学」 for 「どの大学」):
    only a trailing action word (奪還, 攻撃, サ変 nouns) goes, and nothing is trimmed to nothing.
    """
    from rag.lexical import words

    asked = span_norm(question)
    parts = words(phrase)
    while len(parts) > 1 and span_norm(parts[0][0]) in asked and parts[0][1] in ("名詞", "接頭辞", "接尾辞"):
        parts = parts[1:]
    while len(parts) > 1 and span_norm(parts[-1][0]) in asked and parts[-1][3] == "サ変可能":
        parts = parts[:-1]
    rest = "".join(w for w, *_ in parts)
    if span_norm(rest) in asked:  # 「東京大学」 for 「東京にある大学」 is not 「大学」
        return phrase
    named = any(p[2] == "固有名詞" for p in parts) or _NAME_CHARS.search(rest)
    return rest if named and parts[0][1] in ("名詞", "接頭辞") else phrase  # not 「暦」, 「のハイマース」


# What a name or figure cut out of a compound holds besides proper nouns: digits, katakana, Latin letters.
_NAME_CHARS = re.compile(r"[0-9０-９A-Za-zＡ-Ｚａ-ｚ\u30a1-\u30fa]")


def with_phrase(question: str, answer: Answer, reply: str, hits: Sequence[Hit]) -> Answer:
    """The answer as 「phrase[n]」 when the model's reply to PHRASE_FOLLOW_UP names a phrase it can stand for.

    The phrase must be a span (a name, number, date), not the question's own words, of the kind
    asked, and held word for word by a sentence (or the title) of a passage: the one the answer
    cites, else the best-ranked that holds it, which the new answer cites. Else the answer stays.
    Chosen on the tuning half: the reply found only in a passage (not in the answer's own words)
    was right more often than the clause it replaces (「地下生物圏」 for a sentence around it).
    """
    phrase = clean_reading(reply, question)
    phrase = trim_question_words(phrase, question) if phrase else ""
    if not phrase or not _is_span(phrase) or span_norm(phrase) in span_norm(question) or misfit(question, phrase):
        return answer
    cited = answer.citations[0].n
    for n in [cited, *(m for m in range(1, len(hits) + 1) if m != cited)]:
        chunk = hits[n - 1].chunk
        if held := holding_sentence(phrase, chunk.title, chunk.text):
            if _in_list(phrase, held):  # 「中央委員会」 of 「中央委員会および党大会」: the answer's own words say more
                return answer
            phrase = as_written(_with_unit(phrase, held), held)
            return replace(answer, text=f"{phrase}[{n}]", citations=[_citation(n, hits[n - 1], held)])
    return answer


_LIST_JOINER = re.compile(r"^(?:および|及び|並びに|ならびに|や|・)")


def _in_list(phrase: str, sentence: str) -> bool:
    """Whether the sentence goes on from the phrase to another item of a list (「AおよびB」, 「A・B」)."""
    text = unicodedata.normalize("NFKC", sentence)
    at = text.find(unicodedata.normalize("NFKC", phrase))
    return at >= 0 and bool(_LIST_JOINER.match(text[at + len(unicodedata.normalize("NFKC", phrase)) :]))


_QUALIFIER = re.compile(r"(?:約|およそ|計|合計|最大|最高|最低|少なくとも|わずか)$")
# A conversion of an amount (「(約1600億円)」) or a reading in kana (「(きょうほう)」); not another fact (「(1年前は21.7%)」).
_GLOSS = re.compile(r"^[(（](?:(?:約|およそ)?[\d,.]+(?:兆|億|万|千)*(?:円|ドル|ユーロ|ポンド|元|ウォン)|[\u3040-\u309f]+)[)）]")


def as_written(phrase: str, sentence: str) -> str:
    """The phrase with what the sentence writes right around it: 「11億ドル」 -> 「約11億ドル(約1600億円)」.

    A qualifier right before it (約, 最大, 少なくとも …) and a parenthesis right after it that
    converts an amount or gives a reading belong to the answer; the reader sees the source's words.
    """
    text = unicodedata.normalize("NFKC", sentence)
    at = text.find(unicodedata.normalize("NFKC", phrase))
    if at < 0:
        return phrase
    end = at + len(unicodedata.normalize("NFKC", phrase))
    before = _QUALIFIER.search(text[:at])
    after = _GLOSS.match(text[end:])
    return (before.group(0) if before else "") + text[at:end] + (after.group(0) if after else "")
