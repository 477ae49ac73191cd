"""Hybrid retrieval: dense (FAISS) and lexical (BM25) candidates fused by reciprocal rank."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from index.chunking import fold
from index.records import Hit
from index.store import Index

MODES = ("hybrid", "dense", "lexical")
RRF_K = 60  # the constant from Cormack et al. (2009); damps the weight of the very top ranks


def search(
    indexes: Sequence[Index],
    query: str,
    qvec: np.ndarray | None,
    k: int = 5,
    mode: str = "hybrid",
    candidates: int = 100,
) -> list[Hit]:
    """The best `k` chunks across `indexes` for a query and its (unit) embedding.

    Candidates from each index are merged by score first: cosines are comparable across
    indexes built with one model, and BM25 scores nearly so. Dense candidates are ranked by
    the chunk's cosine plus its best sentence's, so one sentence that matches well lifts a
    long passage whose average meaning is diluted.
    """
    if mode not in MODES:
        raise ValueError(f"unknown search mode {mode!r}")
    n = max(k, candidates) if mode == "hybrid" else k
    dense = _merge(ix.dense(qvec, n) for ix in indexes) if mode != "lexical" else []
    sentences = {key: indexes[key[0]].sentence_scores(key[1], qvec) for key, _ in dense}
    dense.sort(key=lambda kv: -(kv[1] + sentences[kv[0]].max(initial=-1.0)))
    lexical = _merge(ix.lexical.search(fold(query), n) for ix in indexes) if mode != "dense" else []
    dense_rank = {key: r for r, (key, _) in enumerate(dense[:n], 1)}
    lexical_rank = {key: r for r, (key, _) in enumerate(lexical[:n], 1)}
    if mode == "dense":
        ranked = dense[:k]
    elif mode == "lexical":
        ranked = lexical[:k]
    else:
        fused: dict[tuple[int, int], float] = {}
        for ranks in (dense_rank, lexical_rank):
            for key, r in ranks.items():
                fused[key] = fused.get(key, 0.0) + 1.0 / (RRF_K + r)
        ranked = sorted(fused.items(), key=lambda kv: -kv[1])[:k]
    hits = []
    for (which, i), score in ranked:
        ix = indexes[which]
        if qvec is not None and (which, i) not in sentences:  # a lexical-only candidate
            sentences[which, i] = ix.sentence_scores(i, qvec)
        hits.append(
            Hit(
                chunk=ix.chunks[i],
                score=float(score),
                dense_score=float(ix.vectors[i] @ qvec) if qvec is not None else None,
                dense_rank=dense_rank.get((which, i)),
                lexical_rank=lexical_rank.get((which, i)),
                sentence_scores=tuple(sentences[which, i].tolist()) if qvec is not None else (),
            )
        )
    return hits


def _merge(results) -> list[tuple[tuple[int, int], float]]:
    """[(index number, chunk id), score] from every index, best first."""
    merged = [
        ((which, int(i)), float(s))
        for which, (ids, scores) in enumerate(results)
        for i, s in zip(ids, scores, strict=True)
    ]
    return sorted(merged, key=lambda kv: -kv[1])
