"""Small immutable records shared by indexing, search and answering."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Document:
    """One source document: `text` is the original extracted text that offsets point into."""

    doc_id: str  # stable: the path relative to its root, e.g. "statement.txt" or "uploads/x.pdf"
    title: str
    text: str
    source: str  # the file it came from
    pages: tuple[int, ...] = ()  # start offset of each page, for paged formats (PDF)
    # Documents from the web (index/web/pages.py); empty for files.
    url: str = ""  # what citations link to
    page_text: str = ""  # the page's rendered text, one block a line: text fragments match it
    author: str = ""
    published: str = ""  # the date the page gives, YYYY-MM-DD


@dataclass(frozen=True)
class Chunk:
    """A passage of a document; `text == document.text[start:end]`."""

    doc_id: str
    title: str
    start: int
    end: int
    text: str
    location: str  # human location, e.g. "¶3" or "p. 2, ¶1"
    sentences: tuple[tuple[int, int], ...]  # document offsets of each sentence in the chunk


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its fused score and the components that produced it."""

    chunk: Chunk
    score: float
    dense_score: float | None = None  # cosine similarity to the query
    dense_rank: int | None = None  # 1-based; None when not in the dense candidates
    lexical_rank: int | None = None  # 1-based; None when not in the BM25 candidates
    sentence_scores: tuple[float, ...] = ()  # cosine of each sentence to the query
