"""The fitted answerability decision (rag/answerability.py) with the committed weights."""

from rag import answerability
from rag.answerability import Evidence
from rag.types import Chunk, Hit
from rag.verdict import make_answer

PASSAGE = "京都市によると、秋の行楽シーズンの嵐山には1日あたり約5万人の観光客が訪れた。"
OTHER = "札幌の雪まつりでは大雪像が150基並んだ。"


def _hits(*texts: str) -> list[Hit]:
    return [Hit(Chunk(f"d{i}/0", f"d{i}", "a.txt", "題", t, 0), score=0.9 - i / 10) for i, t in enumerate(texts)]


def test_the_decision_is_on_and_both_signal_sets_are_fitted() -> None:
    assert answerability.threshold(has_logprobs=True) > 0
    assert answerability.threshold(has_logprobs=False) > 0
    assert all(w > 0 for w in answerability.WEIGHTS[:2])  # more question words in the passages: more likely right
    assert not any(answerability.WEIGHTS_NO_LOGPROBS[2:])  # log-probabilities are ignored when the backend has none


def test_more_evidence_never_lowers_the_confidence() -> None:
    weak = Evidence(cited_coverage=0.2, best_coverage=0.2, mean_logprob=-1.5, min_logprob=-4.0)
    strong = Evidence(cited_coverage=0.9, best_coverage=0.9, mean_logprob=-0.05, min_logprob=-0.5)
    for has in (True, False):
        assert answerability.confidence(strong, has_logprobs=has) > answerability.confidence(weak, has_logprobs=has)
        assert answerability.confidence(strong, has_logprobs=has) >= answerability.threshold(has_logprobs=has)
        assert answerability.confidence(weak, has_logprobs=has) < answerability.threshold(has_logprobs=has)


def test_a_supported_answer_about_what_was_asked_is_kept() -> None:
    answer = make_answer("嵐山には1日あたり何人の観光客が訪れた?", "約5万人です[1]。", _hits(PASSAGE, OTHER),
                         logprobs=[-0.01, -0.05, -0.02, -0.1])
    assert not answer.refused and "約5万人" in answer.text


def test_an_unsure_answer_from_a_passage_about_something_else_is_refused(monkeypatch) -> None:
    question, raw = "東京タワーの前には何が並んだ?", "大雪像です[1]。"
    hits, unsure = _hits(OTHER, PASSAGE), [-2.5, -3.0, -2.0, -4.0, -1.5]
    monkeypatch.setattr(answerability, "THRESHOLD", 0.0)
    assert not make_answer(question, raw, hits, logprobs=unsure).refused  # the rule checks let it through
    monkeypatch.undo()
    answer = make_answer(question, raw, hits, logprobs=unsure)
    assert answer.refused and "answerability" in answer.refusal_reason
