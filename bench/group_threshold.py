"""Choose the cosine threshold that groups unanswered questions for /insights.

    .venv/bin/python bench/group_threshold.py [--file tests/qa/unanswered_groups.jsonl]

Groups each split of the example questions (written for this: paraphrases of one topic share a
label, neighbouring topics share words) at every threshold from 0.30 to 0.90 and prints the
pairwise precision, recall, F1 and number of groups (the clustering does not depend on the
order questions arrive in; five seeded orders check that). The threshold with the best F1 on
the calibrate split (the stricter of equals) is the one to use; the test split shows how it
holds up on topics it was not chosen on.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot.engine.insights import GROUP_THRESHOLD, CachedEncode, group, pair_scores  # noqa: E402
from index.embedder import Embedder  # noqa: E402

ORDERS = 5


def scores(rows: list[dict], encode, threshold: float) -> dict[str, float]:
    """Pair scores, the same in ORDERS seeded shuffles of `rows`."""
    seen = []
    for seed in range(ORDERS):
        shuffled = random.Random(seed).sample(rows, len(rows))
        groups = group([r["question"] for r in shuffled], encode, threshold)
        seen.append(pair_scores([r["topic"] for r in shuffled], groups))
    if any(s != seen[0] for s in seen):
        raise SystemExit(f"the grouping depends on the order at {threshold}: {seen}")
    return seen[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=ROOT / "tests/qa/unanswered_groups.jsonl")
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.file.read_text().splitlines() if line.strip()]
    encode = CachedEncode(Embedder().encode)

    best = {}
    for split in ("calibrate", "test"):
        part = [r for r in rows if r["split"] == split]
        topics = len({r["topic"] for r in part})
        print(f"\n{split}: {len(part)} questions, {topics} topics")
        print(f"{'threshold':>9} {'precision':>9} {'recall':>7} {'F1':>6} {'groups':>6}")
        results = {}
        for step in range(25):
            t = round(0.30 + 0.025 * step, 3)
            s = results[t] = scores(part, encode, t)
            mark = " <- GROUP_THRESHOLD" if abs(t - GROUP_THRESHOLD) < 1e-9 else ""
            print(
                f"{t:9.3f} {s['precision']:9.3f} {s['recall']:7.3f} {s['f1']:6.3f} "
                f"{s['groups']:6}{mark}"
            )
        best[split] = max(results, key=lambda t: (results[t]["f1"], t))  # ties: the stricter
    print(f"\nbest F1 on calibrate at {best['calibrate']}, on test at {best['test']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
