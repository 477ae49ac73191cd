"""How the reader's two display knobs were chosen, on the calibrate splits only.

    .venv/bin/python bench/reader_knobs.py [--squad ../shared/train/squad2/dev-18-articles.json]

RELATED_COSINE: a refusal lists "might be related" sentences at least this similar to the
question; printed is the share of questions about documents that are not indexed (which should
get no list) and of on-topic unanswerable questions (which should) above each value.
READER_MARGIN: further sentences are quoted when their probability is within this of the best
one's; printed is the key-fact rate and the mean quoted length at each value.
Answer types (READER=none's filter: "how many" needs a number, ...): printed are the figures
with the filter applied to the reader's candidates, and without it.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot import evaluate  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.engine import extractive, start  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--squad", type=Path, default=ROOT.parent / "shared/train/squad2/dev-18-articles.json"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = start(Settings(data_dir=ROOT / "data", state_dir=Path(tmp), reader="bundled"))
        qa = ROOT / "tests" / "qa" / "statement_qa.jsonl"
        statement = evaluate.question_set(engine, qa, "calibrate")
        squad = evaluate.question_set(engine, args.squad, "calibrate")
        t = engine.threshold
    cos = {  # the best by-topic cosine, whatever the floor
        name: np.array([max((c.evidence[1] for c in a.ranking.candidates), default=0) for a in xs])
        for name, xs in (
            ("not indexed (SQuAD)", [a for a in squad if a.row["off_topic"]]),
            ("unanswerable (statement)", [a for a in statement if not a.row["answerable"]]),
            (
                "unanswerable (SQuAD)",
                [a for a in squad if not a.row["answerable"] and not a.row["off_topic"]],
            ),
        )
    }
    print("RELATED_COSINE: share of refusals that would list related sentences")
    for floor in (0.3, 0.35, 0.4, 0.45, 0.5, 0.55):
        print(
            f"  {floor:.2f}  "
            + "  ".join(f"{n} {np.mean(v >= floor):5.1%}" for n, v in cos.items())
        )
    print(f"READER_MARGIN at threshold {t}: key fact in the quotes, mean quoted characters")
    for margin in (0.0, 0.1, 0.2, 0.3, 0.5):
        line = []
        for name, xs in (("statement", statement), ("SQuAD", squad)):
            xs = [
                dataclasses.replace(a, ranking=dataclasses.replace(a.ranking, margin=margin))
                for a in xs
            ]
            r = evaluate.report(xs, t)
            answers = [
                extractive.compose(a.row["question"], a.ranking, t)
                for a in xs
                if a.row["answerable"]
            ]
            chars = [len(" ".join(c.quote for c in answer.citations)) for answer in answers]
            line.append(f"{name} {r['key_fact']:5.1%} ({np.mean(chars):.0f} chars)")
        print(f"  {margin:.1f}  " + "  ".join(line))
    print(f"answer types at threshold {t}: key fact / unanswerable refused / answerable refused")
    for typed in (False, True):
        line = []
        for name, xs in (("statement", statement), ("SQuAD", squad)):
            if typed:
                xs = [dataclasses.replace(a, ranking=_typed(a)) for a in xs]
            r = evaluate.report(xs, t)
            line.append(
                f"{name} {r['key_fact']:5.1%} / {r['refused_unanswerable']:5.1%} / "
                f"{r['false_refusals']:5.1%}"
            )
        print(f"  {'with' if typed else 'without':7}  " + "  ".join(line))


def _typed(a: evaluate.Asked) -> extractive.Ranking:
    kept = extractive.of_type(a.row["question"], list(a.ranking.candidates))
    return dataclasses.replace(a.ranking, candidates=tuple(kept))


if __name__ == "__main__":
    main()
