"""Test-only speed-up: TensorFlow's graph optimiser (grappler) off.

The tests train tiny models for two to four steps, and grappler spends longer rewriting each
training graph than the steps take (a tiny Axial-DeepLab's first two steps: 55 s with it,
30 s without, on 2 cores).  Every comparison in the tests is made between runs under the same
setting (and eager forward passes do not use grappler), so none of them depends on it.  The
suite itself keeps TensorFlow's defaults.  Used by conftest.py and by the test scripts that
train in a process of their own.
"""

import keras


def use() -> None:
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
