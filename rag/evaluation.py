"""Measure retrieval and answers on a QA file (own JSONL or SQuAD/JSQuAD JSON). Pure scoring + a runner."""

from __future__ import annotations

import json
import re
import statistics
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from rag.citations import is_refusal, with_title
from rag.errors import RagError
from rag.types import Answer, Document, Hit


@dataclass(frozen=True)
class QAItem:
    """One evaluation question; `source` is the gold seed file or paragraph id."""

    qid: str
    question: str
    answers: list[str] = field(default_factory=list)
    source: str | None = None
    unanswerable: bool = False
    history: list[tuple[str, str]] = field(default_factory=list)
    answer_in_passage: bool = True  # gold hit = gold source and a reference answer in the chunk; else source only


def normalize(text: str) -> str:
    """NFKC, lower case, no whitespace: how answers are compared."""
    return "".join(unicodedata.normalize("NFKC", text).lower().split())


def load_jsonl(path: Path) -> list[QAItem]:
    """Read {"question", "answers", "source"} / {"question", "unanswerable": true} lines."""
    items = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            items.append(
                QAItem(
                    qid=str(raw.get("id", n)),
                    question=raw["question"],
                    answers=list(raw.get("answers", [])),
                    source=raw.get("source"),
                    unanswerable=bool(raw.get("unanswerable", False)),
                    history=[tuple(t) for t in raw.get("history", [])],  # type: ignore[misc]
                    answer_in_passage=bool(raw.get("answer_in_passage", True)),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise RagError(f"{path}:{n}: not a QA line ({exc}). Expected JSON with at least a 'question'.") from exc
    return items


SPLITS = ("tune", "report")


def squad_split(article_no: int) -> str:
    """Which half a SQuAD article belongs to: even-numbered articles are tuned on, odd ones only reported."""
    return "tune" if article_no % 2 == 0 else "report"


def _squad_data(path: Path) -> list[dict]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    except (OSError, ValueError, KeyError) as exc:
        raise RagError(f"{path} is not a SQuAD-format JSON file ({exc}).") from exc


def _squad_paragraph(article: dict, p_no: int) -> tuple[str, str, str]:
    """(paragraph id, title, text) with JSQuAD's "title [SEP] " prefix removed."""
    context = article["paragraphs"][p_no]["context"]
    title, sep, body = context.partition(" [SEP] ")
    if not sep:
        title, body = article.get("title", ""), context
    return f"{article.get('title', 'doc')}#{p_no}", title, body


def _squad_items(article: dict, p_no: int, source: str) -> list[QAItem]:
    items = []
    for qa in article["paragraphs"][p_no]["qas"]:
        answers = sorted({a["text"] for a in qa.get("answers", [])})
        items.append(
            QAItem(
                qid=str(qa["id"]),
                question=qa["question"],
                answers=answers,
                source=source,
                unanswerable=bool(qa.get("is_impossible", False)),
                answer_in_passage=False,
            )
        )
    return items


def write_jsonl(items: Iterable[QAItem], path: Path) -> None:
    """Write QA items in the format load_jsonl reads."""
    with open(path, "w", encoding="utf-8") as fh:
        for it in items:
            row: dict[str, object] = {"id": it.qid, "question": it.question}
            if it.unanswerable:
                row["unanswerable"] = True
            else:
                row.update(answers=it.answers, source=it.source)
            if it.history:
                row["history"] = [list(t) for t in it.history]
            if not it.answer_in_passage:
                row["answer_in_passage"] = False
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def load_squad(path: Path, *, split: str | None = None) -> tuple[list[Document], list[QAItem]]:
    """A SQuAD-format file (JSQuAD): every paragraph becomes a Document; the questions of `split` (or all)."""
    if split is not None and split not in SPLITS:
        raise RagError(f"Unknown split {split!r}; choose one of {', '.join(SPLITS)}.")
    docs: list[Document] = []
    items: list[QAItem] = []
    for a_no, article in enumerate(_squad_data(path)):
        for p_no in range(len(article["paragraphs"])):
            pid, title, body = _squad_paragraph(article, p_no)
            docs.append(Document(doc_id=pid, source=pid, title=title, text=body))
            if split is None or squad_split(a_no) == split:
                items.extend(_squad_items(article, p_no, pid))
    return docs, items


def _file_name(pid: str) -> str:
    return re.sub(r"[\\/:*?\"<>|#\s]+", "_", pid)


def write_squad_files(
    path: Path, out_dir: Path, *, articles: Iterable[int] | None = None, per: str = "paragraph"
) -> list[QAItem]:
    """Write SQuAD paragraphs as article files a user could save ("title", blank line, text).

    per="paragraph": one file per paragraph; per="article": one file per article with its paragraphs
    as articles separated by a line of "---". Returns the questions of the written articles, each
    pointing at the file that holds its paragraph.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = _squad_data(path)
    wanted = set(range(len(data))) if articles is None else set(articles)
    items: list[QAItem] = []
    for a_no, article in enumerate(data):
        if a_no not in wanted:
            continue
        blocks = []
        for p_no in range(len(article["paragraphs"])):
            pid, title, body = _squad_paragraph(article, p_no)
            if per == "paragraph":
                name = f"{_file_name(pid)}.txt"
                (out_dir / name).write_text(f"{title}\n\n{body}\n", encoding="utf-8")
            else:
                name = f"{_file_name(article.get('title', f'article{a_no}'))}.txt"
                blocks.append(f"{title}\n\n{body}\n")
            items.extend(_squad_items(article, p_no, name))
        if blocks:
            (out_dir / name).write_text("\n---\n\n".join(blocks), encoding="utf-8")
    return items


def refusal_set(path: Path, *, split: str) -> tuple[list[int], list[QAItem]]:
    """An answerability test built from one split of a SQuAD file.

    The split's articles are numbered 0, 1, 2 …; the even-numbered ones are indexed. Returns their
    article numbers (in the file) and the questions: every question of the indexed articles
    (answerable), and the questions of the odd-numbered ones whose answers appear nowhere in the
    indexed paragraphs (unanswerable: each should be refused).
    """
    data = _squad_data(path)
    mine = [a_no for a_no in range(len(data)) if squad_split(a_no) == split]
    indexed = mine[0::2]
    corpus = normalize(
        "\n".join(_squad_paragraph(data[a], p)[2] for a in indexed for p in range(len(data[a]["paragraphs"])))
    )
    items: list[QAItem] = []
    for a_no in mine:
        article = data[a_no]
        for p_no in range(len(article["paragraphs"])):
            pid = _squad_paragraph(article, p_no)[0]
            for item in _squad_items(article, p_no, pid):
                if a_no in indexed:
                    items.append(item)
                elif item.answers and not any(normalize(a) in corpus for a in item.answers):
                    items.append(replace(item, answers=[], source=None, unanswerable=True))
    return indexed, items


def hit_is_gold(hit: Hit, item: QAItem) -> bool:
    """A hit counts when it comes from the gold source (JSQuAD: the gold paragraph).

    For our seed questions the source is a whole page with many articles, so the chunk must
    also contain a reference answer.
    """
    if item.source is None or hit.chunk.source != item.source:
        return False
    if not item.answer_in_passage or not item.answers:
        return True
    text = normalize(hit.chunk.text)
    return any(normalize(a) in text for a in item.answers)


def retrieval_scores(ranked: Sequence[Sequence[Hit]], items: Sequence[QAItem]) -> dict[str, float]:
    """recall@1/5/10 and MRR over the answerable items."""
    ranks = []
    for hits, item in zip(ranked, items):
        if item.unanswerable:
            continue
        rank = next((i for i, h in enumerate(hits, start=1) if hit_is_gold(h, item)), None)
        ranks.append(rank)
    n = max(len(ranks), 1)
    return {
        "questions": len(ranks),
        "recall@1": sum(1 for r in ranks if r and r <= 1) / n,
        "recall@5": sum(1 for r in ranks if r and r <= 5) / n,
        "recall@10": sum(1 for r in ranks if r and r <= 10) / n,
        "mrr": sum(1 / r for r in ranks if r) / n,
    }


def char_f1(prediction: str, references: Iterable[str]) -> float:
    """Best character-level F1 of the prediction against any reference (Japanese has no words)."""
    pred = Counter(normalize(prediction))
    best = 0.0
    for ref in references:
        gold = Counter(normalize(ref))
        common = sum((pred & gold).values())
        if common:
            p, r = common / sum(pred.values()), common / sum(gold.values())
            best = max(best, 2 * p * r / (p + r))
    return best


@dataclass
class AnswerRecord:
    """The outcome for one question, kept for the JSON report."""

    qid: str
    question: str
    answer: str
    correct: bool
    f1: float
    refused: bool
    unanswerable: bool
    citation_ok: bool | None
    cited_sources: list[str]
    prompt_tokens: int
    ttft: float
    total: float


def score_answer(item: QAItem, answer: Answer) -> AnswerRecord:
    """Compare one Answer with the references."""
    text = normalize(answer.text)
    correct = (not item.unanswerable) and any(normalize(a) in text for a in item.answers)
    citation_ok = None
    if not item.unanswerable and correct:
        citation_ok = any(
            c.source == item.source and any(normalize(a) in normalize(with_title(c.title, c.text)) for a in item.answers)
            for c in answer.citations
        )
    return AnswerRecord(
        qid=item.qid,
        question=item.question,
        answer=answer.text,
        correct=correct,
        f1=0.0 if item.unanswerable else char_f1(answer.text, item.answers),
        refused=answer.refused or is_refusal(answer.text),
        unanswerable=item.unanswerable,
        citation_ok=citation_ok,
        cited_sources=[c.source for c in answer.citations],
        prompt_tokens=answer.prompt_tokens,
        ttft=answer.seconds_to_first_token,
        total=answer.seconds_total,
    )


def _pct(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def answer_scores(records: Sequence[AnswerRecord]) -> dict[str, float]:
    """Accuracy, F1, citation accuracy, refusal rates, latency percentiles, prompt size."""
    answerable = [r for r in records if not r.unanswerable]
    unanswerable = [r for r in records if r.unanswerable]
    cited = [r for r in answerable if r.citation_ok is not None]
    return {
        "answered": len(records),
        "accuracy": sum(r.correct for r in answerable) / max(len(answerable), 1),
        "char_f1": statistics.fmean(r.f1 for r in answerable) if answerable else 0.0,
        "citation_accuracy": sum(bool(r.citation_ok) for r in cited) / max(len(cited), 1),
        "refusal_rate_unanswerable": sum(r.refused for r in unanswerable) / max(len(unanswerable), 1),
        "false_refusal_rate": sum(r.refused for r in answerable) / max(len(answerable), 1),
        "ttft_p50": _pct([r.ttft for r in records], 0.5),
        "ttft_p95": _pct([r.ttft for r in records], 0.95),
        "total_p50": _pct([r.total for r in records], 0.5),
        "total_p95": _pct([r.total for r in records], 0.95),
        "prompt_tokens_p50": _pct([float(r.prompt_tokens) for r in records], 0.5),
    }


def records_as_json(records: Sequence[AnswerRecord]) -> list[dict[str, object]]:
    """AnswerRecords as plain dicts for the JSON report."""
    return [asdict(r) for r in records]


# ---- runner: used by `rag eval` ----


@dataclass
class EvalReport:
    """Everything `rag eval` measured."""

    qa_file: str
    retrieval: dict[str, float]
    answers: dict[str, float] | None
    records: list[AnswerRecord]
    settings: dict[str, object]


def spread(items: Sequence[QAItem], limit: int | None) -> list[QAItem]:
    """`limit` items spread evenly over the file (JSQuAD is sorted by article), deterministic."""
    if not limit or limit >= len(items):
        return list(items)
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def evaluate(
    items: Sequence[QAItem],
    *,
    retrieve: Callable[[QAItem], list[Hit]],
    ask: Callable[[QAItem], Answer] | None = None,
    progress: bool = False,
    qa_file: str = "",
    settings: dict[str, object] | None = None,
) -> EvalReport:
    """Retrieve (top 10) for every item and, if `ask` is given, answer it and score the answer."""
    from tqdm import tqdm

    ranked, records = [], []
    for item in tqdm(items, desc="eval", unit="q", disable=not progress):
        ranked.append(retrieve(item))
        if ask is not None:
            records.append(score_answer(item, ask(item)))
    return EvalReport(
        qa_file=qa_file,
        retrieval=retrieval_scores(ranked, items),
        answers=answer_scores(records) if ask is not None else None,
        records=records,
        settings=settings or {},
    )


def format_table(report: EvalReport) -> str:
    """The report as an aligned text table for the terminal."""
    rows = [("retrieval " + k, v) for k, v in report.retrieval.items()]
    rows += [("answer " + k, v) for k, v in (report.answers or {}).items()]
    width = max(len(name) for name, _ in rows)
    lines = [f"{report.qa_file}"]
    for name, value in rows:
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        lines.append(f"  {name:<{width}}  {shown}")
    return "\n".join(lines)


def write_report(report: EvalReport, out_dir: Path) -> tuple[Path, Path]:
    """Write report.json and a bar chart (report.png) of the rates into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out_dir / "report.json", out_dir / "report.png"
    payload = {
        "qa_file": report.qa_file,
        "settings": report.settings,
        "retrieval": report.retrieval,
        "answers": report.answers,
        "records": records_as_json(report.records),
    }
    json_path.write_text(json.dumps(payload, ensure_ascii=False, indent=2, default=str), encoding="utf-8")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = {k: v for k, v in report.retrieval.items() if k != "questions"}
    if report.answers:
        for key in ("accuracy", "char_f1", "citation_accuracy", "refusal_rate_unanswerable", "false_refusal_rate"):
            rates[key] = report.answers[key]
    fig, ax = plt.subplots(figsize=(9, 4))
    bars = ax.barh(list(rates)[::-1], list(rates.values())[::-1], color="#3b7dd8")
    ax.bar_label(bars, fmt="%.2f", padding=3)
    ax.set_xlim(0, 1.1)
    ax.set_title(f"rag eval: {Path(report.qa_file).name} ({report.retrieval['questions']} answerable questions)")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return json_path, png_path
