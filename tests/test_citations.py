from rag.citations import attach_citations, invented, is_refusal, support

KURSK = "ウクライナ軍は昨年8月に越境攻撃を開始。ロシア軍は西部クルスク州で攻勢を強め、要衝スジャ奪還に向けて制圧地域を広げてきた。"
AID = "米国はウクライナへの軍事支援と情報共有を中断した。"
Q = "ロシア軍がクルスク州で奪還を目指している要衝の町はどこですか?"


def test_unmarked_answer_gets_the_passage_that_supports_it() -> None:
    text, cited = attach_citations("要衝の町はスジャです。", [AID, KURSK], question=Q)
    assert text == "要衝の町はスジャです[2]。"
    [c] = cited
    assert c.n == 2 and "要衝スジャ奪還" in c.quote and c.quote in KURSK


def test_wrong_marker_is_moved_to_the_supporting_passage() -> None:
    text, cited = attach_citations("要衝の町はスジャです[1]。", [AID, KURSK], question=Q)
    assert text == "要衝の町はスジャです[2]。" and [c.n for c in cited] == [2]


def test_unsupported_sentence_gets_no_citation() -> None:
    text, cited = attach_citations("首都は東京です[1]。", [AID, KURSK], question="日本の首都は?")
    assert text == "首都は東京です。" and cited == []


def test_each_sentence_cites_its_own_passage_and_full_width_markers_are_read() -> None:
    text, cited = attach_citations(
        "スジャの奪還を目指しています［２］。米国は軍事支援を中断した［1, 2］。", [AID, KURSK], question=Q
    )
    assert text == "スジャの奪還を目指しています[2]。米国は軍事支援を中断した[1]。"
    assert [c.n for c in cited] == [2, 1]


def test_support_ignores_words_copied_from_the_question() -> None:
    echo = "ロシア軍がクルスク州で奪還を目指している要衝の町は東京です。"
    assert support(echo, KURSK, question=Q) < 0.5
    assert support("要衝の町はスジャです。", KURSK, question=Q) >= 0.5


def test_refusal_is_recognised() -> None:
    assert is_refusal("資料には記載がありません。")
    assert not is_refusal("スジャです。")


def test_a_number_or_name_the_passage_lacks_is_not_supported() -> None:
    meeting = "ゼレンスキー大統領は20日、キーウでケロッグ特使と会談した。会見は11時に始まった。"
    q = "会談は何時間続きましたか?"
    assert invented("会談は20日に1時間続きました。", meeting, question=q) == {"1時"}  # "11時" is not "1時間"
    assert support("会談は20日に1時間続きました。", meeting, question=q) == 0.0
    assert support("会談は20日にキーウで行われました。", meeting, question=q) >= 0.5
    assert invented("所有者はロスアトムです。", meeting) == {"ロスアトム"}
    assert invented("1. 会談は20日です。", meeting) == set()  # a list number is not a claim
    assert invented("総額は1,750億ドル", "総額1750億ドルの支援") == set()


def test_the_cited_passage_must_hold_the_answer_phrase_itself() -> None:
    from rag.citations import phrase_found

    passage = "ロシア軍は西部クルスク州で攻勢を強め、要衝スジャ奪還に向けて制圧地域を広げた。節約額は約11億ドル(約1600億円)。"
    assert phrase_found("スジャ", [passage])
    assert not phrase_found("スジャ州", [passage])  # its words are there, the phrase is not
    assert phrase_found("11億ドル", [passage]) and phrase_found("約11億ドル(約1600億円)", [passage])
    assert phrase_found("11億ドル（約1600億円）", [passage])
    assert phrase_found("クルスク州、スジャ", [passage]) and not phrase_found("クルスク州、ハリコフ", [passage])
    assert phrase_found("2025年3月18日", ["会談は3月18日に行われた。"])  # a year the article date implies
    assert not phrase_found("3月19日", ["会談は3月18日に行われた。"])
    assert phrase_found("制圧地域を広げてきた", [passage])  # a clause in the model's words: support() judges it
    long_answer = "ロシア軍は攻勢を強めて制圧地域を広げ、ウクライナ軍は撤退を迫られている"
    assert phrase_found(long_answer, [passage])  # an explanation is judged sentence by sentence elsewhere


def test_the_answer_cites_the_passage_that_holds_its_phrase_over_one_on_the_same_topic() -> None:
    question = "町の東にある山は何ですか?"
    topic = "町の東には高い山があり、尾根が続く。高尾の山です。"  # supports the words, not 「高尾山」
    holder = "高尾山は町の東にそびえる。"
    text, cited = attach_citations("町の東にある山は高尾山です[1]。", [topic, holder], question=question)
    assert text == "町の東にある山は高尾山です[2]。"
    assert [c.n for c in cited] == [2] and cited[0].quote == holder
    # With no passage holding the phrase, the supported marker the model wrote stays.
    text, _ = attach_citations("町の東にある山は高尾の山です[1]。", [topic, "町の西に川がある。"], question=question)
    assert text.endswith("[1]。")


def test_the_article_title_counts_as_part_of_its_passage() -> None:
    from rag.types import Chunk, Hit
    from rag.verdict import make_answer

    # Encyclopedia-style text leaves the subject to the title: the model reads it there, and so does
    # the reader next to the quote.
    question = "ユーラシア大陸の北西部にあって、アジアの西に位置する地域はどこ?"
    text = "は、ユーラシア大陸の北西部にある地域。アジアの西に位置する。"
    hits = [Hit(Chunk("d0/0", "d0", "a.txt", "ヨーロッパ", text, 0), 0.9)]
    answer = make_answer(question, "アジアの西に位置する地域はヨーロッパです[1]。", hits, short=True)
    assert not answer.refused and answer.text == "ヨーロッパ[1]"  # the answer first
    assert answer.citations[0].title == "ヨーロッパ"
    assert answer.citations[0].quote == "ヨーロッパ"  # what the reader opens holds the answer: the title
    full = make_answer(question, "アジアの西に位置する地域はヨーロッパです[1]。", hits)
    assert full.text == "アジアの西に位置する地域はヨーロッパです[1]。"
    # A name in neither the title nor the text is still not supported.
    assert make_answer(question, "アジアの西に位置する地域はオセアニアです[1]。", hits).refused


def test_a_number_stated_only_in_the_title_is_quoted_from_the_title() -> None:
    from rag.citations import attach_citations

    passage = "世論調査でゼレンスキー氏の再選を願う国民は少数だった。トランプ政権は同氏が主張する57%の支持率を疑問視している。"
    title = "ゼレンスキー氏の再選を願う国民の割合は15.9%"
    _, cited = attach_citations(
        "15.9%[1]", [passage], question="ゼレンスキー氏の再選を願う国民の割合は何%ですか?", titles=[title]
    )
    assert [c.n for c in cited] == [1] and cited[0].quote == title


def test_the_quote_is_the_sentence_holding_the_answer_not_a_neighbour() -> None:
    from rag.citations import attach_citations

    passage = "ロシア軍は攻勢を強めた。要衝スジャ奪還に向けて制圧地域を広げてきた。北朝鮮の兵士も投入された。"
    _, cited = attach_citations("要衝の町はスジャです[1]。", [passage], question="要衝の町はどこですか?")
    assert cited[0].quote == "要衝スジャ奪還に向けて制圧地域を広げてきた。"
