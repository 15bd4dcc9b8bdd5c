"""Check an answer against its passages and put the [n] markers where the text supports them. Pure functions."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from difflib import SequenceMatcher

from rag.answertype import answer_phrase

REFUSAL_TEXT = "資料には記載がありません。"
# A sentence is supported by a passage when this share of its new information (the character
# bigrams it does not merely repeat from the question) appears in the passage.
MIN_SUPPORT = 0.5

_MARKER = re.compile(r"\[\s*(\d+(?:\s*[,、]\s*\d+)*)\s*\]")
_FULLWIDTH = str.maketrans("［］０１２３４５６７８９，", "[]0123456789,")
_SENTENCE = re.compile(r"[^。！？!?\n]+[。！？!?]*(?:\s*\[\d+\])*")
_HIRAGANA = re.compile(r"[\u3040-\u309f]")
_PUNCT = re.compile(r"[\s、。，．・「」『』（）()\[\]【】!?！？:：\"'“”‘’…ー―-]")


@dataclass(frozen=True)
class Cited:
    """One cited passage: its number and the span of it that supports the answer."""

    n: int
    quote: str


def _norm(text: str) -> str:
    return _PUNCT.sub("", unicodedata.normalize("NFKC", text))


def _bigrams(text: str) -> set[str]:
    t = _norm(text)
    return {t[i : i + 2] for i in range(len(t) - 1)} or ({t} if t else set())


def _content(text: str) -> tuple[set[str], set[str]]:
    """Characters and bigrams that carry content: hiragana alone is grammar (です, ます, の)."""
    t = _norm(text)
    chars = {ch for ch in t if not _HIRAGANA.match(ch)}
    grams = {t[i : i + 2] for i in range(len(t) - 1) if not (_HIRAGANA.match(t[i]) and _HIRAGANA.match(t[i + 1]))}
    return chars, grams


# Numbers with their unit character, katakana names and Latin words: what a small model invents
# when the sources are silent ("1時間", "10億円", "ロスアトム").
_KEY_TOKEN = re.compile(r"\d+(?:\.\d+)?[^\s\d.,、。・()「」『』\[\]]?|[\u30a1-\u30fa\u30fc]{3,}|[a-z]{2,}")
_ENUMERATOR = re.compile(r"^\s*\d+[.)]\s", re.MULTILINE)  # "1. " of a list is not a claim


def _flat(text: str) -> str:
    return re.sub(r"(?<=\d),(?=\d)", "", unicodedata.normalize("NFKC", text)).lower()


def key_tokens(text: str) -> set[str]:
    """The numbers (with the unit character after them), katakana words of 3+ characters and Latin words."""
    return set(_KEY_TOKEN.findall(_ENUMERATOR.sub("", _flat(text))))


def invented(sentence: str, passage: str, *, question: str = "") -> set[str]:
    """Key tokens of the sentence found neither in the passage nor in the question.

    "1時" is not found in "11時": a number must start where the passage's number starts.
    """
    have = re.sub(r"\s", "", _flat(passage + "\n" + question))
    return {tok for tok in key_tokens(sentence) if not re.search(r"(?<![\d.])" + re.escape(tok), have)}


def support(sentence: str, passage: str, *, question: str = "") -> float:
    """How much of the sentence's new content (not copied from the question) the passage contains, 0..1.

    Mean of character and bigram coverage: characters forgive a changed word order,
    bigrams tell 東京 from a passage that merely has 東 and 京 somewhere. A number or name
    the passage does not contain makes the support 0: "1時間" is not supported by a passage
    about the same meeting that never says how long it was.
    """
    if invented(sentence, passage, question=question):
        return 0.0
    chars, grams = _content(sentence)
    asked_chars, asked_grams = _content(question)
    novel_chars, novel_grams = (chars - asked_chars) or chars, (grams - asked_grams) or grams
    if not novel_chars or not novel_grams:
        return 0.0
    have_chars, have_grams = _content(passage)
    return 0.5 * len(novel_chars & have_chars) / len(novel_chars) + 0.5 * len(novel_grams & have_grams) / len(
        novel_grams
    )


def quote_span(sentence: str, passage: str, *, question: str = "") -> str:
    """The sentence of the passage that holds the answer's new information (what the reader should check)."""
    a, b = unicodedata.normalize("NFKC", sentence), unicodedata.normalize("NFKC", passage)
    asked = _bigrams(question)
    best, best_score = None, 0.0
    for block in SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks():
        if block.size < 2:
            continue
        grams = _bigrams(a[block.a : block.a + block.size])
        score = len(grams - asked) + 0.01 * len(grams)  # new information first, then length
        if score > best_score:
            best, best_score = block, score
    if best is None:
        return ""
    for m in re.finditer(r"[^。！？\n]+[。！？]?", b):
        if m.start() <= best.b < m.end():
            return m.group(0).strip()
    return b[best.b : best.b + best.size]


# The instructed refusal and the near variants a small model writes instead of it.
_REFUSALS = re.compile(r"記載がありません|記載されていません|書かれていません|見当たりません|情報はありません|わかりません|分かりません")


def is_refusal(text: str) -> bool:
    """True if the model said the sources do not contain the answer."""
    return bool(_REFUSALS.search(unicodedata.normalize("NFKC", text)))


def with_title(title: str, text: str) -> str:
    """A passage as the model and the reader see it: under its article title."""
    return f"{title}\n{text}" if title else text


