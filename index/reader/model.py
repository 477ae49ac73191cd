"""The answer reader: reads a question with each passage and gives every sentence of it the
probability that the answer lies there (a SQuAD 2.0-style span model with a no-answer option).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from index.errors import Error
from index.records import Chunk
from index.worker import Worker

log = logging.getLogger(__name__)

BUNDLED = "bundled"  # the reader this project trained, shipped in index/reader/weights/
NONE = "none"  # no reader: answers fall back to similarity scoring
SHIPPED = Path(__file__).parent / "weights"
MAX_LENGTH = 320  # question + title + passage, in tokens; an 800-character chunk is ~200
MAX_QUESTION = 64  # tokens of the question kept
MAX_SPAN = 80  # tokens in an answer span: a whole sentence can be the answer to "why"
SEPARATOR = " | "  # between the title and the passage
# Inputs are padded to a multiple of this: a few shapes, whose compiled kernels are reused.
PAD = 32


def context(chunk_title: str, text: str) -> tuple[str, int]:
    """What the reader reads beside the question, and where the passage starts in it."""
    title = chunk_title.replace("_", " ").strip()
    prefix = f"{title}{SEPARATOR}" if title else ""
    return prefix + text, len(prefix)


def reader_path(name: str) -> Path | None:
    """The reader folder a READER setting names, or None when it is turned off."""
    if name == NONE:
        return None
    return SHIPPED if name == BUNDLED else Path(name).expanduser()


def load_reader(name: str, worker: Worker | None = None) -> Reader | None:
    """The reader a READER setting names (bundled, none or a folder), loaded once."""
    path = reader_path(name)
    return Reader(path, worker) if path else None


def logit(p: float) -> float:
    """log(p / (1 - p)), with p kept off 0 and 1."""
    p = min(max(float(p), 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def sigmoid(z):
    """1 / (1 + e^-z) of a number or an array, without overflow: weights fitted on few,
    separable questions can be large."""
    return np.exp(-np.logaddexp(0.0, -z))


def cpu_bf16(torch) -> bool:
    """Whether this CPU has bfloat16 matrix units (AMX, AVX-512 BF16): ~2.5x faster than fp32."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def read_meta(path: Path) -> dict:
    """A reader folder's reader.json: threshold, weights, layers, and how it was trained."""
    return json.loads((path / "reader.json").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Weights:
    """How a sentence's answer probability combines the reader's and the sentence's cosine to
    the question: a logistic regression fitted on held-out calibration questions."""

    reader: float = 1.0  # on the logit of the reader's probability
    cosine: float = 0.0
    bias: float = 0.0

    def probability(self, p: float, cosine: float) -> float:
        return float(sigmoid(self.reader * logit(p) + self.cosine * cosine + self.bias))


@dataclass(frozen=True)
class Card:
    """What the model folder says about itself (reader.json): its calibration."""

    threshold: float  # refuse below this probability (calibrated on held-out data)
    layers: int
    weights: Weights = Weights()


class Reader:
    """A fine-tuned cross-encoder with start/end logits, run on the model worker thread."""

    def __init__(self, path: str | Path, worker: Worker | None = None) -> None:
        import torch
        from transformers import AutoTokenizer, BertForQuestionAnswering
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        path = Path(path)
        try:
            meta = read_meta(path)
            weights = Weights(**meta.get("weights", {}))
            self.card = Card(float(meta["threshold"]), int(meta["layers"]), weights)
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.worker = worker or Worker()
            model = self.worker.call(
                lambda: BertForQuestionAnswering.from_pretrained(path, dtype=torch.float32)
            )
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise Error(f"READER={path} is not a reader model folder ({err}).") from err
        self.model = model.eval()
        self._torch = torch
        self.bf16 = cpu_bf16(torch)
        log.info("loaded reader %s (%d layers, bf16 %s)", path, self.card.layers, self.bf16)

    def probabilities(self, question: str, chunks: Sequence[Chunk]) -> list[np.ndarray]:
        """For each chunk, the probability that the answer is a span of each of its sentences."""
        return self.worker.call(self._probabilities, question, chunks) if chunks else []

    def forward(self, enc):
        """The model's bare forward pass on encoded inputs (on the calling thread)."""
        torch = self._torch
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=self.bf16):
            return self.model(**enc)

    def _probabilities(self, question: str, chunks: Sequence[Chunk]) -> list[np.ndarray]:
        enc, offsets, prefixes = encode(self.tokenizer, [question] * len(chunks), chunks)
        out = self.forward(enc)
        starts = out.start_logits.float().numpy()
        ends = out.end_logits.float().numpy()
        result = []
        for b, chunk in enumerate(chunks):
            seq = np.array([s if s is not None else -1 for s in enc.sequence_ids(b)])
            result.append(
                sentence_probabilities(starts[b], ends[b], seq, offsets[b], prefixes[b], chunk)
            )
        return result


