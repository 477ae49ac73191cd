"""Would a topic gate help READER=none refuse questions about documents that are not indexed?

    .venv/bin/python bench/topic_gate.py [--squad ../shared/train/squad2/dev-18-articles.json]

The gate: refuse when no sentence of the best passages reaches cosine `gate` to the question.
For each gate the threshold is fitted again on the calibrate splits under the false-refusal
bounds, as `eval --calibrate` does, and the refusal rates on those splits are printed (nothing
here looks at a test split), after percentiles of the best sentence cosine per kind of question.
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
from bot.engine import start  # noqa: E402
from bot.engine.extractive import PASSAGES, Ranking  # noqa: E402

SQUAD = ROOT.parent / "shared" / "train" / "squad2" / "dev-18-articles.json"


def cosine(a: evaluate.Asked) -> float:
    return max((s for h in a.hits[:PASSAGES] for s in h.sentence_scores), default=0.0)


def kind(a: evaluate.Asked) -> str:
    if a.row.get("off_topic"):
        return "not indexed"
    return "answerable" if a.row["answerable"] else "unanswerable"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--squad", type=Path, default=SQUAD)
    sets = [ROOT / "tests" / "qa" / "statement_qa.jsonl", parser.parse_args().squad]
    with tempfile.TemporaryDirectory() as tmp:
        engine = start(Settings(data_dir=ROOT / "data", state_dir=Path(tmp)))
        asked = {p: evaluate.question_set(engine, p, "calibrate") for p in sets}
    for p, xs in asked.items():
        for k in ("answerable", "unanswerable", "not indexed"):
            if cos := [cosine(a) for a in xs if kind(a) == k]:
                pct = np.percentile(cos, [5, 25, 50, 75, 95]).round(2)
                print(f"{p.name:26} {k:13} n={len(cos):4}  cosine p5/25/50/75/95 {pct}")
    refused = Ranking((), (), 0.0)
    for gate in (0.0, 0.1, 0.2, 0.25, 0.3):
        gated = {
            p: [a if cosine(a) >= gate else dataclasses.replace(a, ranking=refused) for a in xs]
            for p, xs in asked.items()
        }
        t = min(
            evaluate.threshold_for(xs, evaluate.MAX_FALSE_REFUSALS[p.suffix[1:]])
            for p, xs in gated.items()
        )
        shown = []
        for p, xs in gated.items():
            r = evaluate.report(xs, t)
            shown.append(
                f"{p.stem}: answerable {r['false_refusals']:.1%}, "
                f"unanswerable {r['refused_unanswerable']:.1%}"
                + (f", not indexed {r['refused_off_topic']:.1%}" if r["off_topic"] else "")
            )
        print(f"gate {gate:.2f}, threshold {t:.3f}; refused: " + "; ".join(shown))


if __name__ == "__main__":
    main()
