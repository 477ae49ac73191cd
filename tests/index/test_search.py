from index.indexer import update
from index.search import search
from index.store import Params, Store

REVIEW = """Xbox One X review

Gallery: Xbox One X | 14 Photos

The Xbox One X is the most powerful console Microsoft has built, and it plays more games in \
native 4K than its rival.

The biggest knock against the Xbox One X is its $500 price.

Gallery: Xbox One X screenshots | 9 Photos

Microsoft's Xbox One X runs most of its library faster than the older Xbox One S does.
"""


def test_hybrid_weighs_scores_so_a_slight_bm25_lead_does_not_outrank_a_clear_dense_one(
    tmp_path, embedder
):
    """Every passage shares the question's words, so BM25 barely separates them; reciprocal-rank
    fusion would still make its first place count as much as the model's."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "review.txt").write_text(REVIEW, encoding="utf-8")
    params = Params(embedder.model_id, embedder.dim, 800, 1)
    index, _ = update(Store(tmp_path / "ix"), tmp_path / "data", params, embedder)
    question = "How much is the Xbox One X?"
    hits = search([index], question, embedder.encode([question])[0], k=10)
    assert hits[0].chunk.text == "The biggest knock against the Xbox One X is its $500 price."
    assert hits[0].dense_rank == 1 and hits[0].lexical_rank > 1
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    by_rank = max(hits, key=lambda h: sum(1 / (60 + r) for r in (h.dense_rank, h.lexical_rank)))
    assert by_rank.chunk.text == "Xbox One X review"
