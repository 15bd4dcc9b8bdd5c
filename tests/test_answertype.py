import pytest

from rag.answertype import answer_phrase, misfit

KURSK_Q = "ロシア軍がクルスク州で奪還を目指している要衝の町はどこですか?"


def test_the_answer_phrase_drops_markers_copula_and_the_restated_question() -> None:
    assert answer_phrase("要衝の町は、東部ルハンシク州です[2]。", KURSK_Q) == "東部ルハンシク州"
    assert answer_phrase("スジャです[1]。", KURSK_Q) == "スジャ"
    assert answer_phrase("「ATACMS」です。", "ミサイルは何ですか?") == "ATACMS"
    # A topic the question did not mention stays: it is part of the answer.
    assert (
        answer_phrase("ラトクリフ局長は情報共有の中断を認めた。", "誰の発言ですか?")
        == "ラトクリフ局長は情報共有の中断を認めた"
    )


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        (KURSK_Q, "要衝の町は、東部ルハンシク州です[2]。"),  # a 町 asked, a 州 given
        ("首都がある県はどこですか?", "東京都です。"),
        ("会談した人物は誰ですか?", "キーウ州です。"),  # 誰 answered with a place
        ("発表したのは誰ですか?", "2025年3月です。"),
        ("攻撃が始まったのはいつですか?", "クルスク州です。"),  # いつ needs a date
        ("兵士は何人派遣されましたか?", "北朝鮮です。"),  # 何人 needs people counted
        ("ドローンは何機撃墜されましたか?", "パンツィリです。"),
        ("会談は何時間続きましたか?", "20日に行われました。"),
        ("節約額はいくらですか?", "ロシア側です。"),
        ("支持率は何%ですか?", "ザルジニー氏です。"),
        ("本部はどこにありますか?", "2024年です。"),
        ("回答者数は何人ですか?", "回答者数は15.9%でした。"),
        ("ブダノフ氏は何歳ですか?", "2016年に暗殺された。"),
        ("どの時期に梅雨が明けますか?", "北海道です。"),  # どの時期 asks when
        ("条約が結ばれたのは何年何月ですか?", "パリです。"),
    ],
)
def test_an_answer_of_another_kind_does_not_fit(question: str, answer: str) -> None:
    assert misfit(question, answer)


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        (KURSK_Q, "スジャです[1]。"),
        (KURSK_Q, "クルスク州のスジャです。"),  # the head is the town
        ("首都がある都市はどこですか?", "キーウ市です。"),
        ("会談した人物は誰ですか?", "ラトクリフ局長です。"),
        ("会談した人物は誰ですか?", "ジョン・ラトクリフ氏です。"),
        ("攻撃が始まったのはいつですか?", "昨年8月です。"),
        ("梅雨はいつですか?", "5月から7月にかけてです。"),
        ("兵士は何人派遣されましたか?", "約1万1000人です。"),
        ("ゲルマン人は何人ですか?", "ゲルマン人です。"),  # なにじん
        ("ドローンは何機撃墜されましたか?", "6機です。"),
        ("会談は何時間続きましたか?", "約2時間半です。"),
        ("節約額はいくらですか?", "約11億ドル(約1600億円)です。"),
        ("支持率は何%ですか?", "15.9%です。"),
        ("本部はどこにありますか?", "ヴィースバーデンです。"),
        ("どの国が兵士を派遣しましたか?", "北朝鮮です。"),
        ("いつも使われる言葉は何ですか?", "こんにちはです。"),  # いつも is not いつ
        # A time or share word that is only the topic, or a typed ask inside a clause: a name is asked.
        ("長い雨の時期が終わることを何といいますか?", "梅雨明けです。"),
        ("生命がいつ、どこで生まれたのかを問う分野は何ですか?", "生命の起源です。"),
        ("支持率が最も高い政党はどこですか?", "与党です。"),
        ("予算を決めるのは誰ですか?", "国会です。"),
        ("何人もの学者が唱えた説は何と呼ばれますか?", "地動説です。"),
    ],
)
def test_an_answer_of_the_asked_kind_fits(question: str, answer: str) -> None:
    assert misfit(question, answer) is None


@pytest.mark.parametrize(
    ("answer", "phrase"),
    [
        ("監視団 (Observer Group)[1]", "監視団 (Observer Group)"),
        ("「スジャ」です[1]。", "スジャ"),
        ("略称は「共産党」、「共産」、「日共」[1]。", "「共産党」、「共産」、「日共」"),  # three quotes, not one
        ("「codice_6」に統合", "「codice_6」に統合"),
    ],
)
def test_the_answer_phrase_keeps_brackets_that_belong_to_it(answer: str, phrase: str) -> None:
    assert answer_phrase(answer, "略称は何ですか?") == phrase
