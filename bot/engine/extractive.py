"""Extractive answers: the sentences that best answer a question, quoted exactly and cited."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from bot.engine.answers import Answer, Citation
from index.chunking import fold
from index.errors import Error
from index.lexical import terms
from index.reader import Weights
from index.records import Chunk, Hit

NOT_FOUND = "The indexed documents don't answer that."
MAX_SENTENCES = 3
PASSAGES = 3  # sentences come from the best three passages only
# A sentence's score mixes its own similarity to the question, the share of the question's
# (IDF-weighted) terms it contains, and how well its passage matched. Chosen on the QA set's
# calibration split (see README, "Answer quality").
W_SENTENCE, W_WORDS, W_PASSAGE = 0.55, 0.25, 0.20
MARGIN = 0.15  # further sentences must score within this of the best one
MIN_WORDS = 4  # shorter sentences (captions such as "Image: Jeremy Corbyn.") answer nothing
# A refusal lists the closest sentences (at most RELATED) that score within RELATED_BELOW of the
# threshold. On the QA set, on-topic questions the statement doesn't answer score 0.14-0.19 and
# small talk ("what's the capital of Australia?") at most 0.11: only the first get a list.
RELATED, RELATED_BELOW = 2, 0.08
# With the reader, a refusal lists sentences at least this similar to the question (cosine): on
# the calibrate splits, 1.7% of questions about documents not indexed and 77% of the statement's
# unanswerable ones (bench/reader_knobs.py).
RELATED_COSINE = 0.40
READER_MARGIN = 0.2  # further sentences within this of the best (key fact 53.8% at 0, 77.4%)
THRESHOLD = 0.201  # without a reader; with one, the reader's own calibrated threshold

# Expected answer types (as in classic factoid QA): a "how many" question needs a count, "how
# long" a duration, "how old" an age, "how much money" an amount, and "when" a time.
_NUM = (
    r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty"
    r"|forty|fifty|hundred|thousand|million|billion|dozen|once|twice)\b"
)
_NUMBER = re.compile(_NUM, re.I)
_UNITS = r"(years?|months?|weeks?|days?|hours?|minutes?|decades?|centur(y|ies))"
_TYPES = [  # (question pattern, pattern the sentence must match)
    (r"\bhow (many|often)\b", _NUM),
    (r"\bhow long\b", rf"({_NUM})\W+(\w+\W+)?{_UNITS}\b|\bsince\b"),
    (r"\bhow old\b|\bage\b", r"\d|\b(aged?|years? old|born)\b"),
    (
        r"\bhow much\b.*\b(money|cost|raised?|fund|donat|spen[dt]|pay|paid|worth|budget)",
        r"[£$€]|\b(pounds?|dollars?|euros?|million|billion|thousand)\b",
    ),
    (
        r"^\W*when\b|\bwhat (year|date|time)\b|\bdeadline\b",
        r"\b(1[5-9]|20)\d\d\b|\d(st|nd|rd|th)\b|\d[/.]\d|\b(today|tonight|yesterday|tomorrow|ago"
        r"|since|(last|next|this|that) (year|month|week|spring|summer|autumn|winter)|january"
        r"|february|march|april|may|june|july|august|september|october|november|december"
        r"|monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b",
    ),
]
_TYPES = [(re.compile(q, re.I), re.compile(a, re.I)) for q, a in _TYPES]
_COUNTED = re.compile(r"\bhow many\s+(\w+)", re.I)


class QuestionError(Error):
    """The question cannot be answered as asked (empty, too long, no words)."""


@dataclass(frozen=True)
class Candidate:
    chunk: Chunk
    start: int
    end: int
    score: float
    evidence: tuple[float, ...] = ()  # with a reader: its probability, and the sentence's cosine

    @property
    def text(self) -> str:
        return self.chunk.text[self.start - self.chunk.start : self.end - self.chunk.start]


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


def fits_type(question: str, sentence: str) -> bool:
    """Whether a sentence could answer the kind of question asked (counts, times, amounts)."""
    if any(q.search(question) and not a.search(sentence) for q, a in _TYPES):
        return False
    counted = _COUNTED.search(question)
    if counted and (thing := terms(counted.group(1))):
        # "How many members…": where the sentence names members, a number must count them.
        words = sentence.split()
        named = [i for i, w in enumerate(words) if terms(w) == thing]
        if named and not any(_NUMBER.search(" ".join(words[max(0, i - 3) : i])) for i in named):
            return False
    return all(n in sentence for n in re.findall(r"\d+", question))


def scored(
    question: str, hits: list[Hit], idf: Callable[[str], float] | None = None
) -> list[Candidate]:
    """Without a reader: sentences of the best passages scored by similarity, best first."""
    wanted = set(terms(fold(question)))
    weight = {t: idf(t) if idf else 1.0 for t in wanted}
    total = sum(weight.values())
    out = []
    for hit in hits[:PASSAGES]:
        chunk, passage = hit.chunk, hit.dense_score or 0.0
        for (a, b), similarity in zip(chunk.sentences, hit.sentence_scores, strict=True):
            found = wanted & set(terms(fold(chunk.text[a - chunk.start : b - chunk.start])))
            words = sum(weight[t] for t in found) / total if total else 0.0
            score = W_SENTENCE * similarity + W_WORDS * words + W_PASSAGE * passage
            out.append(Candidate(chunk, a, b, score))
    return _best(out)


def read(hits: list[Hit], probabilities: list, weights: Weights) -> list[Candidate]:
    """With a reader: sentences of the passages it read, by the probability that each answers,
    best first. The reader's probability and the sentence's cosine to the question are combined
    by the logistic weights calibrated with the reader (`Weights`)."""
    out = []
    for hit, probs in zip(hits, probabilities, strict=False):
        for (a, b), p, cos in zip(hit.chunk.sentences, probs, hit.sentence_scores, strict=True):
            out.append(Candidate(hit.chunk, a, b, weights.probability(p, cos), (float(p), cos)))
    return _best(out)


def by_topic(hits: list[Hit]) -> list[Candidate]:
    """Sentences of the best passages by their similarity to the question alone."""
    out = [
        Candidate(hit.chunk, a, b, s)
        for hit in hits[:PASSAGES]
        for (a, b), s in zip(hit.chunk.sentences, hit.sentence_scores, strict=True)
    ]
    return _best(out)


def _best(found: list[Candidate]) -> list[Candidate]:
    """Best first; captions and other very short sentences dropped; a sentence that overlapping
    chunks both hold counted once, at its best score."""
    kept: dict[tuple[str, int], Candidate] = {}
    for c in found:
        key = (c.chunk.doc_id, c.start)
        if len(c.text.split()) >= MIN_WORDS and (key not in kept or kept[key].score < c.score):
            kept[key] = c
    return sorted(kept.values(), key=lambda c: -c.score)


def of_type(question: str, ranked: list[Candidate]) -> list[Candidate]:
    """The candidates that could answer the kind of question asked."""
    return [c for c in ranked if fits_type(question, c.text)]


def bm25_idf(df: int, n: int) -> float:
    """BM25's inverse document frequency: rare terms weigh more, unseen ones most."""
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


