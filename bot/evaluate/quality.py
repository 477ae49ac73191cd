"""Answer quality at a threshold: refusals, key facts, right sentences, calibration."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

from bot.engine import Engine
from bot.engine.extractive import compose
from bot.evaluate.questions import Asked, _contains, question_set
from index.reader import Weights, logit, sigmoid

# Refusing a fair question is the costlier error: at most this share of answerable questions
# may be refused, 5% on the statement and 10% on SQuAD's harder, encyclopedic questions.
MAX_FALSE_REFUSALS = {"jsonl": 0.05, "json": 0.10}


def evaluate(engine: Engine, paths: list[Path], split: str, calibrate: bool) -> dict:
    """Reports per question set at the engine's threshold, or at one calibrated first on every
    set's calibrate split (the strictest of their thresholds)."""
    if calibrate:
        threshold = min(
            threshold_for(question_set(engine, p, "calibrate"), MAX_FALSE_REFUSALS[p.suffix[1:]])
            for p in paths
        )
        engine.settings = replace(engine.settings, answer_threshold=threshold)
    sets = {}
    for p in paths:
        asked = question_set(engine, p, split)
        sets[str(p)] = report(asked, engine.threshold)
        if engine.generator and p.suffix == ".jsonl":
            sets[str(p)] |= generated(engine, asked)
    return {"threshold": engine.threshold, "split": split, "sets": sets}


def generated(engine: Engine, asked: list[Asked]) -> dict:
    """With a model configured: how much of what it wrote for these questions survived
    verification, through the bot's own path."""
    answers = asyncio.run(_answer_all(engine, [a.row["question"] for a in asked]))
    stats = [s for _, s in answers if s is not None]
    return {
        "sentences_kept": sum(s.kept for s in stats) / max(1, sum(s.generated for s in stats)),
        "fallback_rate": sum(s.fell_back for s in stats) / max(1, len(stats)),
    }


async def _answer_all(engine: Engine, questions: list[str]) -> list:
    return [await engine.answer(q) for q in questions]


def fit_weights(asked: list[Asked], l2: float = 1e-3) -> Weights:
    """The logistic regression that turns a candidate sentence's evidence (the reader's
    probability, as a logit, and the sentence's cosine) into the probability that it holds the
    answer (the key fact); fitted by Newton's method on every candidate of `asked`."""
    rows, labels = [], []
    for a in asked:
        facts = _facts(a.row) if a.row["answerable"] else []
        for c in a.ranking.candidates:
            rows.append((logit(c.evidence[0]), c.evidence[1], 1.0))
            labels.append(any(_contains(c.text, f) for f in facts))
    x, y = np.array(rows), np.array(labels, float)
    w = np.array([1.0, 0.0, 0.0])
    for _ in range(50):
        q = sigmoid(x @ w)
        gradient = x.T @ (q - y) + l2 * w
        hessian = (x * (q * (1 - q))[:, None]).T @ x + l2 * np.eye(3)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return Weights(*(round(float(v), 4) for v in w))


def _facts(row: dict) -> list[str]:
    return row["key_fact"] if isinstance(row["key_fact"], list) else [row["key_fact"]]


def threshold_for(asked: list[Asked], max_false_refusals: float) -> float:
    """The highest threshold that refuses at most this share of the answerable questions.

    Refusing a fair question is the costlier error for members, so the bound on false
    refusals is met first; within it, as many other questions as possible are refused.
    """
    # Answerable questions left with no candidate (their passages were not found, or no
    # sentence fits the answer type) are refused at any threshold: they do not set it.
    answerable = sorted(a.ranking.best for a in asked if a.row["answerable"] and a.ranking.best)
    others = [a.ranking.best for a in asked if not a.row["answerable"]]
    if not answerable:  # nothing any threshold would keep: refuse everything
        return round(max(others, default=0.0) + 1e-4, 4)
    lowest_kept = answerable[int(max_false_refusals * len(answerable))]
    below = [s for s in answerable + others if s < lowest_kept]
    return round((lowest_kept + max(below)) / 2 if below else lowest_kept, 4)


