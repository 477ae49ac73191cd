"""Hybrid retrieval: dense (FAISS) and lexical (BM25) candidates fused by a weighted sum of their
normalised scores."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from index.chunking import fold
from index.records import Hit
from index.store import Index

MODES = ("hybrid", "dense", "lexical")
# A hybrid passage scores DENSE_WEIGHT * its closeness (cosine plus best sentence's, halved into
# [-1, 1]) + the rest * its BM25 score over the best candidate's (Bruch, Gai and Ingber, 2023:
# a convex combination of scores beats reciprocal-rank fusion, which makes a small BM25 lead
# between passages that all share the question's topic words as large as a clear one). Chosen on
# the calibrate splits and SciFact's train queries (README, "Retrieval").
DENSE_WEIGHT = 0.65


def search(
    indexes: Sequence[Index],
    query: str,
    qvec: np.ndarray | None,
    k: int = 5,
    mode: str = "hybrid",
    candidates: int = 100,
) -> list[Hit]:
    """The best `k` chunks across `indexes` for a query and its (unit) embedding.

    Candidates from each index are merged by score: cosines are comparable across indexes
    built with one model, and BM25 scores nearly so. A passage's closeness to the query is its
    cosine plus its best sentence's, so one sentence that matches well lifts a long passage
    whose average meaning is diluted.
    """
    if mode not in MODES:
        raise ValueError(f"unknown search mode {mode!r}")
    n = max(k, candidates) if mode == "hybrid" else k
    dense = _merge(ix.dense(qvec, n) for ix in indexes) if mode != "lexical" else []
    lexical = _merge(ix.lexical.search(fold(query), n) for ix in indexes) if mode != "dense" else []
    keys = list(dict.fromkeys(key for key, _ in dense + lexical))
    cosine, sentences = {}, {}
    for w, ix in enumerate(indexes if qvec is not None else ()):
        ids = [i for v, i in keys if v == w]
        for i, (cos, sent) in zip(ids, ix.cosines(ids, qvec), strict=True):
            cosine[w, i], sentences[w, i] = cos, sent
    closeness = {key: cosine[key] + sentences[key].max(initial=-1.0) for key in cosine}
    dense.sort(key=lambda kv: -closeness[kv[0]])
    dense_rank = {key: r for r, (key, _) in enumerate(dense, 1)}
    lexical_rank = {key: r for r, (key, _) in enumerate(lexical, 1)}
    if mode == "dense":
        ranked = dense[:k]
    elif mode == "lexical":
        ranked = lexical[:k]
    else:
        bm25, best = dict(lexical), (lexical[0][1] if lexical else 0.0) or 1.0
        fused = {
            key: DENSE_WEIGHT * closeness[key] / 2 + (1 - DENSE_WEIGHT) * bm25.get(key, 0.0) / best
            for key in keys
        }
        ranked = sorted(fused.items(), key=lambda kv: -kv[1])[:k]
    return [
        Hit(
            chunk=indexes[which].chunks[i],
            score=float(score),
            dense_score=cosine.get((which, i)),
            dense_rank=dense_rank.get((which, i)),
            lexical_rank=lexical_rank.get((which, i)),
            sentence_scores=tuple(sentences[which, i].tolist()) if qvec is not None else (),
        )
        for (which, i), score in ranked
    ]


def _merge(results) -> list[tuple[tuple[int, int], float]]:
    """[(index number, chunk id), score] from every index, best first."""
    merged = [
        ((which, int(i)), float(s))
        for which, (ids, scores) in enumerate(results)
        for i, s in zip(ids, scores, strict=True)
    ]
    return sorted(merged, key=lambda kv: -kv[1])
