"""The answer reader: inference (model), its weights and card (weights/), and training apart
from it (training, squad, card). Inference never imports training: torch training and SQuAD
files stay out of the running bot."""

from index.reader.model import (
    BUNDLED,
    NONE,
    SHIPPED,
    Card,
    Reader,
    Weights,
    encode,
    load_reader,
    logit,
    read_meta,
    sigmoid,
)

__all__ = [
    "BUNDLED", "NONE", "SHIPPED", "Card", "Reader", "Weights", "encode", "load_reader", "logit",
    "read_meta", "sigmoid",
]  # fmt: skip