def attach_citations(
    answer: str, passages: list[str], *, question: str = "", titles: list[str] | None = None
) -> tuple[str, list[Cited]]:
    """Rewrite the answer so each sentence cites the passage that supports it, and only such a passage.

    A marker the model wrote is kept if its passage supports the sentence, moved to the passage
    that does if not, and dropped if none does; a sentence without a marker gets one when a
    passage supports it. The sentence that states the answer phrase cites, among the passages
    that support it, those holding the phrase itself when there are any (the model often numbers
    a passage on the same topic). A passage's article title (titles) counts as part of it; quotes
    come from the passage text. Returns the new text and the cited passages in first-cited order.
    """
    text = _MARKER.sub(
        lambda m: "".join(f"[{x.strip()}]" for x in re.split(r"[,、]", m.group(1))),
        answer.translate(_FULLWIDTH).strip(),
    )
    phrase = span_norm(answer_phrase(text, question)).strip("、。,.")
    titled = [with_title(t, p) for t, p in zip(titles, passages, strict=True)] if titles else passages
    holding = {n for n, p in enumerate(titled, start=1) if phrase and phrase_found(phrase, [p])}
    cited: dict[int, Cited] = {}
    heads = list(titles) if titles else [""] * len(passages)
    lines = [_cite_line(line, passages, titled, heads, question, cited, phrase, holding) for line in text.split("\n")]
    return "\n".join(lines).strip(), list(cited.values())


def _cite_line(
    text: str,
    passages: list[str],
    titled: list[str],
    titles: list[str],
    question: str,
    cited: dict[int, Cited],
    phrase: str,
    holding: set[int],
) -> str:
    out: list[str] = []
    for m in _SENTENCE.finditer(text):
        chunk = m.group(0)
        body = _MARKER.sub("", chunk).rstrip()
        claimed = [int(x) for g in _MARKER.findall(chunk) for x in re.split(r"[,、]", g)]
        if not _norm(body) or is_refusal(body):
            out.append(body)
            continue
        scores = {n: support(body, titled[n - 1], question=question) for n in range(1, len(passages) + 1)}
        pool = [n for n in scores if scores[n] >= MIN_SUPPORT]
        if phrase and phrase in span_norm(body) and (with_phrase := [n for n in pool if n in holding]):
            pool = with_phrase
        keep = [n for n in dict.fromkeys(claimed) if n in pool]
        if not keep and pool:
            keep = [max(pool, key=lambda n: scores[n])]
        for n in keep:
            # The sentence (or the title) holding the answer phrase is what the reader should check;
            # a sentence merely sharing words with the answer is the fallback.
            held = holding_sentence(phrase, titles[n - 1], passages[n - 1]) if phrase and phrase in span_norm(body) else ""
            cited.setdefault(n, Cited(n=n, quote=held or quote_span(body, passages[n - 1], question=question)))
        # Markers go before the closing 。 as Japanese text puts notes: 「…スジャです[1]。」
        stem = body.rstrip("。！？!?")
        out.append(stem + "".join(f"[{n}]" for n in keep) + body[len(stem) :])
    return "".join(out)


# An answer phrase up to this long is a span the passage should hold word for word (a name, a
# number, a date); a longer one is an explanation, judged by support() sentence by sentence.
MAX_SPAN_CHARS = 20
# Two hiragana in a row (された, している, という) make a phrase a clause the model wrote in its own
# words, not a name or number to be found verbatim; a lone の or ヶ inside a name is fine.
_INFLECTED = re.compile(r"[\u3040-\u309f]{2,}")
_PAREN = re.compile(r"[(（][^()（）]*[)）]")
_LEAD = re.compile(r"^(?:約|およそ|計|合計|\d{4}年(?=\d{1,2}月))")


def span_norm(text: str) -> str:
    """Text as a span is compared: NFKC, lower case, no spaces, quotes or thousands separators."""
    t = re.sub(r"(?<=\d),(?=\d)", "", unicodedata.normalize("NFKC", text)).lower()
    return re.sub(r"[\s「」『』\"'“”]", "", t)


def phrase_found(phrase: str, passages: list[str]) -> bool:
    """True if the passages hold the answer phrase itself, not only its words.

    「スジャ州」 is not in a passage that says 「スジャ」 and 「州」 apart. Lenient where a reader would
    be: an added 約 or year, a parenthetical (「11億ドル(約1600億円)」), list items found one by one.
    """
    phrase = span_norm(phrase).strip("、。,.")
    if not phrase or len(phrase) > MAX_SPAN_CHARS or _INFLECTED.search(phrase):
        return True
    have = span_norm("\n".join(passages))
    for part in re.split(r"[、,・]|および|及び", phrase):
        part = part.strip()
        if not part:
            continue
        forms = {part, _PAREN.sub("", part), _LEAD.sub("", part), _LEAD.sub("", _PAREN.sub("", part))}
        if not any(f and f in have for f in forms):
            return False
    return True


_SENTENCE_OF = re.compile(r"[^。！？\n]+[。！？]?")


def holding_sentence(phrase: str, title: str, text: str) -> str:
    """The sentence of the passage that holds the phrase word for word, else the title if it does, else ""."""
    want = span_norm(phrase)
    for m in _SENTENCE_OF.finditer(text):
        if want and want in span_norm(m.group(0)):
            return m.group(0).strip()
    if want and want in span_norm(title):
        return title
    return ""
