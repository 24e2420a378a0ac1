"""The first author's PyTorch Axial-ResNets (csrhddlam/axial-deeplab), in Keras, so their
ImageNet checkpoints load (models/checkpoints.py, `axial-deeplab-pytorch`).

Facts read from that repository's lib/models/axialnet.py (commit 79088edb) and measured on the
fixture in ../shared/oracles/axial-deeplab-pytorch (README there), where they differ from the
paper-faithful conv-stem Axial-ResNets of models/backbones.py:

- Stem: 7x7 stride-2 conv (padding 3), BN, ReLU, 3x3 stride-2 max-pool with padding 1 on every
  side (Keras' "same" would pad only the bottom/right of an even input).
- Stages ("layer1".."layer4"): bottleneck width int(128 s), int(256 s), int(512 s), int(1024 s),
  output twice that, blocks (3, 4, 6, 3) for axial50{s,m,l} (s = 0.5, 0.75, 1) and (1, 2, 4, 1)
  for axial26s; the first block of layers 2-4 strides.
- Block: 1x1 conv_down, BN, ReLU, height-axis layer, width-axis layer, then, when strided, a
  2x2 average pool (both axial layers run at the input resolution), ReLU, 1x1 conv_up, BN, add
  the shortcut (strided 1x1 conv + BN when the shape changes), ReLU.
- Axial layers: 8 heads, queries and keys width / 2 deep, values width deep, global span;
  BN of qkv, of the three similarity terms per head and of the two retrieved terms per channel,
  as models/layers' attention (the converter reorders and reshapes them).
- BN epsilon 1e-5 (PyTorch's default).  This model's BN keep Keras' 1e-3; the converter folds the
  difference into each BN's scale, gamma * sqrt((var + 1e-3) / (var + 1e-5)), which gives the
  same inference outputs.
- Head: global average pooling and a fully connected layer ("fc").

Endpoints: `layer1`..`layer4` are the stages' outputs (after the last ReLU), `logits` the head's.
The PyTorch model is built for 224 x 224 inputs (its position tables span the axis lengths
56 / 28 / 14 / 7); this one runs at any size, agreeing with it at 224.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import keras
from keras import layers

from models.blocks import batch_norm
from models.layers import AxialAttention


def _conv_bn(x, filters: int, kernel: int, name: str, strides: int = 1, relu: bool = True):
    """PyTorch's conv (padding (k - 1) / 2 on every side, no bias) + BN (+ ReLU)."""
    if kernel > 1:
        pad = (kernel - 1) // 2
        x = layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
    x = layers.Conv2D(filters, kernel, strides=strides, padding="valid", use_bias=False, name=name)(x)
    x = batch_norm(x, name=f"{name}_bn")
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def axial_block(x, width: int, strides: int, num_heads: int, name: str, output_name: str):
    out_channels = 2 * width
    shortcut = x
    if strides > 1 or x.shape[-1] != out_channels:
        shortcut = _conv_bn(x, out_channels, 1, f"{name}_downsample", strides=strides, relu=False)
    y = _conv_bn(x, width, 1, f"{name}_conv_down")
    for axis in ("height", "width"):
        y = AxialAttention(axis=axis, key_depth=width // 2, value_depth=width, num_heads=num_heads, span=None,
                           name=f"{name}_{axis}")(y)
    if strides > 1:
        y = layers.AveragePooling2D(strides, name=f"{name}_pool")(y)
    y = layers.ReLU(name=f"{name}_attention_relu")(y)
    y = _conv_bn(y, out_channels, 1, f"{name}_conv_up", relu=False)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=output_name)(y)


@dataclass(frozen=True)
class PyTorchAxialResNetSpec:
    """AxialAttentionNet(AxialBlock, num_blocks, s=width_multiplier, num_classes=...) of axialnet.py."""

    num_blocks: tuple[int, int, int, int] = (3, 4, 6, 3)
    width_multiplier: float = 0.5
    num_classes: int = 1000
    num_heads: int = 8

    def build(self, input_size=(224, 224), name: str = "axial_pytorch") -> keras.Model:
        s = self.width_multiplier
        inputs = keras.Input(shape=(*input_size, 3), name="image")
        x = _conv_bn(inputs, int(64 * s), 7, "stem_conv", strides=2)
        # Padding with zeros equals PyTorch's -inf padding here: the input is after a ReLU.
        x = layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
        x = layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
        for stage, (base, blocks) in enumerate(zip((128, 256, 512, 1024), self.num_blocks), 1):
            for block in range(blocks):
                strides = 2 if stage > 1 and block == 0 else 1
                output_name = f"layer{stage}" if block == blocks - 1 else f"stage{stage}_block{block + 1}_out"
                x = axial_block(x, int(base * s), strides, self.num_heads, f"stage{stage}_block{block + 1}",
                                output_name)
        x = layers.GlobalAveragePooling2D(name="avgpool")(x)
        return keras.Model(inputs, layers.Dense(self.num_classes, name="fc")(x), name=name)

    def with_overrides(self, **changes) -> "PyTorchAxialResNetSpec":
        return dataclasses.replace(self, **changes)


AXIAL26S = PyTorchAxialResNetSpec((1, 2, 4, 1), 0.5)
AXIAL50S = PyTorchAxialResNetSpec((3, 4, 6, 3), 0.5)
AXIAL50M = PyTorchAxialResNetSpec((3, 4, 6, 3), 0.75)
AXIAL50L = PyTorchAxialResNetSpec((3, 4, 6, 3), 1.0)
