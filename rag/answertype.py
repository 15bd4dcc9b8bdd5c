"""Does the answer name the kind of thing the question asks for? Pure functions, Japanese rules.

A small model that cannot find the answer often names a nearby entity of another kind: asked for
a 町 it answers a 州, asked 誰 it gives a place, asked いつ it gives a name. These checks read the
question's interrogative (誰, いつ, 何人, 何%, どの町 …) and the answer's core phrase, and say why
the two do not fit; the pipeline then refuses instead of showing a wrong answer.
"""

from __future__ import annotations

import re
import unicodedata

_MARKER = re.compile(r"\[\s*\d+(?:\s*[,、]\s*\d+)*\s*\]")
_NUMBER = r"(?:\d[\d,.]*|[〇一二三四五六七八九十百千万億兆数何]+)"
# Counters a 何-question can ask for, longest first so 時間 wins over 時 and か月 over 月.
COUNTERS = sorted(
    [
        "人",
        "名",
        "社",
        "歳",
        "時間",
        "分間",
        "秒",
        "日間",
        "週間",
        "年間",
        "か月",
        "カ月",
        "ヶ月",
        "ヵ月",
        "回",
        "件",
        "機",
        "台",
        "本",
        "隻",
        "頭",
        "匹",
        "羽",
        "冊",
        "枚",
        "個",
        "度",
        "倍",
        "位",
        "票",
        "校",
        "店",
        "基",
        "発",
        "か国",
        "カ国",
        "ヶ国",
        "ヵ国",
        "か所",
        "カ所",
        "ヶ所",
        "箇所",
        "割",
        "%",
        "パーセント",
        "メートル",
        "キロ",
        "トン",
        "階",
        "点",
        "種類",
        "曲",
        "作",
        "巻",
        "話",
        "戦",
        "勝",
        "敗",
        "つ",
        "万人",
        "億円",
        "円",
        "ドル",
    ],
    key=len,
    reverse=True,
)
_ASK_COUNT = re.compile("何(" + "|".join(map(re.escape, COUNTERS)) + ")")
_ASK_PERCENT = re.compile(r"何%|何パーセント|割合|比率|支持率")
_ASK_AMOUNT = re.compile(r"いくら|金額|総額|費用|予算|価格|値段")
_AMOUNT = re.compile(r"円|ドル|ユーロ|ポンド|ルーブル|フリヴニャ|グリブナ|人民元|ウォン|元")
# 時期 or 年代 alone is a topic (「長い雨の時期を何という」); with どの or 何 it asks when.
_ASK_TIME = re.compile(
    r"いつ(?!も|か|でも)|何年|何月|何日|何時|何世紀|何曜|何年代|何時代|(?:どの|どういう|どんな)(?:時期|年代|時代|頃)"
)
_TIME = re.compile(
    _NUMBER + r"\s*(?:年|月|日|時|分|世紀|年代)|昨年|今年|来年|去年|昨日|今日|明日|先月|今月|来月|先週|今週|来週|"
    r"曜|春|夏|秋|冬|朝|昼|夜|夕方|午前|午後|上旬|中旬|下旬|初め|初頭|末|半ば|時代|頃|ごろ|以前|以降|直前|直後|"
    r"元年|紀元|令和|平成|昭和|大正|明治|江戸|同日|前日|翌日|当日|当時|最近|戦前|戦後|期"
)
_ASK_PERSON = re.compile(r"誰|だれ|どなた|何者|人物は|人物の名|人の名")
_ASK_PLACE = re.compile(r"どこ|どちら")
# Administrative divisions: an answer ending in one of them is that kind of place.
_DIVISIONS = ("州", "県", "国", "市", "町", "村", "区", "郡", "省", "都", "府", "道")
_ASK_DIVISION = re.compile(
    r"(?:どの|どこの|何という|なんという|何と言う|どういう)(都市|州|県|国|市|町|村|区|郡|省)"
    r"|(都市|州|県|国|市|町|村|区|郡|省)(?:は|が|を|の名前は|の名は|名は)(?:どこ|何|なん|どれ)"
)
_PLACE_SUFFIX = re.compile(r"(?:州|県|市|町|村|郡|省|府|島|諸島|半島|大陸|地方|地域|川|山|湖|海|湾|港|空港|駅)$")
_PERSON_SUFFIX = re.compile(
    r"(?:氏|さん|様|君|大統領|首相|長官|大臣|局長|議長|総裁|社長|会長|司令官|監督|選手|教授|博士|王|帝|皇)$"
)
_COPULA = re.compile(
    r"(?:です|でした|だ|である|であった|となっています|とされています|とされる|となります|になります|と言われています|"
    r"といいます|と呼ばれています|と呼ばれる)?\s*[。.!！]*$"
)


