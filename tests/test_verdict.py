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


# ---- the answer first (answer_first, with_phrase) ----

KURSK_Q = "ロシア軍がクルスク州で奪還を目指している要衝の町はどこですか?"
KURSK_TEXT = (
    "ウクライナ軍は昨年8月に越境攻撃を開始した。ロシア軍は西部クルスク州で攻勢を強め、"
    "要衝スジャ奪還に向けて制圧地域を広げてきた。北朝鮮の兵士も投入された。"
)


def _answer(question: str, raw: str, texts: list[str], titles: list[str] | None = None):
    from rag.verdict import make_answer

    titles = titles or [""] * len(texts)
    hits = [Hit(Chunk(f"d{i}/0", f"d{i}", f"{i}.txt", t, x, 0), 0.9) for i, (t, x) in enumerate(zip(titles, texts))]
    return make_answer(question, raw, hits, short=True), hits


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("要衝の町は、スジャです[1]。", "スジャ[1]"),
        ("スジャ[1]", "スジャ[1]"),
        ("ロシア軍が奪還を目指している要衝の町はスジャです。", "スジャ[1]"),
    ],
)
def test_a_question_for_a_thing_gets_the_phrase_first_with_the_sentence_that_holds_it(raw: str, shown: str) -> None:
    answer, _ = _answer(KURSK_Q, raw, [KURSK_TEXT])
    assert answer.text == shown
    [c] = answer.citations
    assert "スジャ" in c.quote and c.quote in KURSK_TEXT and not c.quote.startswith("北朝鮮")


def test_the_sentence_about_the_question_is_kept_not_the_background_before_it() -> None:
    question = "何がない音楽は世界中にあるか?"
    text = "リズムの現れ方は民族や音楽のタイプによって様々である。拍や拍子のない音楽は、世界各地に見られる。"
    answer, _ = _answer(question, "リズムの現れ方は民族や音楽のタイプによって様々である[1]。拍や拍子のない音楽は、世界各地に見られる[1]。", [text])
    assert answer.text == "拍や拍子のない音楽は、世界各地に見られる[1]。"


def test_a_why_question_keeps_at_most_two_sentences() -> None:
    question = "なぜ路線バスが減便されるのですか?"
    text = "運転手の不足が続いている。会社は4月から路線バスを2割減らす。利用者は減っていない。"
    raw = "運転手の不足が続いているためです[1]。会社は4月から2割減らします[1]。利用者は減っていません[1]。"
    answer, _ = _answer(question, raw, [text])
    assert answer.text.count("。") == 2 and "運転手の不足" in answer.text


def test_a_date_asked_for_is_taken_out_of_a_clause_that_holds_one_date() -> None:
    question = "円相場が1ドル=163円まで急落したのはいつですか?"
    text = "円相場は2026年4月1日に1ドル=163円まで下落した。市場では介入への警戒が強まった。"
    answer, _ = _answer(question, "円相場が急落したのは、2026年4月1日に1ドル=163円まで下落した[1]。", [text])
    assert answer.text == "2026年4月1日[1]"
    assert answer.citations[0].quote == "円相場は2026年4月1日に1ドル=163円まで下落した。"


@pytest.mark.parametrize(
    ("phrase", "sentence", "written"),
    [
        ("11億ドル", "計画の中止により約11億ドル(約1600億円)の予算削減が可能", "約11億ドル(約1600億円)"),
        ("15.9%", "支持率は15.9%(1年前は21.7%)で2位", "15.9%"),  # another fact in the parenthesis stays out
        ("享保", "享保（きょうほう）は、日本の元号の一つ。", "享保(きょうほう)"),
        ("スジャ", "要衝スジャ奪還に向けて", "スジャ"),
    ],
)
def test_a_phrase_is_shown_with_the_qualifier_and_gloss_the_source_writes_around_it(
    phrase: str, sentence: str, written: str
) -> None:
    from rag.verdict import as_written

    assert as_written(phrase, sentence) == written


@pytest.mark.parametrize(
    ("phrase", "question", "trimmed"),
    [
        ("要衝スジャ奪還", KURSK_Q, "スジャ"),
        ("東京大学", "東京にある大学はどこですか?", "東京大学"),  # trimmed to nothing: kept whole
        ("早稲田大学", "どの大学の教授ですか?", "早稲田大学"),  # the kind asked stays the head of the name
        ("山田一郎氏", "祭りの実行委員長は誰ですか?", "山田一郎氏"),
        ("新市長田中花子", "新市長に選ばれたのは誰ですか?", "田中花子"),
        ("第3四半期", "どの四半期に赤字になりましたか?", "第3四半期"),
        # a term of common nouns is not cut to its head or its modifier
        ("天体暦", "天体の位置を日ごとに記した表を何と呼びますか?", "天体暦"),
        ("植物病理学", "植物の病気を研究する学問は何ですか?", "植物病理学"),
        ("減圧蒸留", "その工場ではどのような蒸留を使いますか?", "減圧蒸留"),
        ("ウクライナ軍のハイマース", "ウクライナ軍は何を使いましたか?", "ウクライナ軍のハイマース"),
    ],
)
def test_the_questions_own_words_are_trimmed_from_the_edges_of_a_phrase(phrase: str, question: str, trimmed: str) -> None:
    from rag.verdict import trim_question_words

    assert trim_question_words(phrase, question) == trimmed


def test_a_clause_is_replaced_by_the_phrase_the_model_names_only_when_the_passage_and_answer_hold_it() -> None:
    from rag.verdict import wants_phrase, with_phrase

    raw = "ロシア軍がクルスク州で奪還を目指している要衝の町は、要衝スジャ奪還に向けて制圧地域を広げてきた[1]。"
    answer, hits = _answer(KURSK_Q, raw, [KURSK_TEXT])
    assert wants_phrase(KURSK_Q, answer)
    shown = with_phrase(KURSK_Q, answer, "要衝スジャ奪還", hits)
    assert shown.text == "スジャ[1]" and "スジャ" in shown.citations[0].quote
    for reply in ("ハリコフ", "クルスク州", "資料には記載がありません。", "制圧地域を広げてきた"):
        assert with_phrase(KURSK_Q, answer, reply, hits) == answer  # not in the answer, the question's, or a clause
    short, _ = _answer(KURSK_Q, "スジャ[1]", [KURSK_TEXT])
    assert not wants_phrase(KURSK_Q, short)
    assert not wants_phrase("なぜ制圧地域を広げたのですか?", answer)


def test_a_reply_naming_one_item_of_a_list_does_not_replace_the_answer() -> None:
    from rag.verdict import with_phrase

    text = "新しい規則は、評議会および総会の承認を経て来月から施行される。"
    question = "新しい規則は何の承認を経て施行されますか?"
    answer, hits = _answer(question, "新しい規則は、評議会および総会の承認を経て施行されます[1]。", [text])
    assert with_phrase(question, answer, "評議会", hits) == answer