def report(asked: list[Asked], threshold: float) -> dict:
    """Refusal rates, key facts in the quotes, Recall@3 and quote exactness at a threshold."""
    n: Counter[str] = Counter()
    failures = []
    for a in asked:
        row = a.row
        answer = compose(row["question"], a.ranking, threshold)
        if row.get("doc"):
            n["with_doc"] += 1
            n["wrong_doc"] += answer.found and any(
                c.chunk.doc_id != row["doc"] for c in answer.citations
            )
        for c in answer.citations:
            n["quotes"] += 1
            n["exact"] += c.chunk.text[c.start - c.chunk.start : c.end - c.chunk.start] == c.quote
        if row.get("off_topic"):
            n["off_topic"] += 1
            n["refused_off_topic"] += not answer.found
            continue
        if not row["answerable"]:
            n["unanswerable"] += 1
            n["refused"] += not answer.found
            if answer.found:
                failures.append((row["id"], "answered", answer.text))
            continue
        n["answerable"] += 1
        if row.get("gold"):
            n["with_gold"] += 1
            n["recall3"] += any(_contains(h.chunk.text, row["gold"]) for h in a.hits[:3])
        facts = _facts(row)
        quoted = " ".join(c.quote for c in answer.citations) if answer.found else ""
        hit = any(_contains(quoted, f) for f in facts) if quoted else False
        n["gold_quoted"] += bool(quoted and row.get("gold") and _contains(quoted, row["gold"]))
        # Refused by an answer type: without the rules it would have been answered; and of those,
        # the ones the rules cost, where that answer would have quoted the key fact.
        typed = replace(a.ranking, candidates=tuple(a.ranking.untyped or a.ranking.candidates))
        untyped = compose(row["question"], typed, threshold)
        if not answer.found and untyped.found:
            n["type_refused"] += 1
            said = " ".join(c.quote for c in untyped.citations)
            n["type_lost"] += any(_contains(said, f) for f in facts)
        n["answered"] += answer.found
        n["false_refusals"] += not answer.found
        n["key_fact"] += hit
        if not hit:
            failures.append((row["id"], row["question"], answer.text))
    return {
        "threshold": threshold,
        "answerable": n["answerable"],
        "unanswerable": n["unanswerable"],
        "off_topic": n["off_topic"],
        "key_fact": n["key_fact"] / max(1, n["answerable"]),
        "gold_in_answered": n["key_fact"] / max(1, n["answered"]),
        "recall@3": n["recall3"] / n["with_gold"] if n["with_gold"] else None,
        "gold_quoted": n["gold_quoted"] / n["with_gold"] if n["with_gold"] else None,
        "wrong_doc": n["wrong_doc"] / n["with_doc"] if n["with_doc"] else None,
        "type_refused": n["type_refused"] / max(1, n["answerable"]),
        "type_lost": n["type_lost"] / max(1, n["answerable"]),
        "refused_unanswerable": n["refused"] / max(1, n["unanswerable"]),
        "refused_off_topic": n["refused_off_topic"] / n["off_topic"] if n["off_topic"] else None,
        "false_refusals": n["false_refusals"] / max(1, n["answerable"]),
        "quotes_exact": n["exact"] / max(1, n["quotes"]),
        "quotes": n["quotes"],
        "failures": failures,
    }


MISSES_SHOWN = 20


def format_qa(name: str, r: dict) -> str:
    answerable, off_topic = r["answerable"], r["off_topic"]
    rows = [  # (shown when, label, value)
        (
            answerable,
            "key fact in the quotes",
            f"{r['key_fact']:6.1%} ({r['gold_in_answered']:.1%} of those answered)",
        ),
        (r["recall@3"] is not None, "gold passage Recall@3", f"{r['recall@3'] or 0:6.1%}"),
        (r["recall@3"] is not None, "gold text quoted", f"{r['gold_quoted'] or 0:6.1%}"),
        (
            r["wrong_doc"] is not None,
            "answered from another document",
            f"{r['wrong_doc'] or 0:6.1%}",
        ),
        (
            answerable,
            "refused by an answer type",
            f"{r['type_refused']:6.1%} ({r['type_lost']:.1%} would have had the key fact)",
        ),
        (True, "unanswerable refused", f"{r['refused_unanswerable']:6.1%}"),
        (answerable, "answerable refused", f"{r['false_refusals']:6.1%}"),
        (off_topic, "not-indexed questions refused", f"{r['refused_off_topic'] or 0:6.1%}"),
        (True, "quotes exact", f"{r['quotes_exact']:6.1%} of {r['quotes']}"),
        ("sentences_kept" in r, "model sentences kept", f"{r.get('sentences_kept', 0):6.1%}"),
        ("fallback_rate" in r, "fallback to extractive", f"{r.get('fallback_rate', 0):6.1%}"),
    ]
    lines = [
        f"{name}: {answerable} answerable, {r['unanswerable']} unanswerable"
        + (f", {off_topic} about documents not indexed" if off_topic else "")
        + f"; threshold {r['threshold']}"
    ]
    lines += [f"{label:<30} {value}" for shown, label, value in rows if shown]
    misses = r["failures"]
    lines += [f"  miss {i}: {q} -> {a[:120]}" for i, q, a in misses[:MISSES_SHOWN]]
    if len(misses) > MISSES_SHOWN:
        lines.append(f"  and {len(misses) - MISSES_SHOWN} more misses (--json lists them all)")
    return "\n".join(lines)
