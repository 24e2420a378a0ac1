"""Top-1 accuracy, the ImageNet column of Tab. 1 and Tab. 9, streaming over batches."""

from __future__ import annotations

import numpy as np


class TopKAccuracy:
    def __init__(self, k: int = 1):
        self.k = k
        self.correct = 0
        self.total = 0

    def update(self, labels, logits) -> None:
        labels, logits = np.asarray(labels), np.asarray(logits)
        # A label counts as found when fewer than k classes score strictly higher than it
        # (ties resolve in the label's favour, as in Keras' in_top_k).
        higher = (logits > logits[np.arange(len(labels)), labels][:, None]).sum(axis=1)
        self.correct += int((higher < self.k).sum())
        self.total += len(labels)

    def result(self) -> float | None:
        return self.correct / self.total if self.total else None
