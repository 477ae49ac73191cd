"""BM25 over chunk texts (bm25s, English stop words and Snowball stemming)."""

from __future__ import annotations

from pathlib import Path

import bm25s
import numpy as np
import Stemmer

from index.chunking import fold
from index.records import Chunk

_STEMMER = Stemmer.Stemmer("english")
# What BM25 reads of a chunk (`passage`); an index saved reading otherwise is read again at load.
READS = "title+text"


def passage(chunk: Chunk) -> str:
    """What BM25 reads of a chunk: its document's title, then its text. A passage rarely names
    what its article is about ("he said…"): with the title, the passage holding the answer was
    among the best three for 84.9% of the real pages' calibrate questions, not 81.1% (README,
    "Answers"). The model reads the text alone: titled vectors cost the statement's answers."""
    return fold(f"{chunk.title}\n\n{chunk.text}")


def terms(text: str) -> list[str]:
    """The stemmed, stop-word-free terms BM25 sees in a text."""
    return _tokens([text], ids=False)[0]


def _tokens(texts: list[str], ids: bool):
    return bm25s.tokenize(
        texts, stopwords="en", stemmer=_STEMMER, return_ids=ids, show_progress=False
    )


class Lexical:
    """A BM25 index whose document i is chunk i."""

    def __init__(self, retriever: bm25s.BM25, size: int) -> None:
        self.retriever = retriever
        self.size = size

    @classmethod
    def build(cls, texts: list[str]) -> Lexical:
        retriever = bm25s.BM25()
        if texts:
            retriever.index(_tokens(texts, ids=True), show_progress=False)
        return cls(retriever, len(texts))

    def save(self, folder: Path) -> None:
        if self.size:
            self.retriever.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: Path, size: int) -> Lexical:
        if not size:
            return cls(bm25s.BM25(), 0)
        return cls(bm25s.BM25.load(str(folder), mmap=True, show_progress=False), size)

    def document_frequency(self, term: str) -> int:
        """How many chunks contain a (stemmed) term."""
        i = self.retriever.vocab_dict.get(term) if self.size else None
        if i is None:
            return 0
        indptr = self.retriever.scores["indptr"]  # CSC: one column of scores per term
        return int(indptr[i + 1] - indptr[i])

    def search(self, query: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Ids and scores of the best `n` chunks sharing a term with the query, best first."""
        tokens = _tokens([query], ids=False)
        if not self.size or not tokens[0]:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        ids, scores = self.retriever.retrieve(tokens, k=min(n, self.size), show_progress=False)
        keep = scores[0] > 0
        return ids[0][keep].astype(np.int64), scores[0][keep].astype(np.float32)
