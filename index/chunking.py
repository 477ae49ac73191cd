"""Paragraph- and sentence-aware chunking that keeps exact character offsets."""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right

from syntok.segmenter import analyze

from index.records import Chunk, Document

_PARAGRAPH = re.compile(r"\n[ \t\u00a0]*\n\s*")
_LINE_BREAK = re.compile(r"[ \t]*\n\s*(?=[^\s])(?![a-zà-ÿ])")
# Paragraphs that are not the document's own text: captions, credits and licence lines, "Read
# more" and related-story teasers, share and sign-up prompts, reference lists. They are never
# chunked, so they never answer (the statement's photo credit answered "who wrote this?").
_NOT_CONTENT = re.compile(
    r"^\W*((image|photo(graph)?|picture|caption|credits?|source|via|topics|tags)\s*:"
    r"|(read|see|learn) (more|also)\b|read\s*:|related( stories| articles| posts)?\s*:"
    r"|more (from|on) .{0,60}:|share (this|on)\b|(sign up|subscribe) (for|to)\b|follow us\b"
    r"|advertisement\s*$|loading comments|\d[\d,]* comments\s*$|from the section\b|©|\^ )",
    re.I,
)
_SHORT_NOT_CONTENT = re.compile(  # only in short paragraphs: a long one is the text itself
    r"licensed under (the |a )?(creative commons|cc[- ]by)|all rights reserved|getty images"
    r"|\((photo|image|picture)s?\b[^)]*\)\s*$|\bphoto(graph)?s? (by|credit)\b"
    r"|^this (article|story|post) (originally )?(appeared|was (re)?published|was reprinted)"
    r"|contributed (to )?(this|the) report\.?\s*$",
    re.I,
)
SHORT = 300  # characters
# A version of how text is cut into sentences and chunks: indexes built otherwise are rebuilt.
CHUNKER = "syntok-1"
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
    """(start, end) of each sentence of text[start:end], whitespace trimmed.

    A line break ends a sentence unless the next line starts in lower case (a hard-wrapped
    line goes on; a heading or list item does not); syntok cuts the lines, inside quotations
    too. bench/segmenters.py measured it against sentencex, pysbd and the pattern it replaced.
    """
    spans: list[tuple[int, int]] = []
    for a, b in _lines(text, start, end):
        starts = [s[0].offset for paragraph in analyze(text[a:b]) for s in paragraph if s]
        cuts = [a + offset for offset in starts[1:]]
        for x, y in zip([a, *cuts], [*cuts, b], strict=True):
            span = _strip(text, x, y)
            if span[0] < span[1]:
                spans.append(span)
    return spans


def _lines(text: str, start: int, end: int) -> list[tuple[int, int]]:
    out, pos = [], start
    for m in _LINE_BREAK.finditer(text, start, end):
        out.append((pos, m.start()))
        pos = m.end()
    return [*out, (pos, end)]


def content(text: str) -> bool:
    """Whether a paragraph is the document's own text, not a caption, credit or teaser."""
    return not (_NOT_CONTENT.search(text) or len(text) < SHORT and _SHORT_NOT_CONTENT.search(text))


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
        if not content(text[pa:pb]):
            continue
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