def encode(tokenizer, questions: Sequence[str], chunks: Sequence[Chunk]):
    """Question and passage pairs as the reader reads them, in training and at answer time:
    the question cut to MAX_QUESTION tokens, the passage after its title, padded to a multiple
    of PAD. Returns the inputs, each token's character offsets and each passage's prefix."""
    cut = {
        q: tokenizer.convert_tokens_to_string(tokenizer.tokenize(q)[:MAX_QUESTION])
        for q in set(questions)
    }
    contexts = [context(c.title, c.text) for c in chunks]
    enc = tokenizer(
        [cut[q] for q in questions],
        [text for text, _ in contexts],
        truncation="only_second",
        max_length=MAX_LENGTH,
        padding=True,
        pad_to_multiple_of=PAD,
        return_offsets_mapping=True,
        return_tensors="pt",
    )
    offsets = enc.pop("offset_mapping").numpy()
    return enc, offsets, [prefix for _, prefix in contexts]


def token_sentences(seq: np.ndarray, offsets: np.ndarray, prefix: int, chunk: Chunk) -> np.ndarray:
    """The sentence (index into chunk.sentences) each token lies in; -1 outside the passage."""
    sid = np.full(len(seq), -1)
    passage = (seq == 1) & (offsets[:, 0] >= prefix) & (offsets[:, 1] > offsets[:, 0])
    where = offsets[:, 0] - prefix + chunk.start  # document offsets
    bounds = np.array(chunk.sentences).reshape(-1, 2)
    k = np.searchsorted(bounds[:, 0], where, side="right") - 1
    inside = passage & (k >= 0) & (where < bounds[np.maximum(k, 0), 1])
    sid[inside] = k[inside]
    return sid


def sentence_probabilities(
    start: np.ndarray,
    end: np.ndarray,
    seq: np.ndarray,
    offsets: np.ndarray,
    prefix: int,
    chunk: Chunk,
) -> np.ndarray:
    """P(answer is a span inside sentence k), normalised over every span and "no answer"."""
    sid = token_sentences(seq, offsets, prefix, chunk)
    tokens = np.flatnonzero(sid >= 0)
    null = start[0] + end[0]  # the [CLS] token stands for "no answer"
    if not len(tokens):
        return np.zeros(len(chunk.sentences), np.float32)
    s, e, k = start[tokens], end[tokens], sid[tokens]
    scores = s[:, None] + e[None, :]
    i, j = np.meshgrid(np.arange(len(tokens)), np.arange(len(tokens)), indexing="ij")
    span = (j >= i) & (j - i < MAX_SPAN)
    scores = np.where(span, scores, -np.inf)
    top = max(null, scores.max())
    mass = np.exp(scores - top)
    # A span across two sentences counts in the normaliser but for neither sentence.
    total = mass.sum() + np.exp(null - top)
    inside = np.where(k[:, None] == k[None, :], mass, 0).sum(1)  # per start token
    per_sentence = np.bincount(k, weights=inside, minlength=len(chunk.sentences))
    return (per_sentence / total).astype(np.float32)
