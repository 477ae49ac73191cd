"""Training the answer reader from the bundled all-MiniLM-L6-v2 on SQuAD 2.0 (CPU or GPU).

Each example is a question and one passage, chunked exactly as the bot chunks documents: the
answer's start and end tokens when the passage holds the answer, the [CLS] token when it does
not. Passages that do not hold the answer come from three places: the paragraph of an
unanswerable question (written to look answerable), the passage of the same article that the
bi-encoder ranks highest for an answerable question without holding its answer (what retrieval
hands the reader beside the right passage), and a passage of another article.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from index.chunking import chunk_document, fold
from index.embedder import Embedder, model_path
from index.reader.model import cpu_bf16, encode
from index.reader.squad import WRITTEN, Article, read_squad, split_articles
from index.records import Chunk

log = logging.getLogger(__name__)

# Shares of questions that also get a no-answer example from a retrieved passage of their own
# article and from another article (on top of unanswerable questions' own paragraphs).
RETRIEVED, OTHER_ARTICLE = 0.5, 0.05


@dataclass(frozen=True)
class Example:
    question: str
    chunk: Chunk
    answer: tuple[int, int] | None  # document offsets inside the chunk, or None


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
