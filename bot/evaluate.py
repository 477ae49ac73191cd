"""Quality measurements: BEIR retrieval metrics, and answer quality on a question set."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from bot.answer import candidates, of_type
from bot.config import Settings
from bot.engine import Engine
from index.chunking import fold
from index.embedder import Embedder
from index.errors import Error
from index.indexer import build
from index.records import Document
from index.search import MODES, search
from index.store import DocInfo, Params, Store

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


# -- answers (question set) --------------------------------------------------------------------


def _contains(haystack: str, needle: str) -> bool:
    return fold(needle).casefold() in fold(haystack).casefold()


def read_qa(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def calibrate(engine: Engine, rows: list[dict], max_false_refusals: float = 0.05) -> float:
    """The highest answer threshold that refuses at most 5% of answerable questions.

    Refusing a fair question is the costlier error for members, so the bound on false
    refusals is met first; within it, as many unanswerable questions as possible are refused.
    """
    answerable, other = [], []
    for row in rows:
        question = row["question"]
        ranked = of_type(question, candidates(question, engine.search(question), engine.idf()))
        (answerable if row["answerable"] else other).append(ranked[0].score if ranked else 0.0)
    answerable.sort()
    allowed = int(max_false_refusals * len(answerable))  # answerable scores we may fall below
    lowest_kept = answerable[allowed]
    below = [s for s in answerable + other if s < lowest_kept]
    return round((lowest_kept + max(below)) / 2 if below else lowest_kept, 4)


def qa(engine: Engine, path: Path, split: str = "test", calibrate_first: bool = False) -> dict:
    """Key-fact rate, Recall@3, refusal rates and quote exactness on one split of a QA set."""
    rows = read_qa(path)
    if calibrate_first:
        threshold = calibrate(engine, [r for r in rows if r.get("split") == "calibrate"])
        engine.settings = replace(engine.settings, answer_threshold=threshold)
    rows = [r for r in rows if r.get("split", "test") == split]
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]
    docs = {d: doc for ix in engine.indexes.values() for d, doc in ix.docs.items()}
    key_fact = recall3 = refused = false_refusals = quotes = exact = 0
    failures = []
    answers = asyncio.run(_answer_all(engine, [r["question"] for r in rows]))
    for row, (answer, _) in zip(rows, answers, strict=True):
        for c in answer.citations:
            quotes += 1
            exact += docs[c.chunk.doc_id].text[c.start : c.end] == c.quote
        if not row["answerable"]:
            refused += not answer.found
            if answer.found:
                failures.append((row["id"], "answered", answer.text))
            continue
        hits = engine.search(row["question"], k=3)
        recall3 += any(_contains(h.chunk.text, row["gold"]) for h in hits)
        false_refusals += not answer.found
        if answer.found and _contains(answer.text, row["key_fact"]):
            key_fact += 1
        else:
            failures.append((row["id"], row["question"], answer.text))
    generated = [stats for _, stats in answers if stats is not None]
    model = {}
    if generated:  # a model is configured: how much of what it wrote survived verification
        model = {
            "sentences_kept": sum(s.kept for s in generated)
            / max(1, sum(s.generated for s in generated)),
            "fallback_rate": sum(s.fell_back for s in generated) / len(generated),
        }
    return {
        **model,
        "split": split,
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "threshold": engine.settings.answer_threshold,
        "key_fact": key_fact / max(1, len(answerable)),
        "recall@3": recall3 / max(1, len(answerable)),
        "refused_unanswerable": refused / max(1, len(unanswerable)),
        "false_refusals": false_refusals / max(1, len(answerable)),
        "quotes_exact": exact / max(1, quotes),
        "quotes": quotes,
        "failures": failures,
    }


async def _answer_all(engine: Engine, questions: list[str]) -> list:
    return [await engine.answer(q) for q in questions]


def format_qa(r: dict) -> str:
    lines = [
        f"split {r['split']}: {r['answerable']} answerable, {r['unanswerable']} unanswerable, "
        f"threshold {r['threshold']}",
        f"key fact present        {r['key_fact']:6.1%}",
        f"gold passage Recall@3   {r['recall@3']:6.1%}",
        f"unanswerable refused    {r['refused_unanswerable']:6.1%}",
        f"answerable refused      {r['false_refusals']:6.1%}",
        f"quotes exact            {r['quotes_exact']:6.1%} of {r['quotes']}",
    ]
    if "sentences_kept" in r:
        lines += [
            f"model sentences kept    {r['sentences_kept']:6.1%}",
            f"fallback to extractive  {r['fallback_rate']:6.1%}",
        ]
    lines += [f"  miss {i}: {q} -> {a[:120]}" for i, q, a in r["failures"]]
    return "\n".join(lines)
