"""How the extractive answer's knobs were chosen: on the calibrate splits, never on test.

    .venv/bin/python bench/answer_knobs.py [--split calibrate]

The statement's questions and the real pages' questions (tests/qa/real_pages.jsonl) are
searched once, through the engine (READER=none); every variant of the knobs then re-scores the
same passages: PASSAGES (how many of the best passages give sentences), which document an
answer quotes (the best passage's, `one_document`, or the best sentence's), the weights of a
sentence's score (its similarity, the question's words it holds, its passage's score),
MARGIN, and then NO_NUMBER (what an amount question's sentence without a number loses). Each
variant's threshold is calibrated as `eval --calibrate` does (the strictest of the sets'
thresholds); printed per set: right sentence (gold quoted), key fact, answers from another
document, unanswerable questions refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot import evaluate  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.engine import extractive, start  # noqa: E402

STATEMENT = ROOT / "tests/qa/statement_qa.jsonl"
PAGES = ROOT / "tests/qa/real_pages.jsonl"
TOP_K = 8  # passages searched: PASSAGES may take up to this many


def searched(engine, rows: list[dict]) -> list[tuple[dict, list, object]]:
    """(row, passages, idf) for each question."""
    idf = engine.idf(None)
    return [(r, engine.search(r["question"], k=TOP_K), idf) for r in rows]


def asked(found: list, passages: int, document: str) -> list[evaluate.Asked]:
    extractive.PASSAGES = passages
    out = []
    for row, hits, idf in found:
        ranking = extractive.by_similarity(row["question"], hits, 0.0, idf)
        if document == "sentence":  # the best sentence's document
            ranking = best_sentences_document(ranking)
        out.append(evaluate.Asked(row, hits[:passages], ranking))
    return out


def best_sentences_document(ranking: extractive.Ranking) -> extractive.Ranking:
    """Candidates of the best passages of any document, kept to the best sentence's."""
    doc = ranking.candidates[0].chunk.doc_id if ranking.candidates else None
    candidates = tuple(c for c in ranking.candidates if c.chunk.doc_id == doc)
    return dataclasses.replace(ranking, candidates=candidates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="calibrate")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        engine = start(Settings(data_dir=ROOT / "data", state_dir=Path(tmp) / "s", reader="none"))
        paged = evaluate.open_pages(engine, PAGES.with_suffix(""), Path(tmp) / "p")
        sets = {
            "statement": searched(engine, evaluate.read_qa(STATEMENT, args.split)),
            "pages": searched(paged, evaluate.page_rows(PAGES, args.split)),
        }
    weights = [(0.55, 0.25, 0.20), (0.45, 0.35, 0.20), (0.5, 0.2, 0.3), (0.6, 0.3, 0.1)]
    print(f"{args.split} splits; per set: right sentence / key fact / other doc / unans. refused")
    by_passage = extractive.one_document
    weighted = (extractive.W_SENTENCE, extractive.W_WORDS, extractive.W_PASSAGE)
    chosen = extractive.PASSAGES, weighted, extractive.MARGIN  # the engine's own knobs
    documents = {"passage": by_passage, "sentence": lambda hits: hits[: extractive.PASSAGES]}
    knobs = itertools.product(documents, (3, 5, 8), weights, (0.10, 0.15))
    for document, passages, w, margin in knobs:
        extractive.one_document = documents[document]
        extractive.W_SENTENCE, extractive.W_WORDS, extractive.W_PASSAGE = w
        extractive.MARGIN = margin
        shown(sets, passages, document, f"doc={document} P={passages} W={w} M={margin}")
    passages, weighted, extractive.MARGIN = chosen
    extractive.W_SENTENCE, extractive.W_WORDS, extractive.W_PASSAGE = weighted
    extractive.one_document = by_passage
    for penalty in (0.0, 0.04, 0.08, 0.12, 0.15, 0.2, 0.3):
        extractive.NO_NUMBER = penalty
        shown(sets, passages, "passage", f"NO_NUMBER={penalty}")


def shown(sets: dict, passages: int, document: str, label: str) -> None:
    """One row: the sets re-scored with the knobs as they are set, at their calibrated threshold."""
    done = {name: asked(found, passages, document) for name, found in sets.items()}
    threshold = min(evaluate.threshold_for(a, 0.05) for a in done.values())
    cells = []
    for name, a in done.items():
        r = evaluate.report(a, threshold)
        gold = r["gold_quoted"] if name == "pages" else r["key_fact"]
        other = f"{r['wrong_doc']:.1%}" if r["wrong_doc"] is not None else "-"
        cells.append(
            f"{name} {gold:.1%} / {r['key_fact']:.1%} / {other} / {r['refused_unanswerable']:.1%}"
        )
    print(f"{label + f' t={threshold:.3f}':<55} " + "   ".join(cells))


if __name__ == "__main__":
    main()
