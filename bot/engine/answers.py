"""What the answer engine returns: the JSON contract for the Discord layer, scripts and eval."""

from __future__ import annotations

from dataclasses import dataclass

from index.records import Chunk


@dataclass(frozen=True)
class Citation:
    """A numbered source: `quote` is exactly the document text between `start` and `end`.

    `url`, when the document has an address, links to the passage (shown by the Discord layer).
    """

    n: int
    chunk: Chunk
    quote: str
    start: int
    end: int
    score: float
    url: str | None = None

    def to_dict(self) -> dict:
        out = {
            "n": self.n,
            "doc_id": self.chunk.doc_id,
            "title": self.chunk.title,
            "location": self.chunk.location,
            "quote": self.quote,
            "start": self.start,
            "end": self.end,
            "score": round(self.score, 4),
        }
        if self.url:
            out["url"] = self.url
        return out


@dataclass(frozen=True)
class Answer:
    """An answer whose every `[n]` marker refers to exactly one citation."""

    question: str
    text: str
    citations: tuple[Citation, ...]
    found: bool
    entry: int | None = None  # the moderators' answer it repeats (bot/engine/knowledge.py)

    def to_dict(self) -> dict:
        out = {
            "question": self.question,
            "answer": self.text,
            "found": self.found,
            "citations": [c.to_dict() for c in self.citations],
        }
        if self.entry is not None:
            out["entry"] = self.entry
        return out