@dataclass(frozen=True)
class Ranking:
    """The sentences that may answer a question, best first, and those a refusal points at."""

    candidates: tuple[Candidate, ...]
    related: tuple[Candidate, ...]  # the closest by topic, whatever the kind of answer asked
    margin: float  # further sentences must score within this of the best one

    @property
    def best(self) -> float:
        return self.candidates[0].score if self.candidates else 0.0


def by_similarity(
    question: str,
    hits: list[Hit],
    threshold: float,
    idf: Callable[[str], float] | None = None,
) -> Ranking:
    """Without a reader (READER=none): similarity, word overlap and answer types."""
    ranked = scored(question, hits, idf)
    related = [c for c in ranked[:RELATED] if c.score >= threshold - RELATED_BELOW]
    return Ranking(tuple(of_type(question, ranked)), tuple(related), MARGIN)


def by_reader(hits: list[Hit], probabilities: list, weights: Weights) -> Ranking:
    """From the reader's probabilities for the passages it read (`hits`)."""
    related = [c for c in by_topic(hits)[:RELATED] if c.score >= RELATED_COSINE]
    return Ranking(tuple(read(hits, probabilities, weights)), tuple(related), READER_MARGIN)


def compose(question: str, ranking: Ranking, threshold: float) -> Answer:
    """The answer: the best sentence and those within the margin of it (at most three), quoted
    exactly with citations; or, below `threshold`, a plain refusal that may point at the
    related sentences."""
    ranked = ranking.candidates
    if not ranked or ranking.best < threshold:
        cited = tuple(
            Citation(n, c.chunk, c.text, c.start, c.end, c.score)
            for n, c in enumerate(ranking.related, 1)
        )
        markers = ", ".join(f"[{c.n}]" for c in cited)
        text = f"{NOT_FOUND} These passages might be related: {markers}." if cited else NOT_FOUND
        return Answer(question, text, cited, False)
    floor = max(threshold, ranking.best - ranking.margin)
    chosen = [c for c in ranked if c.score >= floor][:MAX_SENTENCES]
    first_doc = ranked[0].chunk.doc_id
    chosen.sort(key=lambda c: (c.chunk.doc_id != first_doc, c.chunk.doc_id, c.start))
    citations: list[Citation] = []
    for c in chosen:
        last = citations[-1] if citations else None
        gap = _between(last, c) if last else None
        if last and gap is not None and not gap.strip():
            # Adjacent sentences read better as one quote: extend the previous citation.
            citations[-1] = Citation(
                last.n,
                c.chunk,
                last.quote + gap + c.text,
                last.start,
                c.end,
                max(last.score, c.score),
            )
        else:
            citations.append(Citation(len(citations) + 1, c.chunk, c.text, c.start, c.end, c.score))
    titles = {c.chunk.title for c in citations}
    lead = f"According to “{titles.pop()}”:" if len(titles) == 1 else "According to the documents:"
    body = " ".join(f"{c.quote} [{c.n}]" for c in citations)
    return Answer(question, f"{lead} {body}", tuple(citations), True)


def _between(last: Citation, c: Candidate) -> str | None:
    """The document text between a citation and the next sentence, if the sentence's chunk
    holds both (so that the joined quote is a slice of it)."""
    chunk = c.chunk
    if last.chunk.doc_id == chunk.doc_id and chunk.start <= last.start <= last.end <= c.start:
        return chunk.text[last.end - chunk.start : c.start - chunk.start]
    return None
