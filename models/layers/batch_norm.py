"""When batch norm is synchronised across replicas.

Panoptic-DeepLab [18] and deeplab2 train with synchronised BN: statistics over the global
batch, not each device's share.  Under JAX's data parallelism the batch is one global array,
so every BN is global already; under tf.distribute each replica sees its shard, and Keras'
`BatchNormalization(synchronized=True)` all-reduces the moments.  That option exists on
TensorFlow only (Keras raises under JAX), and on one device it adds work for nothing, so it
is asked for only where it changes the result: a TensorFlow strategy with several replicas,
in whose scope the model is built (training/engine.py builds models there).
"""

from __future__ import annotations

import keras


def synchronized() -> bool:
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf  # already loaded: it is the backend

    return tf.distribute.has_strategy() and tf.distribute.get_strategy().num_replicas_in_sync > 1
