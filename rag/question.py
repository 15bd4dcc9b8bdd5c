"""The question as the pipeline reads it: cleaned and checked, and whether it follows up on earlier turns."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from rag.errors import QuestionError, QuestionTooLongError

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

