"""Extractive answers: the sentences that best answer a question, quoted exactly and cited."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from bot.records import Answer, Citation
from index.chunking import fold
from index.errors import Error
from index.lexical import terms
from index.records import Chunk, Hit

NOT_FOUND = "The indexed documents don't answer that."
MAX_SENTENCES = 3
# Weights of a sentence's score: its own similarity to the question, the question's words it
# contains, and how well its whole passage matched. Tuned on the calibration split of the QA set.
W_SENTENCE, W_WORDS, W_PASSAGE = 0.55, 0.25, 0.20
MARGIN = 0.08  # further sentences must score within this of the best one


class QuestionError(Error):
    """The question cannot be answered as asked (empty, too long, no words)."""


@dataclass(frozen=True)
class Candidate:
    chunk: Chunk
    start: int
    end: int
    score: float


def clean_question(text: str, max_chars: int) -> str:
    """The question as plain text, or a QuestionError saying what is wrong with it."""
    text = "".join(" " if unicodedata.category(c)[0] == "C" else c for c in text)
    text = re.sub(r"\s+", " ", text).strip()
    if not text:
        raise QuestionError("Please ask a question: the text was empty.")
    if len(text) > max_chars:
        raise QuestionError(
            f"That question is {len(text):,} characters long; please keep it under {max_chars:,}."
        )
    if not any(c.isalnum() for c in text):
        raise QuestionError("Please ask a question in words: that had only symbols or emoji.")
    return text


def candidates(question: str, hits: list[Hit]) -> list[Candidate]:
    """Every sentence of the retrieved passages, scored against the question, best first."""
    wanted = set(terms(fold(question)))
    scored: dict[tuple[str, int], Candidate] = {}
    for hit in hits:
        passage = hit.dense_score or 0.0
        for (a, b), similarity in zip(hit.chunk.sentences, hit.sentence_scores, strict=True):
            text = hit.chunk.text[a - hit.chunk.start : b - hit.chunk.start]
            words = len(wanted & set(terms(fold(text)))) / len(wanted) if wanted else 0.0
            score = W_SENTENCE * similarity + W_WORDS * words + W_PASSAGE * passage
            key = (hit.chunk.doc_id, a)  # overlapping chunks repeat sentences: keep the best
            if key not in scored or scored[key].score < score:
                scored[key] = Candidate(hit.chunk, a, b, score)
    return sorted(scored.values(), key=lambda c: -c.score)


def compose(question: str, hits: list[Hit], threshold: float) -> Answer:
    """The answer: up to three quoted sentences with citations, or a plain refusal."""
    ranked = candidates(question, hits)
    if not ranked or ranked[0].score < threshold:
        return Answer(question, NOT_FOUND, (), False)
    best = ranked[0].score
    chosen = [c for c in ranked if c.score >= max(threshold, best - MARGIN)][:MAX_SENTENCES]
    chosen.sort(key=lambda c: (c.chunk.doc_id != ranked[0].chunk.doc_id, c.chunk.doc_id, c.start))
    citations: list[Citation] = []
    for c in chosen:
        last = citations[-1] if citations else None
        gap = _between(last, c) if last else None
        if last and gap is not None and not gap.strip():
            # Adjacent sentences read better as one quote: extend the previous citation.
            citations[-1] = Citation(
                last.n, last.chunk, last.quote + gap + _quote(c), last.start, c.end,
                max(last.score, c.score),
            )
        else:
            citations.append(Citation(len(citations) + 1, c.chunk, _quote(c), c.start, c.end,
                                      c.score))
    titles = {c.chunk.title for c in citations}
    lead = f"According to “{titles.pop()}”:" if len(titles) == 1 else "According to the documents:"
    body = " ".join(f"{c.quote} [{c.n}]" for c in citations)
    return Answer(question, f"{lead} {body}", tuple(citations), True)


def _quote(c: Candidate) -> str:
    return c.chunk.text[c.start - c.chunk.start : c.end - c.chunk.start]


def _between(last: Citation, c: Candidate) -> str | None:
    """The document text between a citation and the next sentence, if one chunk holds both."""
    chunk = c.chunk
    if last.chunk.doc_id == chunk.doc_id and chunk.start <= last.end <= c.start <= chunk.end:
        return chunk.text[last.end - chunk.start : c.start - chunk.start]
    return None
