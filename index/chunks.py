"""An index's chunks held as a few arrays; each Chunk record is made only when it is read."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence

import numpy as np

from index.records import Chunk, Document

# (doc_id, start, end, location, sentences): one chunk as chunks.jsonl stores it
Row = tuple[str, int, int, str, Sequence[Sequence[int]]]


class Chunks(Sequence[Chunk]):
    """The chunks of one index version: about 120 bytes each in memory.

    A list of Chunk objects costs about 1.7 KB a chunk, most of it the copy of the chunk's text
    and its tuples of sentence offsets: 1.7 GB at a million chunks (bench/bench.py, figure 6).
    Here a chunk's text stays in its document's, sliced when the chunk is read (a handful per
    question).
    """

    def __init__(self, docs: dict[str, Document], rows: Iterable[Row]) -> None:
        self.docs = docs
        numbers: dict[str, int] = {}
        doc, bounds, self.locations, sentences, counts = [], [], [], [], [0]
        for doc_id, start, end, location, sents in rows:
            if doc_id not in docs:
                raise KeyError(f"a chunk of unknown document {doc_id!r}")
            doc.append(numbers.setdefault(doc_id, len(numbers)))
            bounds.append((start, end))
            self.locations.append(sys.intern(location))  # "¶3" repeats across documents
            sentences.extend(sents)
            counts.append(len(sents))
        self.doc_ids = list(numbers)
        self.doc = np.array(doc, np.int32)
        self.bounds = np.array(bounds, np.int64).reshape(-1, 2)
        self.sentences = np.array(sentences, np.int64).reshape(-1, 2)
        self._sentence_start = np.cumsum(counts, dtype=np.int64)

    def sentence_rows(self, i: int) -> slice:
        """Where chunk `i`'s sentences sit among all sentences (and their vectors)."""
        return slice(int(self._sentence_start[i]), int(self._sentence_start[i + 1]))

    @classmethod
    def of(cls, chunks: Iterable[Chunk], docs: dict[str, Document]) -> Chunks:
        return cls(docs, ((c.doc_id, c.start, c.end, c.location, c.sentences) for c in chunks))

    def __len__(self) -> int:
        return len(self.doc)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(f"chunk {i} of {len(self)}")
        i %= len(self)
        doc = self.docs[self.doc_ids[self.doc[i]]]
        start, end = (int(x) for x in self.bounds[i])
        sentences = tuple((int(a), int(b)) for a, b in self.sentences[self.sentence_rows(i)])
        return Chunk(
            doc.doc_id, doc.title, start, end, doc.text[start:end], self.locations[i], sentences
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]
