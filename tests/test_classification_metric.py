"""Top-1 / top-k accuracy against Keras' own metric."""

import keras
import numpy as np
import pytest

from evaluation.classification import TopKAccuracy


@pytest.mark.parametrize("k", [1, 5])
def test_topk_equals_keras(k):
    rng = np.random.default_rng(k)
    ours, theirs = TopKAccuracy(k), keras.metrics.SparseTopKCategoricalAccuracy(k=k)
    for _ in range(5):
        labels = rng.integers(0, 20, size=32)
        logits = rng.normal(size=(32, 20)).astype("float32")
        ours.update(labels, logits)
        theirs.update_state(labels, logits)
    assert ours.result() == pytest.approx(float(theirs.result()), abs=1e-6)
    assert TopKAccuracy().result() is None
