"""The counter against hand-computed counts."""

import keras
import pytest

from models import counting, presets
from models.layers import AxialAttention


def test_small_network_by_hand():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", use_bias=False)(inputs)  # 4x4x4
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = keras.layers.SeparableConv2D(6, 5, padding="same", use_bias=False)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(10)(x)
    c = counting.count(keras.Model(inputs, x))
    assert c.params == 3 * 3 * 3 * 4 + 2 * 4 + 3 * 3 * 4 + (5 * 5 * 4 + 4 * 6) + (6 * 10 + 10)
    assert c.madds_by_op == {
        "conv": 16 * 27 * 4 + 16 * 4 * 6,
        "depthwise_conv": 16 * 9 * 4 + 16 * 25 * 4,
        "fc": 60,
    }


def test_resnet50_is_the_standard_resnet50():
    c = counting.count(presets.build("resnet50"))
    assert c.params == 25_557_032           # torchvision's resnet50, BN included
    assert c.madds == 4_089_184_256         # conv + fc multiply-accumulates at 224 x 224


def test_attention_batch_norm_is_listed_but_not_counted():
    inputs = keras.Input((6, 6, 16))
    x = AxialAttention("width", 8, 16, num_heads=2)(inputs)
    c = counting.count(keras.Model(inputs, x))
    assert c.params_by_op["attention_batch_norm"] == c.uncounted_params > 0
    assert c.params == c.params_by_op["qkv_projection"] + c.params_by_op["position_table"]


def test_unknown_layer_with_weights_is_rejected():
    class Mystery(keras.layers.Layer):
        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1], 2))

        def call(self, x):
            return keras.ops.matmul(x, self.w)

    inputs = keras.Input((4,))
    with pytest.raises(TypeError, match="no counting rule"):
        counting.count(keras.Model(inputs, Mystery()(inputs)))


def test_blocked_local_reading_only_changes_local_axial_attention():
    global_span = counting.count_preset(presets.get("axial-resnet-conv-stem-w0.5"), (64, 64))
    assert global_span.madds_blocked_local == global_span.madds
    full = counting.count_preset(presets.get("full-axial-resnet-w0.5"), (64, 64))
    # 2m - 1 = 29 keys instead of 15 wherever an axis is longer than 15.
    assert full.madds_blocked_local > full.madds


def test_count_preset_defers_weights_but_counts_the_same():
    preset = presets.get("full-axial-resnet-w0.5")
    deferred = counting.count_preset(preset, input_size=(64, 64))
    eager = counting.count(preset.build((64, 64)))
    assert deferred.to_dict() == eager.to_dict()


def test_breakdown_command_line(capsys):
    assert counting.main(["axial-resnet-conv-stem-w0.5", "--input-size", "64", "64"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("axial-resnet-conv-stem-w0.5 at 64x64:")
    for part in ("qkv_projection", "attention_logits", "*attention_batch_norm", "stage4"):
        assert part in out
    assert counting.main(["no-such-model"]) == 2
    assert "unknown preset" in capsys.readouterr().err


@pytest.mark.parametrize("size", [("0", "0"), ("-3", "5")])
def test_counting_cli_rejects_non_positive_sizes_in_one_line(capsys, size):
    from models import counting

    assert counting.main(["resnet50", "--input-size", *size]) == 2
    assert capsys.readouterr().err.splitlines() == [f"error: --input-size must be positive, got {size[0]} {size[1]}"]