# Questions whose answer is an explanation, not a thing: a reason, a way, a cause, a definition.
_ASK_REASON = re.compile(r"なぜ|何故|どうして|どうやって|どのように|どういう(?:意味|こと)|理由|原因|目的|仕組み|とは\s*[?？。]?\s*$")


def asks_reason(question: str) -> bool:
    """True if the question asks why or how (or what something means): its answer is a sentence, not a phrase."""
    return bool(_ASK_REASON.search(_nfkc(question).strip()))


_DATE = re.compile(
    r"(?:(?:紀元前|西暦)?\d{1,4}年)?(?:\d{1,2}月)?(?:\d{1,2}日)?(?:\d{1,2}時(?:\d{1,2}分)?)?"
    r"|(?:明治|大正|昭和|平成|令和)(?:\d{1,2}|元)年(?:\d{1,2}月)?(?:\d{1,2}日)?|\d{1,2}世紀|\d{2,4}年代"
)
_QUANTITY = r"(?:約|およそ|計|合計|最大|最高|最低|わずか)?(?:\d[\d,.]*(?:兆|億|万|千)?)+"


def typed_span(question: str, phrase: str) -> str:
    """The expression of the kind asked (a date, a count, a share, an amount) inside a clause, or "".

    「2026年4月1日に1ドル=163円まで下落した」 asked いつ -> 「2026年4月1日」; only when the clause holds
    exactly one such expression, so the choice is never a guess.
    """
    q, a = _nfkc(question), _nfkc(_MARKER.sub("", phrase))
    if m := _asked(_ASK_COUNT, q):
        counter = re.escape(m.group(1))
        pattern = _QUANTITY + r"\s*" + (r"(?:人|名)" if m.group(1) == "人" else counter)
    elif _asked(_ASK_PERCENT, q):
        pattern = _QUANTITY + r"\s*(?:%|パーセント|割)"
    elif _asked(_ASK_AMOUNT, q):
        pattern = _QUANTITY + r"\s*(?:" + _AMOUNT.pattern + ")"
    elif _asked(_ASK_TIME, q):
        found = [m.group(0) for m in _DATE.finditer(a) if re.search(r"\d|元", m.group(0))]
        return found[0] if len(found) == 1 else ""
    else:
        return ""
    found = re.findall(pattern, a)
    return found[0] if len(found) == 1 else ""


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def _grams(text: str) -> set[str]:
    t = re.sub(r"\s", "", text)
    return {t[i : i + 2] for i in range(len(t) - 1)}


RESTATED_NEW_BIGRAMS = 3  # 「要衝の町は、」 restating 「…要衝の町はどこ」 adds 0-2 (「町は」 → 「は、」)


def answer_phrase(answer: str, question: str = "") -> str:
    """The phrase that answers: 「要衝の町は、東部ルハンシク州です[2]。」 -> 「東部ルハンシク州」.

    The first sentence without markers, final copula and a restated topic ("…の町は、").
    """
    text = _MARKER.sub("", _nfkc(answer)).strip()
    text = re.split(r"(?<=[。!?！？])|\n", text, maxsplit=1)[0].strip()
    text = _COPULA.sub("", text).strip()
    asked = _grams(_nfkc(question))
    # "<restated question>は、<answer>": drop the restatement when it mostly repeats the question
    # and adds little to it (「オパーリンが提唱した化学進化説では…」 names what was asked: kept).
    for m in reversed(list(re.finditer(r"は[、,]?", text))):
        left = _grams(text[: m.start()])
        if left and len(left & asked) / len(left) >= 0.5 and len(left - asked) <= RESTATED_NEW_BIGRAMS:
            text = text[m.end() :]
            break
    return _unwrap(text.strip())


