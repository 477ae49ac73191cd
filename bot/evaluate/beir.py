"""Retrieval quality: BEIR datasets (nDCG@10, Recall@100, MRR@10) through the engine's index."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

from bot.config import Settings
from index.embedder import Embedder
from index.errors import Error
from index.indexer import build
from index.records import Document
from index.search import MODES, search
from index.store import DocInfo, Params, Store


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


def load_beir(
    folder: Path, split: str = "test"
) -> tuple[list[Document], dict[str, str], dict[str, dict[str, int]]]:
    """Documents, one split's queries (id -> text) and qrels (query -> doc -> grade) of a BEIR
    folder."""
    try:
        docs = []
        with open(folder / "corpus.jsonl", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                title = row.get("title", "").strip()
                text = f"{title}. {row['text']}" if title else row["text"]
                docs.append(Document(str(row["_id"]), title or str(row["_id"]), text, "corpus"))
        qrels: dict[str, dict[str, int]] = {}
        with open(folder / "qrels" / f"{split}.tsv", encoding="utf-8") as f:
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


def beir(
    folder: Path,
    settings: Settings,
    embedder: Embedder | None = None,
    progress=None,
    split: str = "test",
) -> dict:
    """Mean metrics per retrieval mode; the index is cached in the state folder."""
    docs, queries, qrels = load_beir(folder, split)
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
