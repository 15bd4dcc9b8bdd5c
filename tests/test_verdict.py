"""The verdict on one reading of one passage: the phrase it offers, checked against that passage and the question."""

import pytest

from rag.types import Chunk, Hit
from rag.verdict import clean_reading, holding_sentence, judge

KURSK = "ロシア軍がクルスク州で奪還を目指している要衝の町はどこですか?"


def hit(text: str, title: str = "", source: str = "a.txt") -> Hit:
    return Hit(Chunk(chunk_id=source, doc_id=source, source=source, title=title, text=text, position=0), 1.0)


HITS = [
    hit("ロシア軍は要衝スジャ奪還に向けて一気に制圧地域を広げてきた。北朝鮮が派遣した兵士も投入した。", "クルスクでの攻勢"),
    hit(
        "世論調査でゼレンスキー氏の再選を願う国民は少数だった。トランプ政権は同氏が主張する57%の支持率を疑問視している。",
        "再選を願う国民の割合は15.9%",
        "b.txt",
    ),
]


@pytest.mark.parametrize(
    ("raw", "phrase"),
    [
        ("スジャ", "スジャ"),
        ("答え: スジャ [1]", "スジャ"),
        ("要衝の町は、スジャです。", "スジャ"),
        ("「スジャ」", "スジャ"),
        ("なし", ""),
        ("資料には記載がありません。", ""),
        ("", ""),
    ],
)
def test_a_reading_gives_the_phrase_without_label_marker_quotes_or_restated_question(raw: str, phrase: str) -> None:
    assert clean_reading(raw, KURSK) == phrase


def test_a_phrase_written_in_the_passage_is_accepted_with_the_sentence_that_holds_it() -> None:
    c = judge(KURSK, "スジャ", 1, HITS)
    assert c.accepted and c.phrase == "スジャ" and c.n == 1
    assert c.quote == "ロシア軍は要衝スジャ奪還に向けて一気に制圧地域を広げてきた。"


def test_a_phrase_only_in_the_title_quotes_the_title() -> None:
    c = judge("ゼレンスキー氏の再選を願う国民の割合は何%ですか?", "15.9%", 2, HITS)
    assert c.accepted and c.quote == "再選を願う国民の割合は15.9%"


@pytest.mark.parametrize(
    ("question", "raw", "n"),
    [
        (KURSK, "クルスク州", 1),  # not written in the passage as such
        (KURSK, "スジャ", 2),  # written in another passage, not the one read
        ("ロシア軍が投入した兵士はどこの国が派遣しましたか?", "2025年3月", 1),  # a date for どこ; not in the passage either
        ("派遣された兵士は何人ですか?", "北朝鮮", 1),  # no count for 何人
    ],
)
def test_a_phrase_the_passage_does_not_hold_or_of_the_wrong_kind_is_rejected(question: str, raw: str, n: int) -> None:
    c = judge(question, raw, n, HITS)
    assert not c.accepted and c.reason


def test_holding_sentence_finds_the_phrase_across_width_and_commas() -> None:
    text = "売上高は１，２００億円だった。前年より増えた。"
    assert holding_sentence("1200億円", "", text) == "売上高は１，２００億円だった。"
    assert holding_sentence("3000億円", "", text) == ""


def test_a_phrase_that_only_repeats_the_question_is_rejected_unless_the_question_offers_choices() -> None:
    hits = [hit("梅雨末期の雨は荒梅雨、または暴れ梅雨と呼ばれる。東北地方の夏は北海道より短い。")]
    assert not judge("梅雨末期の雨を荒梅雨あるいは何と呼ぶか", "荒梅雨", 1, hits).accepted
    assert judge("梅雨末期の雨を荒梅雨あるいは何と呼ぶか", "暴れ梅雨", 1, hits).accepted
    assert judge("東北地方の夏は北海道よりも長い？短い？", "短い", 1, hits).accepted


def test_a_bare_number_gets_the_unit_the_passage_writes_after_it() -> None:
    hits = [hit("ヘルプセンターでは15種類以上の検索オプションが紹介されている。")]
    c = judge("何種類以上の検索オプションが紹介されている?", "15", 1, hits)
    assert c.accepted and c.phrase == "15種類"


def test_a_word_copied_from_the_passage_is_accepted_even_if_written_in_hiragana() -> None:
    hits = [hit("鹿児島県奄美群島では梅雨を「ながし」と呼ぶ。")]
    c = judge("鹿児島県奄美群島で梅雨を何という？", "ながし", 1, hits)
    assert c.accepted and c.quote == "鹿児島県奄美群島では梅雨を「ながし」と呼ぶ。"
