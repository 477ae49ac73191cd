"""Choose the cosine at which a moderator's answer answers a question asked in other words.

    .venv/bin/python bench/known_threshold.py [--file tests/qa/unanswered_groups.jsonl]

In each split of the example questions (paraphrases of one topic share a label, neighbouring
topics share words), the first question of each topic plays a moderator's answered question and
the topic's other wordings are asked. At each threshold it prints how many of those are answered
from their own topic's entry (right) and from another topic's (wrong). The statement's own
questions (tests/qa/statement_qa.jsonl), which the documents answer, show how often an entry
would be closer than the threshold to a question it was not written for: KNOWN_OVER_DOCUMENTS
is the stricter threshold at which an entry replaces the documents' answer.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot.engine.knowledge import KNOWN, KNOWN_OVER_DOCUMENTS  # noqa: E402
from index.embedder import Embedder  # noqa: E402


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=ROOT / "tests/qa/unanswered_groups.jsonl")
    args = parser.parse_args()
    encode = Embedder().encode
    answered_by_documents = encode(
        [r["question"] for r in rows(ROOT / "tests/qa/statement_qa.jsonl")]
    )
    for split in ("calibrate", "test"):
        part = [r for r in rows(args.file) if r["split"] == split]
        first: dict[str, dict] = {}
        for r in part:
            first.setdefault(r["topic"], r)
        entries = list(first.values())
        asked = [r for r in part if first[r["topic"]] is not r]
        vecs = encode([r["question"] for r in entries])
        cosines = encode([r["question"] for r in asked]) @ vecs.T
        best, nearest = cosines.max(1), cosines.argmax(1)
        right = np.array(
            [entries[n]["topic"] == r["topic"] for n, r in zip(nearest, asked, strict=True)]
        )
        elsewhere = (answered_by_documents @ vecs.T).max(1)
        print(f"\n{split}: {len(entries)} entries, {len(asked)} other wordings asked")
        print(f"{'threshold':>9} {'right':>6} {'wrong':>6} {'statement questions closer':>27}")
        for t in np.arange(0.5, 0.851, 0.05):
            mark = {KNOWN: " <- KNOWN", KNOWN_OVER_DOCUMENTS: " <- KNOWN_OVER_DOCUMENTS"}
            hit = best >= t - 1e-9
            print(
                f"{t:9.2f} {int((hit & right).sum()):6} {int((hit & ~right).sum()):6} "
                f"{int((elsewhere >= t - 1e-9).sum()):>17} of {len(elsewhere)}"
                + mark.get(round(float(t), 2), "")
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
