"""Quality measurements: BEIR retrieval metrics, and answer quality on a question set."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import logging
import math
import tempfile
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bot.config import Settings
from bot.engine import WEB, Engine
from bot.engine.extractive import Ranking, compose
from bot.engine.insights import slots_filled
from index.chunking import fold
from index.embedder import Embedder
from index.errors import Error
from index.indexer import build
from index.reader import Weights, logit
from index.reader.squad import read_squad, split_articles
from index.records import Document
from index.search import MODES, search
from index.store import DocInfo, Params, Store
from index.web import pages

log = logging.getLogger(__name__)

# -- retrieval (BEIR) --------------------------------------------------------------------------


def metrics(ranked: list[str], relevant: dict[str, int]) -> dict[str, float]:
    """nDCG@10, Recall@10, Recall@100 and MRR@10 of one ranked list of document ids."""
    gains = [relevant.get(d, 0) for d in ranked[:10]]
    dcg = sum((2**g - 1) / math.log2(r + 2) for r, g in enumerate(gains))
    ideal = sorted(relevant.values(), reverse=True)[:10]
    idcg = sum((2**g - 1) / math.log2(r + 2) for r, g in enumerate(ideal))
    wanted = {d for d, g in relevant.items() if g > 0}
    first = next((r for r, d in enumerate(ranked[:10], 1) if d in wanted), None)
    return {
        "ndcg@10": dcg / idcg if idcg else 0.0,
        "recall@10": len(wanted & set(ranked[:10])) / len(wanted) if wanted else 0.0,
        "recall@100": len(wanted & set(ranked[:100])) / len(wanted) if wanted else 0.0,
        "mrr@10": 1.0 / first if first else 0.0,
    }


def load_beir(folder: Path) -> tuple[list[Document], dict[str, str], dict[str, dict[str, int]]]:
    """Documents, test queries (id -> text) and qrels (query -> doc -> grade) of a BEIR folder."""
    try:
        docs = []
        with open(folder / "corpus.jsonl", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                title = row.get("title", "").strip()
                text = f"{title}. {row['text']}" if title else row["text"]
                docs.append(Document(str(row["_id"]), title or str(row["_id"]), text, "corpus"))
        qrels: dict[str, dict[str, int]] = {}
        with open(folder / "qrels" / "test.tsv", encoding="utf-8") as f:
            for line in f:
                q, d, grade = line.rstrip("\n").split("\t")[:3]
                if grade.isdigit():  # skips the header
                    qrels.setdefault(q, {})[d] = int(grade)
        queries = {}
        with open(folder / "queries.jsonl", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                if str(row["_id"]) in qrels:
                    queries[str(row["_id"])] = row["text"]
    except (OSError, ValueError, KeyError) as err:
        raise Error(f"{folder} is not a readable BEIR folder: {err}") from err
    return docs, queries, qrels


def beir(folder: Path, settings: Settings, embedder: Embedder | None = None, progress=None) -> dict:
    """Mean metrics per retrieval mode; the index is cached in the state folder."""
    docs, queries, qrels = load_beir(folder)
    embedder = embedder or Embedder(settings.model)
    params = Params(embedder.model_id, embedder.dim, settings.chunk_size, settings.chunk_overlap)
    digest = hashlib.sha256((folder / "corpus.jsonl").read_bytes()).hexdigest()[:16]
    store = Store(settings.state_dir / "eval" / f"{folder.name}-{digest}")
    index = store.load(params)
    if index is None:
        infos = {d.doc_id: DocInfo(d.doc_id, d.title, d.source, digest, 0, "") for d in docs}
        index, _ = build(
            docs,
            infos,
            params,
            embedder,
            kind=settings.index_type,
            ann_threshold=settings.ann_threshold,
            progress=progress,
        )
        store.publish(index)
    ids = list(queries)
    qvecs = embedder.encode([queries[q] for q in ids])
    results = {}
    for mode in MODES:
        scores = []
        for q, qvec in zip(ids, qvecs, strict=True):
            hits = search([index], queries[q], qvec, k=300, mode=mode, candidates=300)
            ranked = list(dict.fromkeys(h.chunk.doc_id for h in hits))  # best chunk per doc
            scores.append(metrics(ranked, qrels[q]))
        results[mode] = {m: round(float(np.mean([s[m] for s in scores])), 4) for m in scores[0]}
    return {"dataset": folder.name, "queries": len(ids), "chunks": len(index), "modes": results}


def format_beir(results: dict) -> str:
    lines = [
        f"{results['dataset']}: {results['queries']} queries, {results['chunks']} chunks",
        f"{'mode':8} {'nDCG@10':>8} {'R@10':>7} {'R@100':>7} {'MRR@10':>7}",
    ]
    for mode, m in results["modes"].items():
        lines.append(
            f"{mode:8} {m['ndcg@10']:8.4f} {m['recall@10']:7.4f} "
            f"{m['recall@100']:7.4f} {m['mrr@10']:7.4f}"
        )
    return "\n".join(lines)


# -- answers (question sets) -------------------------------------------------------------------
#
# Two kinds of question set: the project's JSONL (tests/qa/statement_qa.jsonl: questions about
# the indexed documents, each with a key fact and a split), and SQuAD 2.0 JSON files, whose
# articles are indexed as documents here. Every question is ranked once through the engine (the
# bot's own path); answers at any threshold are then composed from those rankings, exactly as
# the engine composes them, so calibrating costs no second pass.


@dataclass(frozen=True)
class Asked:
    """One question put to an engine, and the sentences it ranked for it."""

    row: dict  # question, answerable, key_fact (str or list of str), gold passage, off_topic
    hits: list
    ranking: Ranking


def _contains(haystack: str, needle: str) -> bool:
    return fold(needle).casefold() in fold(haystack).casefold()


def read_qa(path: Path) -> list[dict]:
    """A JSONL question set's rows, less those whose slots are still empty (as `feedback
    export` leaves them); an error when no row is filled in."""
    try:
        with open(path, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError) as err:
        raise Error(f"{path} is not a readable question set ({err}).") from err
    filled = [r for r in rows if slots_filled(r)]
    if not filled:
        raise Error(
            f'{path}: no row has its slots filled in yet. Set "answerable" to true or false; '
            f'for answerable questions also "key_fact" (words the answer must contain) and '
            f'"gold" (text of the passage that answers it).'
        )
    if empty := [str(r.get("id", n)) for n, r in enumerate(rows, 1) if not slots_filled(r)]:
        more = f" and {len(empty) - 10} more" if len(empty) > 10 else ""
        shown = ", ".join(empty[:10])
        log.warning("skipping %d rows with empty slots (%s%s)", len(empty), shown, more)
    return filled


def ask_all(engine: Engine, rows: list[dict]) -> list[Asked]:
    """Rank every row's question through the engine."""
    return [Asked(row, *engine.ranking(row["question"])[1:]) for row in rows]


def statement_set(engine: Engine, path: Path, split: str) -> list[Asked]:
    """A JSONL question set about the engine's documents, one split of it."""
    return ask_all(engine, [r for r in read_qa(path) if split in ("all", r.get("split", "test"))])


def squad_set(path: Path, split: str, settings: Settings, embedder, reader) -> list[Asked]:
    """SQuAD 2.0 articles of one split (calibrate, test or all), indexed as documents.

    The articles are indexed in two halves. Each half's own questions are asked of it, and so
    are the other half's answerable questions: those are about documents that are not indexed,
    and must be refused (`off_topic`).
    """
    articles = read_squad(path)
    if split != "all":  # held-out articles only
        articles = split_articles(articles)[split] if split in ("calibrate", "test") else []
    if not articles:
        raise Error(f"{path} has no articles of the {split!r} split.")
    halves = articles[0::2], articles[1::2]
    asked: list[Asked] = []
    for indexed, other in (halves, halves[::-1]):
        if not indexed:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "data"
            data.mkdir()
            for n, article in enumerate(indexed):
                (data / f"{n:03}.txt").write_text(f"{article.doc.title}\n\n{article.doc.text}\n")
            local = replace(settings, data_dir=data, state_dir=Path(tmp) / "state")
            engine = Engine(local, embedder, reader=reader)
            engine.open()
            rows = [_squad_row(a, q, False) for a in indexed for q in a.questions]
            rows += [_squad_row(a, q, True) for a in other for q in a.questions if q.answer]
            asked += ask_all(engine, rows)
    return asked


def _squad_row(article, q, off_topic: bool) -> dict:
    answer = article.doc.text[q.answer[0] : q.answer[1]] if q.answer else None
    return {
        "id": q.id,
        "question": q.text,
        "answerable": q.answer is not None and not off_topic,
        "key_fact": answer,
        "off_topic": off_topic,
    }


# Refusing a fair question is the costlier error: at most this share of answerable questions
# may be refused, 5% on the statement and 10% on SQuAD's harder, encyclopedic questions.
MAX_FALSE_REFUSALS = {"jsonl": 0.05, "json": 0.10}


def pages_set(engine: Engine, path: Path, split: str) -> list[Asked]:
    """A JSONL question set about saved web pages (see `open_pages`), one split of it."""
    with tempfile.TemporaryDirectory() as tmp:
        paged = open_pages(engine, path.with_suffix(""), Path(tmp))
        rows = [r for r in read_qa(path) if split in ("all", r.get("split", "test"))]
        return ask_all(paged, [r | {"doc": f"{WEB}{r['doc']}.html"} for r in rows])


def open_pages(engine: Engine, folder: Path, tmp: Path) -> Engine:
    """An engine over the saved pages of `folder` (`<doc>.html.gz`, and their URLs in
    `pages.json`) on their own, indexed as the bot indexes links: stored bodies read through
    trafilatura."""
    local = replace(engine.settings, data_dir=tmp / "data", state_dir=tmp / "state")
    local.data_dir.mkdir(parents=True)
    web = local.state_dir / "web"
    web.mkdir(parents=True)
    for name, about in json.loads((folder / "pages.json").read_text(encoding="utf-8")).items():
        body = web / f"{name}.html"
        body.write_bytes(gzip.decompress((folder / f"{name}.html.gz").read_bytes()))
        url = about["url"]
        pages.write_meta(body, pages.WebMeta(url, url, ".html", None, None, None, "", None))
    paged = Engine(local, engine.embedder, reader=engine.reader)
    paged.open()
    return paged


def question_set(engine: Engine, path: Path, split: str) -> list[Asked]:
    """A question set by its file type: SQuAD 2.0 JSON, the project's JSONL about the engine's
    documents, or the project's JSONL about the saved pages in the folder beside it."""
    if path.suffix == ".json":
        return squad_set(path, split, engine.settings, engine.embedder, engine.reader)
    if path.with_suffix("").is_dir():
        return pages_set(engine, path, split)
    return statement_set(engine, path, split)


def evaluate(engine: Engine, paths: list[Path], split: str, calibrate: bool) -> dict:
    """Reports per question set at the engine's threshold, or at one calibrated first on every
    set's calibrate split (the strictest of their thresholds)."""
    if calibrate:
        threshold = min(
            threshold_for(question_set(engine, p, "calibrate"), MAX_FALSE_REFUSALS[p.suffix[1:]])
            for p in paths
        )
        engine.settings = replace(engine.settings, answer_threshold=threshold)
    sets = {}
    for p in paths:
        asked = question_set(engine, p, split)
        sets[str(p)] = report(asked, engine.threshold)
        if engine.generator and p.suffix == ".jsonl":
            sets[str(p)] |= generated(engine, asked)
    return {"threshold": engine.threshold, "split": split, "sets": sets}


def generated(engine: Engine, asked: list[Asked]) -> dict:
    """With a model configured: how much of what it wrote for these questions survived
    verification, through the bot's own path."""
    answers = asyncio.run(_answer_all(engine, [a.row["question"] for a in asked]))
    stats = [s for _, s in answers if s is not None]
    return {
        "sentences_kept": sum(s.kept for s in stats) / max(1, sum(s.generated for s in stats)),
        "fallback_rate": sum(s.fell_back for s in stats) / max(1, len(stats)),
    }


async def _answer_all(engine: Engine, questions: list[str]) -> list:
    return [await engine.answer(q) for q in questions]


def fit_weights(asked: list[Asked], l2: float = 1e-3) -> Weights:
    """The logistic regression that turns a candidate sentence's evidence (the reader's
    probability, as a logit, and the sentence's cosine) into the probability that it holds the
    answer (the key fact); fitted by Newton's method on every candidate of `asked`."""
    rows, labels = [], []
    for a in asked:
        facts = _facts(a.row) if a.row["answerable"] else []
        for c in a.ranking.candidates:
            rows.append((logit(c.evidence[0]), c.evidence[1], 1.0))
            labels.append(any(_contains(c.text, f) for f in facts))
    x, y = np.array(rows), np.array(labels, float)
    w = np.array([1.0, 0.0, 0.0])
    for _ in range(50):
        q = 1 / (1 + np.exp(-(x @ w)))
        gradient = x.T @ (q - y) + l2 * w
        hessian = (x * (q * (1 - q))[:, None]).T @ x + l2 * np.eye(3)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return Weights(*(round(float(v), 4) for v in w))


def _facts(row: dict) -> list[str]:
    return row["key_fact"] if isinstance(row["key_fact"], list) else [row["key_fact"]]


def threshold_for(asked: list[Asked], max_false_refusals: float) -> float:
    """The highest threshold that refuses at most this share of the answerable questions.

    Refusing a fair question is the costlier error for members, so the bound on false
    refusals is met first; within it, as many other questions as possible are refused.
    """
    # Answerable questions left with no candidate (their passages were not found, or no
    # sentence fits the answer type) are refused at any threshold: they do not set it.
    answerable = sorted(a.ranking.best for a in asked if a.row["answerable"] and a.ranking.best)
    others = [a.ranking.best for a in asked if not a.row["answerable"]]
    lowest_kept = answerable[int(max_false_refusals * len(answerable))]
    below = [s for s in answerable + others if s < lowest_kept]
    return round((lowest_kept + max(below)) / 2 if below else lowest_kept, 4)


def report(asked: list[Asked], threshold: float) -> dict:
    """Refusal rates, key facts in the quotes, Recall@3 and quote exactness at a threshold."""
    n: Counter[str] = Counter()
    failures = []
    for a in asked:
        row = a.row
        answer = compose(row["question"], a.ranking, threshold)
        if row.get("doc"):
            n["with_doc"] += 1
            n["wrong_doc"] += answer.found and any(
                c.chunk.doc_id != row["doc"] for c in answer.citations
            )
        for c in answer.citations:
            n["quotes"] += 1
            n["exact"] += c.chunk.text[c.start - c.chunk.start : c.end - c.chunk.start] == c.quote
        if row.get("off_topic"):
            n["off_topic"] += 1
            n["refused_off_topic"] += not answer.found
            continue
        if not row["answerable"]:
            n["unanswerable"] += 1
            n["refused"] += not answer.found
            if answer.found:
                failures.append((row["id"], "answered", answer.text))
            continue
        n["answerable"] += 1
        if row.get("gold"):
            n["with_gold"] += 1
            n["recall3"] += any(_contains(h.chunk.text, row["gold"]) for h in a.hits[:3])
        facts = _facts(row)
        quoted = " ".join(c.quote for c in answer.citations) if answer.found else ""
        hit = any(_contains(quoted, f) for f in facts) if quoted else False
        n["gold_quoted"] += bool(quoted and row.get("gold") and _contains(quoted, row["gold"]))
        typed = replace(a.ranking, candidates=tuple(a.ranking.untyped or a.ranking.candidates))
        n["type_refused"] += not answer.found and compose(row["question"], typed, threshold).found
        n["answered"] += answer.found
        n["false_refusals"] += not answer.found
        n["key_fact"] += hit
        if not hit:
            failures.append((row["id"], row["question"], answer.text))
    return {
        "threshold": threshold,
        "answerable": n["answerable"],
        "unanswerable": n["unanswerable"],
        "off_topic": n["off_topic"],
        "key_fact": n["key_fact"] / max(1, n["answerable"]),
        "gold_in_answered": n["key_fact"] / max(1, n["answered"]),
        "recall@3": n["recall3"] / n["with_gold"] if n["with_gold"] else None,
        "gold_quoted": n["gold_quoted"] / n["with_gold"] if n["with_gold"] else None,
        "wrong_doc": n["wrong_doc"] / n["with_doc"] if n["with_doc"] else None,
        "type_refused": n["type_refused"] / max(1, n["answerable"]),
        "refused_unanswerable": n["refused"] / max(1, n["unanswerable"]),
        "refused_off_topic": n["refused_off_topic"] / n["off_topic"] if n["off_topic"] else None,
        "false_refusals": n["false_refusals"] / max(1, n["answerable"]),
        "quotes_exact": n["exact"] / max(1, n["quotes"]),
        "quotes": n["quotes"],
        "failures": failures,
    }


MISSES_SHOWN = 20


def format_qa(name: str, r: dict) -> str:
    answerable, off_topic = r["answerable"], r["off_topic"]
    rows = [  # (shown when, label, value)
        (
            answerable,
            "key fact in the quotes",
            f"{r['key_fact']:6.1%} ({r['gold_in_answered']:.1%} of those answered)",
        ),
        (r["recall@3"] is not None, "gold passage Recall@3", f"{r['recall@3'] or 0:6.1%}"),
        (r["recall@3"] is not None, "gold text quoted", f"{r['gold_quoted'] or 0:6.1%}"),
        (
            r["wrong_doc"] is not None,
            "answered from another document",
            f"{r['wrong_doc'] or 0:6.1%}",
        ),
        (answerable, "refused by an answer type", f"{r['type_refused']:6.1%}"),
        (True, "unanswerable refused", f"{r['refused_unanswerable']:6.1%}"),
        (answerable, "answerable refused", f"{r['false_refusals']:6.1%}"),
        (off_topic, "not-indexed questions refused", f"{r['refused_off_topic'] or 0:6.1%}"),
        (True, "quotes exact", f"{r['quotes_exact']:6.1%} of {r['quotes']}"),
        ("sentences_kept" in r, "model sentences kept", f"{r.get('sentences_kept', 0):6.1%}"),
        ("fallback_rate" in r, "fallback to extractive", f"{r.get('fallback_rate', 0):6.1%}"),
    ]
    lines = [
        f"{name}: {answerable} answerable, {r['unanswerable']} unanswerable"
        + (f", {off_topic} about documents not indexed" if off_topic else "")
        + f"; threshold {r['threshold']}"
    ]
    lines += [f"{label:<30} {value}" for shown, label, value in rows if shown]
    misses = r["failures"]
    lines += [f"  miss {i}: {q} -> {a[:120]}" for i, q, a in misses[:MISSES_SHOWN]]
    if len(misses) > MISSES_SHOWN:
        lines.append(f"  and {len(misses) - MISSES_SHOWN} more misses (--json lists them all)")
    return "\n".join(lines)
