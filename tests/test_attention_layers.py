"""Attention layers: shapes, config round trips, and numerics against Eq. 2-4 computed directly."""

import numpy as np
import pytest
import keras

from models.layers import MAX_SPAN, AxialAttention, LocalSelfAttention2D
from tests.reference import axial_attention_1d, local_attention_2d


def _axial_reference(layer, x, span):
    """Run tests.reference on x (b, h, w, c) along the layer's axis, with its weights."""
    max_span = layer.max_span

    def table(t):
        return None if t is None else (lambda off: keras.ops.convert_to_numpy(t.embeddings)[off + max_span - 1])

    w = keras.ops.convert_to_numpy(layer.qkv_kernel)
    xs = np.transpose(x, (0, 2, 1, 3)) if layer.axis == "height" else x
    b, n, length, c = xs.shape
    out = axial_attention_1d(xs.reshape(b * n, length, c), w, layer.num_heads, layer.key_depth,
                             layer.value_depth, table(layer.query_table), table(layer.key_table),
                             table(layer.value_table), span=span)
    out = out.reshape(b, n, length, -1)
    return np.transpose(out, (0, 2, 1, 3)) if layer.axis == "height" else out


@pytest.mark.parametrize("axis", ["height", "width"])
@pytest.mark.parametrize("span", [None, 3])
def test_axial_matches_equation_4(axis, span):
    x = np.random.default_rng(1).normal(size=(2, 4, 5, 6)).astype("float32")
    layer = AxialAttention(axis, key_depth=4, value_depth=8, num_heads=2, span=span, use_batch_norm=False)
    got = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(got, _axial_reference(layer, x, span), rtol=1e-4, atol=1e-5)


def test_axial_without_position_terms_is_plain_attention():
    x = np.random.default_rng(2).normal(size=(1, 3, 6, 4)).astype("float32")
    layer = AxialAttention("width", 4, 4, num_heads=2, use_batch_norm=False, query_position=False,
                           key_position=False, value_position=False)
    got = keras.ops.convert_to_numpy(layer(x))
    assert layer.parameter_breakdown()["position_table"] == 0
    np.testing.assert_allclose(got, _axial_reference(layer, x, None), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("axis", ["height", "width"])
def test_local_span_covering_the_axis_equals_global(axis):
    x = np.random.default_rng(3).normal(size=(2, 5, 6, 8)).astype("float32")
    global_layer = AxialAttention(axis, 8, 16, num_heads=2, span=None)
    local_layer = AxialAttention(axis, 8, 16, num_heads=2, span=11)  # (11 - 1) / 2 >= 6 - 1
    global_out = global_layer(x)
    local_layer(x)
    local_layer.set_weights(global_layer.get_weights())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(local_layer(x)),
                               keras.ops.convert_to_numpy(global_out), rtol=1e-5, atol=1e-6)


def test_narrow_span_differs_from_global():
    # Guards the test above: a span that does not cover the axis must change the output.
    x = np.random.default_rng(3).normal(size=(1, 2, 9, 8)).astype("float32")
    g = AxialAttention("width", 8, 16, num_heads=2, use_batch_norm=False)
    l = AxialAttention("width", 8, 16, num_heads=2, span=3, use_batch_norm=False)
    out = g(x)
    l(x)
    l.set_weights(g.get_weights())
    assert not np.allclose(keras.ops.convert_to_numpy(l(x)), keras.ops.convert_to_numpy(out), atol=1e-3)


@pytest.mark.parametrize("axis,expected", [("height", (2, 3, 5, 16)), ("width", (2, 5, 3, 16))])
def test_axial_stride_subsamples_its_own_axis(axis, expected):
    x = np.random.default_rng(4).normal(size=(2, 5, 5, 8)).astype("float32")
    strided = AxialAttention(axis, 8, 16, num_heads=2, strides=2)
    plain = AxialAttention(axis, 8, 16, num_heads=2)
    out = keras.ops.convert_to_numpy(strided(x))
    plain(x)
    plain.set_weights(strided.get_weights())
    full = keras.ops.convert_to_numpy(plain(x))
    assert out.shape == expected
    sub = full[:, ::2] if axis == "height" else full[:, :, ::2]
    np.testing.assert_allclose(out, sub, rtol=1e-5, atol=1e-6)
    assert strided.compute_output_shape(x.shape) == expected


