"""Paragraph- and sentence-aware chunking that keeps exact character offsets."""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right

from index.records import Chunk, Document

_PARAGRAPH = re.compile(r"\n[ \t\u00a0]*\n\s*")
# A sentence ends at . ! ? or … (optionally followed by closing quotes/brackets) and whitespace,
# when the next sentence starts with an opening quote, capital letter or digit.
_SENTENCE_END = re.compile(
    r"(?<=[.!?…])[\"'”’)\]]*(?=\s+[\"'“‘(\[]*[A-Z0-9À-Ý])"
    r"|(?<=[.!?…][\"'”’)\]])(?=\s)"
)
_ABBREVIATIONS = ("Mr.", "Mrs.", "Ms.", "Dr.", "St.", "Prof.", "e.g.", "i.e.", "etc.", "vs.", "No.")
# Length-preserving folding: matching sees straight quotes and plain spaces, offsets stay valid.
_FOLD = str.maketrans({"\u00a0": " ", "‘": "'", "’": "'", "“": '"', "”": '"', "–": "-", "—": "-"})


def fold(text: str) -> str:
    """Normalise text for matching without changing its length (so offsets still apply)."""
    text = text.translate(_FOLD)
    if text.isascii():
        return text
    return "".join(c if len(n := unicodedata.normalize("NFKC", c)) != 1 else n for c in text)


def paragraphs(text: str) -> list[tuple[int, int]]:
    """(start, end) of each non-blank paragraph, separated by blank lines."""
    spans, pos = [], 0
    for m in _PARAGRAPH.finditer(text):
        spans.append((pos, m.start()))
        pos = m.end()
    spans.append((pos, len(text)))
    return [_strip(text, a, b) for a, b in spans if text[a:b].strip()]


def sentences(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """(start, end) of each sentence of text[start:end], whitespace trimmed."""
    spans, pos = [], start
    for m in _SENTENCE_END.finditer(text, start, end):
        if text[max(start, m.start() - 6) : m.start()].endswith(_ABBREVIATIONS):
            continue
        spans.append((pos, m.end()))
        pos = m.end()
    spans.append((pos, end))
    return [_strip(text, a, b) for a, b in spans if text[a:b].strip()]


def _strip(text: str, a: int, b: int) -> tuple[int, int]:
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return a, b


def _pieces(text: str, a: int, b: int, size: int) -> list[tuple[int, int]]:
    """Split a sentence longer than `size` at whitespace (a wall of text with no full stops)."""
    out = []
    while b - a > size:
        cut = text.rfind(" ", a + size // 2, a + size)
        cut = cut if cut > a else a + size
        out.append(_strip(text, a, cut))
        a = _strip(text, cut, b)[0]
    out.append((a, b))
    return out


def chunk_document(doc: Document, size: int = 800, overlap: int = 1) -> list[Chunk]:
    """Pack each paragraph's sentences into chunks of at most ~`size` characters.

    Chunks never cross paragraphs; consecutive chunks of a long paragraph share their last
    `overlap` sentences so a fact split across a boundary is still found whole.
    """
    text, chunks = doc.text, []
    for p, (pa, pb) in enumerate(paragraphs(text), start=1):
        sents = [s for a, b in sentences(text, pa, pb) for s in _pieces(text, a, b, size)]
        i = 0
        while i < len(sents):
            j = i + 1
            while j < len(sents) and sents[j][1] - sents[i][0] <= size:
                j += 1
            group = sents[i:j]
            a, b = group[0][0], group[-1][1]
            chunks.append(
                Chunk(doc.doc_id, doc.title, a, b, text[a:b], _location(doc, a, p), tuple(group))
            )
            if j >= len(sents):
                break
            i = max(i + 1, j - overlap)
    return chunks


def _location(doc: Document, offset: int, paragraph: int) -> str:
    if not doc.pages:
        return f"¶{paragraph}"
    page = bisect_right(doc.pages, offset)
    return f"p. {page}, ¶{paragraph}"
