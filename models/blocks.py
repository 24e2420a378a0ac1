"""Residual bottleneck blocks with a pluggable spatial operator (paper Sec. 3.2, Fig. 2).

"To transform a ResNet to an Axial-ResNet, we replace the 3x3 convolution in the
residual bottleneck block by two multi-head axial-attention layers" (Sec. 3.2).
So one bottleneck function serves every backbone of the paper; only its spatial
operator changes:

- `conv3x3`            ResNet [30];
- `local_attention`    the stand-alone self-attention networks of [63] (Tab. 1, 6, 9);
- `axial_attention`    Axial-ResNet: height-axis then width-axis layer, "no 1x1
                       convolution in-between" (Sec. 3.2).

Blocks are functions on Keras symbolic tensors, so a backbone is one flat
functional graph and the counter (models/counting.py) sees every layer with its
shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras
from keras import layers

from models.layers import AxialAttention, LocalSelfAttention2D

# BN settings of the TF reference implementations (deeplab2, TF official ResNet).
BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3

# A spatial operator maps (tensor, bottleneck width, stride, name) to a tensor of
# `width` channels at the strided resolution.
SpatialOp = Callable[[keras.KerasTensor, int, int, str], keras.KerasTensor]


def batch_norm(x, name: str, zero_gamma: bool = False):
    return layers.BatchNormalization(
        # Global batch statistics across replicas (sync BN, as in [18]); no-op on one device.
        # Keras refuses synchronized=True on other backends than TensorFlow (the JAX engine will
        # handle replicas itself).
        synchronized=keras.backend.backend() == "tensorflow",
        momentum=BN_MOMENTUM,
        epsilon=BN_EPSILON,
        gamma_initializer="zeros" if zero_gamma else "ones",
        name=name,
    )(x)


def conv_bn(x, filters: int, kernel_size: int, strides: int = 1, relu: bool = True,
            name: str = "conv", zero_gamma: bool = False, dilation: int = 1):
    """Convolution (no bias: BN follows) + BN (+ ReLU)."""
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False,
                      dilation_rate=dilation, name=name)(x)
    x = batch_norm(x, name=f"{name}_bn", zero_gamma=zero_gamma)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def conv3x3(x, width: int, strides: int, name: str, dilation: int = 1):
    """ResNet's spatial operator; the stride sits on the 3x3 convolution."""
    return conv_bn(x, width, 3, strides=strides, name=name, dilation=dilation)


@dataclass(frozen=True)
class LocalAttentionOp:
    """The 7x7 stand-alone self-attention of [63], optionally position-sensitive (Eq. 3)."""

    window: int = 7
    num_heads: int = 8
    position_sensitive: bool = False
    use_batch_norm: bool = False

    def __call__(self, x, width: int, strides: int, name: str):
        x = LocalSelfAttention2D(
            key_depth=width,
            value_depth=width,
            num_heads=self.num_heads,
            window=self.window,
            strides=strides,
            query_position=True,
            key_position=self.position_sensitive,
            value_position=self.position_sensitive,
            use_batch_norm=self.use_batch_norm,
            name=name,
        )(x)
        # The BN + ReLU that followed ResNet's 3x3 convolution stay in the block.
        x = batch_norm(x, name=f"{name}_bn")
        return layers.ReLU(name=f"{name}_relu")(x)


@dataclass(frozen=True)
class AxialAttentionOp:
    """Height-axis then width-axis position-sensitive axial-attention (Fig. 2).

    With bottleneck width W the value depth is W (d_out = W / N per head) and
    the query/key depth W / 2 (d_out = 2 d_q, Sec. 4.1).  Each layer strides its
    own axis (Sec. 3.2).  The layers' own output BN normalises the result.
    """

    span: int | None = None
    num_heads: int = 8
    position_sensitive: bool = True
    use_batch_norm: bool = True

    def __call__(self, x, width: int, strides: int, name: str):
        for axis in ("height", "width"):
            x = AxialAttention(
                axis=axis,
                key_depth=width // 2,
                value_depth=width,
                num_heads=self.num_heads,
                span=self.span,
                strides=strides,
                query_position=self.position_sensitive,
                key_position=self.position_sensitive,
                value_position=self.position_sensitive,
                use_batch_norm=self.use_batch_norm,
                name=f"{name}_{axis}",
            )(x)
        return layers.ReLU(name=f"{name}_relu")(x)


def bottleneck_block(x, width: int, out_channels: int, strides: int, spatial: SpatialOp,
                     name: str):
    """1x1 reduce -> spatial operator (carries the stride) -> 1x1 expand, plus shortcut.

    The last BN's gamma starts at zero so each block starts as identity [28].
    The shortcut is a strided 1x1 projection + BN when the shape changes.
    """
    shortcut = x
    if strides > 1 or x.shape[-1] != out_channels:
        shortcut = conv_bn(x, out_channels, 1, strides=strides, relu=False, name=f"{name}_shortcut")
    x = conv_bn(x, width, 1, name=f"{name}_conv1")
    x = spatial(x, width, strides, f"{name}_spatial")
    x = conv_bn(x, out_channels, 1, relu=False, name=f"{name}_conv2", zero_gamma=True)
    x = layers.Add(name=f"{name}_add")([x, shortcut])
    return layers.ReLU(name=f"{name}_out")(x)
