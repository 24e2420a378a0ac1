"""Xception-71, the backbone of Panoptic-DeepLab [18] in Tab. 2, 4 and 8 (DeepLab's variant [19, 67]).

Layout of DeepLab's Xception-71 (its entry flow has two more blocks than
Xception-65): a 3x3 stride-2 convolution (32) and a 3x3 convolution (64), then

| flow   | block | depths            | shortcut | units | stride |
|--------|-------|-------------------|----------|-------|--------|
| entry  | 1     | 128, 128, 128     | conv     | 1     | 2      |
| entry  | 2     | 256, 256, 256     | conv     | 1     | 1      |
| entry  | 3     | 256, 256, 256     | conv     | 1     | 2      |
| entry  | 4     | 728, 728, 728     | conv     | 1     | 1      |
| entry  | 5     | 728, 728, 728     | conv     | 1     | 2      |
| middle | 1     | 728, 728, 728     | sum      | 16    | 1      |
| exit   | 1     | 728, 1024, 1024   | conv     | 1     | 2      |
| exit   | 2     | 1536, 1536, 2048  | none     | 1     | 1      |

Each unit is three separable convolutions (3x3 depthwise + BN, 1x1 pointwise +
BN, no biases) with a ReLU before each; the stride sits on the third one and on
the 1x1 shortcut.  The last block instead puts a ReLU after each BN.  At output
stride 16 the exit flow runs at stride 1 with atrous rate 2 in its last block.
The decoder's low-level features are the second separable convolution of the
strided units of entry blocks 3 (OS4, 256 channels) and 5 (OS8, 728), and of
exit block 1 (OS16).
"""

from __future__ import annotations

import keras
from keras import layers

from models.blocks import batch_norm, conv_bn

# (depths, shortcut, units, stride, low-level endpoint fed to the decoder)
XCEPTION_71 = (
    ((128, 128, 128), "conv", 1, 2, None),
    ((256, 256, 256), "conv", 1, 1, None),
    ((256, 256, 256), "conv", 1, 2, "stage1"),
    ((728, 728, 728), "conv", 1, 1, None),
    ((728, 728, 728), "conv", 1, 2, "stage2"),
    ((728, 728, 728), "sum", 16, 1, None),
    ((728, 1024, 1024), "conv", 1, 2, "stage3"),
    ((1536, 1536, 2048), "none", 1, 1, None),
)


def separable_conv(x, filters: int, strides: int, dilation: int, activation_inside: bool, name: str):
    if not activation_inside:
        x = layers.ReLU(name=f"{name}_pre_relu")(x)
    x = layers.DepthwiseConv2D(3, strides=strides, dilation_rate=dilation if strides == 1 else 1,
                               padding="same", use_bias=False, name=f"{name}_depthwise")(x)
    x = batch_norm(x, name=f"{name}_depthwise_bn")
    if activation_inside:
        x = layers.ReLU(name=f"{name}_depthwise_relu")(x)
    return conv_bn(x, filters, 1, relu=activation_inside, name=f"{name}_pointwise")


def xception_unit(x, depths, shortcut: str, strides: int, dilation: int, activation_inside: bool,
                  name: str):
    """Three separable convolutions plus shortcut; returns (output, second conv's output)."""
    residual = x
    second = None
    for i, depth in enumerate(depths):
        residual = separable_conv(residual, depth, strides if i == 2 else 1, dilation,
                                  activation_inside, name=f"{name}_sepconv{i + 1}")
        if i == 1:
            second = residual
    if shortcut == "conv":
        x = conv_bn(x, depths[-1], 1, strides=strides, relu=False, name=f"{name}_shortcut")
        residual = layers.Add(name=f"{name}_add")([residual, x])
    elif shortcut == "sum":
        residual = layers.Add(name=f"{name}_add")([residual, x])
    return residual, second


def build_xception71(inputs, output_stride: int = 16, width_multiplier: float = 1.0) -> dict[str, keras.KerasTensor]:
    """Xception-71 endpoints: stage1 (OS4), stage2 (OS8), stage3 (OS16) low-level features, stage4.

    `width_multiplier` scales every channel count (1.0 is DeepLab's network; the proxy rule of
    training/experiments.py uses 0.25, as for the other backbones)."""
    def width(channels: int) -> int:
        return int(round(channels * width_multiplier))

    x = conv_bn(inputs, width(32), 3, strides=2, name="stem_conv1")
    x = conv_bn(x, width(64), 3, name="stem_conv2")
    endpoints = {"stem": x}
    stride, dilation = 2, 1
    for b, (depths, shortcut, units, block_stride, endpoint) in enumerate(XCEPTION_71, 1):
        if stride * block_stride > output_stride:
            # Keep the resolution; later blocks dilate instead ("atrous", DeepLab [12]).
            block_stride, next_dilation = 1, dilation * 2
        else:
            next_dilation = dilation
        last = b == len(XCEPTION_71)
        for u in range(units):
            x, second = xception_unit(x, tuple(map(width, depths)), shortcut, block_stride if u == 0 else 1, dilation,
                                      activation_inside=last, name=f"block{b}_unit{u + 1}")
        if endpoint:
            endpoints[endpoint] = second
        stride *= block_stride
        dilation = next_dilation
    endpoints["stage4"] = x
    return endpoints