def test_axial_parameter_breakdown():
    layer = AxialAttention("height", key_depth=64, value_depth=128, num_heads=8)
    layer.build((None, 56, 56, 128))
    parts = layer.parameter_breakdown()
    assert parts["qkv_projection"] == 128 * (64 + 64 + 128)
    assert parts["position_table"] == (2 * MAX_SPAN - 1) * (8 + 8 + 16)  # d_q = 8, d_v = 16 (Fig. 1)
    # BN gamma/beta: qkv (256 channels), similarity (8 heads x 3 terms), output (2 terms x 128).
    assert parts["attention_batch_norm"] == 2 * (256 + 24 + 256)
    assert sum(parts.values()) == sum(int(np.prod(w.shape)) for w in layer.trainable_weights)


def test_axial_madds_formula():
    layer = AxialAttention("width", key_depth=64, value_depth=128, num_heads=8, span=15)
    madds = layer.count_madds((1, 56, 56, 128))
    queries = 56 * 56
    assert madds == {
        "qkv_projection": queries * 128 * 256,
        "attention_logits": queries * 15 * 64 * 3,
        "attention_output": queries * 15 * 128 * 2,
    }
    assert layer.count_madds((1, 56, 56, 128), local_keys="blocked")["attention_output"] == queries * 29 * 128 * 2


@pytest.mark.parametrize("position_sensitive", [False, True])
def test_local_attention_matches_equations_2_and_3(position_sensitive):
    x = np.random.default_rng(5).normal(size=(1, 4, 5, 6)).astype("float32")
    layer = LocalSelfAttention2D(8, 8, num_heads=2, window=3, key_position=position_sensitive,
                                 value_position=position_sensitive)
    got = keras.ops.convert_to_numpy(layer(x))

    def table(term):
        if (term, "row") not in layer.tables:
            return None
        rows = keras.ops.convert_to_numpy(layer.tables[term, "row"].embeddings)
        cols = keras.ops.convert_to_numpy(layer.tables[term, "column"].embeddings)
        return lambda da, db: np.concatenate([rows[da + 1], cols[db + 1]])

    want = local_attention_2d(x[0], keras.ops.convert_to_numpy(layer.qkv_kernel), 2, 8, 8, 3,
                              table("query"), table("key"), table("value"))
    np.testing.assert_allclose(got[0], want, rtol=1e-4, atol=1e-5)


def test_local_attention_stride_and_counts():
    layer = LocalSelfAttention2D(16, 16, num_heads=8, window=7, strides=2, use_batch_norm=True)
    out = layer(np.zeros((1, 8, 8, 4), "float32"))
    assert tuple(out.shape) == (1, 4, 4, 16)
    madds = layer.count_madds((1, 8, 8, 4))
    assert madds["attention_logits"] == 64 * 49 * 16 * 2  # content + query position terms
    assert madds["attention_output"] == 64 * 49 * 16
    # Position tables: m rows per axis, half the per-head depth wide.
    assert layer.parameter_breakdown()["position_table"] == 2 * 7 * 1


@pytest.mark.parametrize("layer", [
    AxialAttention("height", 8, 16, num_heads=2, span=5, strides=2, key_position=False),
    LocalSelfAttention2D(8, 8, num_heads=2, window=3, value_position=True, use_batch_norm=True),
])
def test_config_round_trip(layer):
    x = np.random.default_rng(6).normal(size=(1, 6, 6, 4)).astype("float32")
    out = layer(x)
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(clone(x)), keras.ops.convert_to_numpy(out),
                               rtol=1e-6, atol=1e-6)


def test_saved_model_round_trip(tmp_path):
    inputs = keras.Input((6, 6, 4))
    x = AxialAttention("height", 8, 16, num_heads=2)(inputs)
    x = LocalSelfAttention2D(8, 8, num_heads=2, window=3)(x)
    model = keras.Model(inputs, x)
    path = tmp_path / "m.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    data = np.random.default_rng(7).normal(size=(1, 6, 6, 4)).astype("float32")
    np.testing.assert_allclose(restored.predict(data, verbose=0), model.predict(data, verbose=0), rtol=1e-5)


@pytest.mark.parametrize("kwargs,match", [
    (dict(axis="depth", key_depth=8, value_depth=8), "axis"),
    (dict(axis="width", key_depth=6, value_depth=8, num_heads=4), "divisible"),
    (dict(axis="width", key_depth=8, value_depth=8, span=4), "odd"),
])
def test_axial_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AxialAttention(**kwargs)
