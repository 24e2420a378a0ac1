"""Fast attention layers against their reference formulation: the same function, measured.

`compare(case)` builds a layer of models/layers and its twin of
models/layers/reference_attention.py with the same weights (BN statistics and scales
randomised so that inference mode is tested on something), runs one training-mode call of
each (or an inference call), and returns the largest differences of the outputs, the input
gradients, the weight gradients and the BN moving statistics after the call.  In float64 it
compares the two formulations with each other (the algebra); in float32 it compares each
with the float64 result, because either one's float32 rounding (2-5e-5 here) is larger than
a float32 tolerance between them.

Backend-agnostic (gradients by tf.GradientTape or jax.grad of a stateless call), so the
same cases run under TensorFlow in tests/test_attention_equality.py and under JAX in a
subprocess (`python -m tests.attention_equality`, which prints the results as JSON).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import keras
from keras import ops

from models.layers import AxialAttention, LocalSelfAttention2D
from models.layers.reference_attention import REFERENCE_CLASSES

# (name, layer class, constructor arguments, input shape (batch, h, w, c), training).
AXIAL = AxialAttention
LOCAL = LocalSelfAttention2D
A = dict(key_depth=4, value_depth=8, num_heads=2)
CASES = {
    "axial-global-width": (AXIAL, dict(A, axis="width"), (2, 3, 5, 3), True),
    "axial-global-height-stride2-even": (AXIAL, dict(A, axis="height", strides=2), (2, 6, 3, 3), True),
    "axial-span3-width-stride2-odd": (AXIAL, dict(A, axis="width", span=3, strides=2), (1, 2, 7, 3), True),
    "axial-span3-height": (AXIAL, dict(A, axis="height", span=3), (1, 6, 2, 3), True),
    "axial-span9-longer-than-axis": (AXIAL, dict(A, axis="width", span=9), (1, 2, 4, 3), True),
    "axial-clamped-table": (AXIAL, dict(A, axis="width", max_span=3), (1, 2, 8, 3), True),
    "axial-clamped-span5-stride2": (AXIAL, dict(A, axis="height", span=5, max_span=2, strides=2), (1, 7, 2, 3),
                                    True),
    "axial-no-query-position": (AXIAL, dict(A, axis="width", query_position=False), (1, 2, 5, 3), True),
    "axial-no-key-position": (AXIAL, dict(A, axis="width", key_position=False), (1, 2, 5, 3), True),
    "axial-no-value-position": (AXIAL, dict(A, axis="height", value_position=False), (1, 5, 2, 3), True),
    "axial-no-position": (AXIAL, dict(A, axis="width", query_position=False, key_position=False,
                                      value_position=False), (1, 2, 5, 3), True),
    "axial-no-bn": (AXIAL, dict(A, axis="width", use_batch_norm=False, strides=2), (2, 2, 5, 3), True),
    "axial-length-1": (AXIAL, dict(A, axis="height"), (2, 1, 3, 3), True),
    "axial-inference": (AXIAL, dict(A, axis="height", span=3, strides=2), (1, 5, 3, 3), False),
    "local-3": (LOCAL, dict(key_depth=4, value_depth=8, num_heads=2, window=3), (2, 4, 5, 3), True),
    "local-3-ps-bn-stride2": (LOCAL, dict(key_depth=4, value_depth=8, num_heads=2, window=3, strides=2,
                                          key_position=True, value_position=True, use_batch_norm=True),
                              (1, 5, 4, 3), True),
    "local-7-ps-bn-small-image": (LOCAL, dict(key_depth=4, value_depth=4, num_heads=2, window=7,
                                              key_position=True, value_position=True, use_batch_norm=True),
                                  (2, 5, 3, 3), True),
    "local-7-bn-stride2": (LOCAL, dict(key_depth=4, value_depth=4, num_heads=2, window=7, strides=2,
                                       use_batch_norm=True), (1, 8, 9, 3), True),
    "local-5-no-query-position-bn": (LOCAL, dict(key_depth=4, value_depth=4, num_heads=2, window=5,
                                                 query_position=False, key_position=True, use_batch_norm=True),
                                     (1, 6, 7, 3), True),
    "local-3-ps-inference": (LOCAL, dict(key_depth=4, value_depth=8, num_heads=2, window=3,
                                         key_position=True, value_position=True, use_batch_norm=True),
                             (1, 4, 4, 3), False),
}
# A few of them under JAX, in a subprocess (the backend is fixed at import).
JAX_CASES = ("axial-clamped-span5-stride2", "local-3-ps-bn-stride2")


def _randomise(layer, rng):
    """Non-trivial BN scales, offsets and moving statistics (the rest is initialised at random)."""
    values = []
    for w in layer.weights:
        shape, path = tuple(w.shape), w.path
        if path.endswith("moving_variance"):
            values.append(rng.uniform(0.5, 2.0, shape))
        elif path.endswith(("gamma", "moving_mean", "beta")):
            values.append(rng.normal(0.5 if path.endswith("gamma") else 0.0, 0.5, shape))
        else:
            values.append(keras.ops.convert_to_numpy(w))
    layer.set_weights(values)


def _step(layer, x, probe, training):
    """(output, d(sum(output * probe)) / d input, / d trainable weights, non-trainable after the call)."""
    trainable = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]

    def loss(trainable, x):
        y, updated = layer.stateless_call(trainable, non_trainable, x, training=training)
        return ops.sum(ops.cast(y, probe.dtype) * probe), (y, updated)

    if keras.backend.backend() == "jax":
        import jax

        step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))
        (_, (y, updated)), (g_w, g_x) = step(trainable, x)
    else:
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            tape.watch(trainable)
            total, (y, updated) = loss(trainable, x)
        g_w, g_x = tape.gradient(total, (trainable, x))
        g_w = [tf.convert_to_tensor(g) for g in g_w]  # a table's gradient is IndexedSlices
    numpy = keras.ops.convert_to_numpy
    return {"output": numpy(y), "input_gradient": numpy(g_x),
            **{f"gradient:{v.path}": numpy(g) for v, g in zip(layer.trainable_variables, g_w)},
            **{f"after:{v.path}": numpy(u) for v, u in zip(layer.non_trainable_variables, updated)}}


def _run(name: str, dtype: str, reference: bool, weights=None, seed: int = 0):
    cls, kwargs, shape, training = CASES[name]
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape)
    layer = (REFERENCE_CLASSES[cls] if reference else cls)(dtype=dtype, name="attention", **kwargs)
    layer.build(shape)
    if weights is None:
        _randomise(layer, rng)
    else:
        layer.set_weights(weights)
    # The loss sum(output * probe) in at least float32 (a float16 sum could overflow).
    probe = np.random.default_rng(seed + 1).normal(size=layer.compute_output_shape(shape))
    probe = probe.astype(keras.backend.result_type(layer.compute_dtype, "float32"))
    return _step(layer, x.astype(layer.compute_dtype), probe, training), layer.get_weights()


def _error(got: dict, want: dict) -> tuple[float, float]:
    """(max abs error, max error relative to the largest magnitude of its piece), over every piece.

    A piece that is zero in exact arithmetic (the gradient of the similarity BN's offset: the
    softmax does not see a constant shift; with a one-position axis, every similarity gradient)
    holds rounding noise only, a millionth of the largest piece or less (1e-4 under JAX, where
    BN rounds float64 to float32); it counts in the absolute error, not in the relative one.
    """
    assert got.keys() == want.keys()
    zero = 1e-4 if keras.backend.backend() == "jax" else 1e-6
    scales = {k: float(np.max(np.abs(want[k]), initial=0.0)) for k in want}
    largest = max(scales.values())
    abs_err = rel_err = 0.0
    for k in want:
        diff = float(np.max(np.abs(got[k].astype("float64") - want[k].astype("float64")), initial=0.0))
        abs_err = max(abs_err, diff)
        if scales[k] > zero * largest:
            rel_err = max(rel_err, diff / scales[k])
    return abs_err, rel_err


def compare(name: str, reference32: bool = True) -> dict:
    """Errors of one case: fast vs reference in float64, each (the reference's optional) vs
    float64 in float32."""
    fast64, weights = _run(name, "float64", reference=False)
    ref64, _ = _run(name, "float64", reference=True, weights=weights)
    fast32, _ = _run(name, "float32", reference=False, weights=weights)
    errors = {"float64": _error(fast64, ref64), "fast32": _error(fast32, fast64)}
    if reference32:
        ref32, _ = _run(name, "float32", reference=True, weights=weights)
        errors["reference32"] = _error(ref32, fast64)
    return errors


def mixed_precision_error(name: str, policy: str) -> tuple[float, float]:
    """Errors of the fast layer under a mixed-precision policy against its float64 result.

    (The reference cannot serve here: TensorFlow's CPU einsum "...c,cd->...d", its qkv
    projection, is wrong in float16, 24 off on values of 21.)"""
    fast64, weights = _run(name, "float64", reference=False)
    mixed, _ = _run(name, policy, reference=False, weights=[w.astype("float32") for w in weights])
    return _error(mixed, fast64)


if __name__ == "__main__":
    names = sys.argv[1:] or list(CASES)
    # Under JAX (this script's use), every function is compiled first: the reference's float32
    # run, which says nothing about the fast layer, is left out.
    json.dump({"backend": keras.backend.backend(), **{name: compare(name, reference32=False) for name in names}},
              sys.stdout)
