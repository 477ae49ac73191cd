"""How hybrid search weighs its two retrievers: chosen on the calibrate splits and SciFact's
train queries, never on a test split.

    .venv/bin/python bench/fusion.py [--beir ../shared/eval/scifact] [--state DIR]

For reciprocal-rank fusion (what search did before) and each DENSE_WEIGHT, prints what
`eval --split calibrate` measures at the default threshold: the real pages' right sentence and
answers from another page, the statement's key fact, SQuAD's key fact and its questions about
articles not indexed that are refused; then hybrid nDCG@10 on SciFact's train queries (its index
is built once, 5-10 minutes, and cached in the state folder).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from type_rules import QA as SETS  # noqa: E402  (statement, pages, SQuAD; bench/ is on the path)

import bot.engine.answering  # noqa: E402
import index.search  # noqa: E402
from bot import evaluate  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.engine import start  # noqa: E402

WEIGHTS = ("rank", 0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9)
RRF_K = 60  # Cormack et al. (2009), as search used it
SEARCH, WEIGHT = index.search.search, index.search.DENSE_WEIGHT


def by_rank(indexes, query, qvec, k=5, mode="hybrid", candidates=100):
    """Reciprocal-rank fusion of every candidate's dense and BM25 ranks."""
    hits = SEARCH(indexes, query, qvec, 2 * candidates, mode, candidates)
    return sorted(
        hits, key=lambda h: -sum(1 / (RRF_K + r) for r in (h.dense_rank, h.lexical_rank) if r)
    )[:k]


def use(weight) -> None:
    searched = by_rank if weight == "rank" else SEARCH
    bot.engine.answering.search = sys.modules["bot.evaluate.beir"].search = searched
    index.search.DENSE_WEIGHT = WEIGHT if weight == "rank" else weight


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beir", type=Path, default=ROOT.parent / "shared/eval/scifact")
    parser.add_argument("--state", type=Path, help="where SciFact's index is cached")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        state = args.state or Path(tmp)
        engine = start(Settings(data_dir=ROOT / "data", state_dir=state / "s", reader="none"))
        settings = Settings(state_dir=state)
        print("calibrate splits; pages: right sentence, other page; statement: key fact;")
        print("SQuAD: key fact, not indexed refused; SciFact train: hybrid nDCG@10")
        for weight in WEIGHTS:
            use(weight)
            sets = evaluate.evaluate(engine, SETS, "calibrate", calibrate=False)["sets"]
            statement, pages, squad = (sets[str(p)] for p in SETS)
            sf = evaluate.beir(args.beir, settings, engine.embedder, split="train")
            print(
                f"{weight!s:>5}  {pages['gold_quoted']:6.1%} {pages['wrong_doc']:5.1%}  "
                f"{statement['key_fact']:6.1%}  {squad['key_fact']:6.1%} "
                f"{squad['refused_off_topic']:6.1%}  {sf['modes']['hybrid']['ndcg@10']:.4f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