_PAIRS = {"「": "」", "『": "』", "(": ")", "（": "）", '"': '"', "'": "'"}


def _unwrap(text: str) -> str:
    """Text without the quotes or brackets around it, and without one left open or closed at an end.

    「監視団 (Observer Group)」 keeps its parenthesis, 「「スジャ」」 becomes 「スジャ」, and a quote
    or bracket at either end without its partner goes; brackets inside are never touched.
    """
    while len(text) >= 2 and _PAIRS.get(text[0]) == text[-1] and _balanced(text[1:-1]):
        text = text[1:-1].strip()
    while text and text[0] in _PAIRS and not _balanced(text):
        text = text[1:].strip()
    while text and text[-1] in _PAIRS.values() and not _balanced(text):
        text = text[:-1].strip()
    return text


def _balanced(text: str) -> bool:
    """Every bracket closed after it opens: 「共産党」、「日共」 is, 共産党」、「日共 is not."""
    for opening, closing in _PAIRS.items():
        if opening == closing:
            continue
        depth = 0
        for ch in text:
            depth += (ch == opening) - (ch == closing)
            if depth < 0:
                return False
        if depth:
            return False
    return True


def _kind_of_place(phrase: str) -> str | None:
    for suffix in _DIVISIONS:
        if phrase.endswith(suffix) and not phrase.endswith(("都市", "首都", "中国", "北海道")):
            return suffix
    return None


# Any interrogative: one after a typed ask means the typed one sits in a clause of the question
# (「いつ、どこで誕生したのかという過程は何」 asks for a name, not a date).
_INTERROGATIVE = re.compile(r"何|なに|なん|誰|だれ|どこ|どちら|どの|どんな|どう|いつ(?!も|か|でも)|いくら|いくつ|どれ")


def _asked(pattern: re.Pattern[str], question: str) -> re.Match[str] | None:
    """The last match of a typed ask, if no other interrogative comes after it (it is what is asked)."""
    matches = list(pattern.finditer(question))
    if not matches or _INTERROGATIVE.search(question, matches[-1].end()):
        return None
    return matches[-1]


def misfit(question: str, answer: str) -> str | None:
    """Why the answer is not the kind of thing the question asks for, or None when it fits (or nothing is asked)."""
    q, a = _nfkc(question), _nfkc(_MARKER.sub("", answer))
    phrase = answer_phrase(answer, question)
    if m := _asked(_ASK_COUNT, q):
        counter = m.group(1)
        if counter == "人":  # 何人 is also なにじん ("ゲルマン人") and people are counted in 名 too
            if not re.search(r"人|名", a):
                return "何人 asks for a number of people"
        elif not re.search(_NUMBER + r"\s*" + re.escape(counter), a) and not (
            counter in ("%", "パーセント") and re.search(r"\d\s*(?:%|パーセント)", a)
        ):
            return f"何{counter} asks for a count in {counter}"
    if _asked(_ASK_PERCENT, q) and not re.search(r"%|パーセント|\d\s*割|[一二三四五六七八九十]割|分の", a):
        return "the question asks for a share"
    if _asked(_ASK_AMOUNT, q) and not _AMOUNT.search(a):
        return "the question asks for an amount of money"
    if _asked(_ASK_TIME, q) and not _TIME.search(a):
        return "いつ asks for a date or time"
    if m := _ASK_DIVISION.search(q):
        asked = m.group(1) or m.group(2)
        got = _kind_of_place(phrase)
        if got and got != asked and not (asked == "都市" and got in ("市", "町", "村", "都")):
            return f"asked for a {asked}, answered a {got}"
    if _ASK_PERSON.search(q) and not _ASK_PLACE.search(q) and phrase and len(phrase) <= 30:
        if _PLACE_SUFFIX.search(phrase) and not _PERSON_SUFFIX.search(phrase):
            return "誰 asks for a person, the answer is a place"
        if re.fullmatch(r"[\d\s,.年月日時分%約]+", phrase):
            return "誰 asks for a person, the answer is a number or date"
    if _ASK_PLACE.search(q) and not _ASK_TIME.search(q) and phrase and re.fullmatch(r"[\d\s,.年月日時分%約]+", phrase):
        return "どこ asks for a place, the answer is a number or date"
    return None
