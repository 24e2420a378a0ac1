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

import itertools
import json
import sys
import unittest.mock

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
# A few of them under JAX, in a subprocess (the backend is fixed at import); the first one
# takes the axial layer's windowed path (issue #24), the second its masked path.
JAX_CASES = ("axial-span3-width-stride2-odd", "axial-clamped-span5-stride2", "local-3-ps-bn-stride2")


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

        # XLA's cheaper compilation (the cases are tiny: compiling is the cost), as the JAX
        # subprocess' XLA_FLAGS, for the tests that run in the JAX lane's own process.
        step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True),
                       compiler_options={"xla_backend_optimization_level": 0,
                                         "xla_llvm_disable_expensive_passes": True})
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


def _run(name: str, dtype: str, reference: bool, weights=None, seed: int = 0, path=None):
    """One step of case `name` (of CASES, or of WINDOW_CASES with `path` = (attention_path, block_length))."""
    cls, kwargs, shape, training = CASES[name] if path is None else WINDOW_CASES[name][:4]
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape)
    layer = (REFERENCE_CLASSES[cls] if reference else cls)(dtype=dtype, name="attention", **kwargs)
    if path is not None:
        layer.attention_path, layer.block_length = path
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


# The axial layer's windowed path against its masked path (issue #24), in float64: the same
# layer and weights with attention_path "masked" (every query against the whole axis, keys
# outside the span masked) and "windowed" (query blocks with their halos).
# (name, layer class, constructor arguments, input shape, training, block length, the path
# "auto" takes).  The first 16 cases: every combination of the three position terms and BN on
# or off, each with a different mix of axis, strides (1, 2) and training or inference mode, on
# an axis of 11 with span 5 and blocks of 3 (4 blocks, the last one padded).
WINDOW_CASES = {}
for _n, (_q, _k, _v) in enumerate(itertools.product((True, False), repeat=3)):
    for _bn in (True, False):
        _axis = ("height", "width")[(_n + _bn) % 2]
        _strides = 1 + (_n // 2 + _bn) % 2
        _training = (_n // 4 + _n + _bn) % 2 == 0
        _shape = (2, 11, 2, 3) if _axis == "height" else (2, 2, 11, 3)
        _mode = "train" if _training else "infer"
        WINDOW_CASES[f"{_axis}-q{_q:d}k{_k:d}v{_v:d}-bn{_bn:d}-stride{_strides}-{_mode}"] = (
            AXIAL, dict(A, axis=_axis, span=5, strides=_strides, query_position=_q, key_position=_k,
                        value_position=_v, use_batch_norm=_bn), _shape, _training, 3, True)
WINDOW_CASES.update({
    # Blocks of the default length (min(WINDOW_BLOCK, m) = 3) on an axis of 10; and of 1 query.
    "default-block-span3": (AXIAL, dict(A, axis="width", span=3), (2, 3, 10, 3), True, None, True),
    "block1-span3-stride2": (AXIAL, dict(A, axis="height", span=3, strides=2), (1, 9, 2, 3), True, 1, True),
    # Many blocks; halos of 2 blocks (block 4, span 5) and of 5 (block 2, span 9).
    "long-axis-40-span5-block4": (AXIAL, dict(A, axis="width", span=5), (1, 2, 40, 3), True, 4, True),
    "span9-block2-inference": (AXIAL, dict(A, axis="width", span=9, strides=2), (1, 2, 23, 3), False, 2, True),
    "span1-block2": (AXIAL, dict(A, axis="height", span=1), (2, 6, 2, 3), True, 2, True),
    # Offsets clamped at max_span - 1 inside the window.
    "clamped-table-span7": (AXIAL, dict(A, axis="height", span=7, max_span=2, strides=2), (1, 13, 2, 3), True, 4,
                            True),
    # The span equal to and longer than the axis ("auto" keeps the masked path; the windowed
    # one, forced, still computes the same), and a short axis where blocks would not pay.
    "span-equals-axis": (AXIAL, dict(A, axis="width", span=7), (2, 2, 7, 3), True, 3, False),
    "span-longer-than-axis": (AXIAL, dict(A, axis="height", span=9, strides=2), (1, 5, 2, 3), True, 2, False),
    "span-shorter-blocks-do-not-pay": (AXIAL, dict(A, axis="width", span=5), (1, 2, 7, 3), True, None, False),
})


def compare_paths(name: str, seed: int = 0) -> dict:
    """The windowed path against the masked path in float64: {"float64": (abs, rel) error, "auto": the
    path the layer chooses by itself, "windowed" or "masked"}.

    float64 throughout, the layer's BN statistics included: under JAX, keras.backend.result_type
    ("float64", "float32") is float32, so a float64 layer computes them in float32 (as Keras'
    BatchNormalization does), and the two paths, which arrange the position terms' statistics
    differently, would differ by float32 rounding (up to 5e-6 of the largest gradient, measured)
    whatever their algebra.  tests/test_attention_equality.py's JAX reference case checks the
    windowed path with the float32 statistics."""
    cls, kwargs, shape, _, block, _ = WINDOW_CASES[name]
    with unittest.mock.patch.object(AxialAttention, "statistics_dtype", property(lambda layer: "float64")):
        masked, weights = _run(name, "float64", reference=False, seed=seed, path=("masked", block))
        windowed, _ = _run(name, "float64", reference=False, weights=weights, seed=seed, path=("windowed", block))
    layer = cls(name="attention", **kwargs)
    layer.block_length = block
    length = shape[1] if kwargs["axis"] == "height" else shape[2]
    return {"float64": _error(windowed, masked), "auto": "windowed" if layer.uses_window(length) else "masked"}


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
