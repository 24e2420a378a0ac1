"""Backbones: ResNet, stand-alone self-attention ResNets and Axial-ResNets (paper Sec. 3.2, 4.1).

All are ResNet-50-shaped (blocks 3, 4, 6, 3, stride in the first block of
stages 2-4) and differ in the bottleneck's spatial operator, bottleneck widths
and stem:

| family      | spatial operator            | widths W (x multiplier) | block output | stem |
|-------------|-----------------------------|-------------------------|--------------|------|
| `resnet`    | 3x3 conv [30]               | 64, 128, 256, 512       | 4W           | 7x7 conv + max-pool |
| `attention` | 7x7 local attention [63]    | 64, 128, 256, 512       | 4W           | 7x7 conv + max-pool |
| `axial`     | height + width axial layers | 128, 256, 512, 1024     | 2W           | 7x7 conv + max-pool ("conv-stem"), or three axial blocks ("Full") |
| `xception`  | Xception-71 (models/xception.py), Panoptic-DeepLab's baseline [18] | | | |

Segmentation models (Sec. 3.2) use DeepLab's three-convolution stem and output
stride 16 or 32.

Axial widths: "we set d_in = 128, d_out = 2 d_q = 16 for the first stage after
the 'stem'. We double them when spatial resolution is reduced ... we multiply all
the channels by 0.5, 0.75, and 2, resulting in Axial-ResNet-{S, M, XL}" (Sec. 4.1).
The multiplier scales every channel count, the stem's included.

Full Axial-ResNet (Sec. 3.2, 4.1): "replacing the 'stem' with three
axial-attention blocks where the first block has stride 2", span m = 15 in all
blocks.  Assumed here (not stated in the paper): stem blocks of width 64 and
output 128 (times the multiplier), followed by the 3x3 stride-2 max-pool, so the
first stage runs at 56 x 56 as in the conv-stem model.  See README "Assumptions".
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import keras
from keras import layers

from models.blocks import AxialAttentionOp, LocalAttentionOp, bottleneck_block, conv3x3, conv_bn
from models.xception import build_xception71

STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
FAMILIES = ("resnet", "attention", "axial", "xception")
STEMS = ("conv7x7", "three_conv", "axial")
OUTPUT_STRIDES = (16, 32)


@dataclass(frozen=True)
class BackboneSpec:
    """Everything that defines a backbone; presets are instances of this."""

    family: str
    width_multiplier: float = 1.0
    depth: int = 50
    stem: str = "conv7x7"
    # Axial family: span m (None = global) of every axial layer.
    span: int | None = None
    # Attention families: the paper's "PS" and "BN" columns.
    position_sensitive: bool = True
    attention_batch_norm: bool = True
    # Local attention window m (7 in [63]).
    window: int = 7
    num_heads: int = 8
    # Segmentation (Sec. 3.2, "Axial-DeepLab"): 16 keeps the last stage at stride 1.
    output_stride: int = 32
    # Blocks per stage, overriding `depth`'s (3, 4, 6, 3); tiny values make cheap test models.
    stage_blocks: tuple[int, int, int, int] | None = None

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"unknown backbone family {self.family!r}; expected one of {FAMILIES}")
        if self.stem not in STEMS:
            raise ValueError(f"unknown stem {self.stem!r}; expected one of {STEMS}")
        if self.family == "xception":
            if self.depth != 71:
                raise ValueError("the xception family is DeepLab's Xception-71: depth=71")
        elif self.depth not in STAGE_BLOCKS:
            raise ValueError(f"unsupported depth {self.depth}; expected one of {sorted(STAGE_BLOCKS)}")
        if self.stem == "axial" and self.family != "axial":
            raise ValueError("the axial stem belongs to the axial family (Full Axial-ResNet)")
        if self.output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {self.output_stride}")

    def channels(self, base: int) -> int:
        return int(round(base * self.width_multiplier))

    @property
    def stage_widths(self) -> tuple[int, ...]:
        base = (128, 256, 512, 1024) if self.family == "axial" else (64, 128, 256, 512)
        return tuple(self.channels(w) for w in base)

    @property
    def expansion(self) -> int:
        return 2 if self.family == "axial" else 4

    def spatial_op(self, dilation: int = 1):
        if self.family == "resnet":
            return functools.partial(conv3x3, dilation=dilation)
        if self.family == "attention":
            return LocalAttentionOp(
                window=self.window,
                num_heads=self.num_heads,
                position_sensitive=self.position_sensitive,
                use_batch_norm=self.attention_batch_norm,
            )
        return AxialAttentionOp(
            span=self.span,
            num_heads=self.num_heads,
            position_sensitive=self.position_sensitive,
            use_batch_norm=self.attention_batch_norm,
        )


def conv7x7_stem(x, channels: int):
    """ResNet's stem: strided 7x7 convolution and 3x3 max-pooling (output stride 4)."""
    x = conv_bn(x, channels, 7, strides=2, name="stem_conv")
    return layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)


def three_conv_stem(x, spec: "BackboneSpec"):
    """DeepLab's stem: three 3x3 convolutions (stride 2, 1, 1) and max-pooling (Sec. 3.2, [14]).

    "Similar to [14], we adopt three 3x3 convolutions in the stem" (Sec. 3.2);
    64, 64 and 128 channels (times the multiplier), as in deeplab2's "beta" stem.
    """
    x = conv_bn(x, spec.channels(64), 3, strides=2, name="stem_conv1")
    x = conv_bn(x, spec.channels(64), 3, name="stem_conv2")
    x = conv_bn(x, spec.channels(128), 3, name="stem_conv3")
    return layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)


def axial_stem(x, spec: BackboneSpec):
    """Full Axial-ResNet stem: three axial blocks, the first strided, then max-pool."""
    spatial = spec.spatial_op()
    width, out_channels = spec.channels(64), spec.channels(128)
    for i in range(3):
        x = bottleneck_block(x, width, out_channels, strides=2 if i == 0 else 1,
                             spatial=spatial, name=f"stem_block{i + 1}")
    return layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)


def build_backbone(inputs, spec: BackboneSpec) -> dict[str, keras.KerasTensor]:
    """Builds the backbone on `inputs`; returns the endpoints stem, stage1 ... stage4.

    Output stride 16: "we remove the stride of the last stage but we do not
    implement the 'atrous' attention module" (Sec. 3.2).  Convolutional
    backbones keep their receptive field with atrous rate 2 instead, as in
    DeepLab [12]; rates do not change Params or M-Adds.
    """
    if spec.family == "xception":
        return build_xception71(inputs, spec.output_stride, spec.width_multiplier)
    stems = {"axial": axial_stem, "three_conv": three_conv_stem,
             "conv7x7": lambda x, s: conv7x7_stem(x, s.channels(64))}
    x = stems[spec.stem](inputs, spec)
    endpoints = {"stem": x}
    stride, dilation = 4, 1
    for stage, (width, blocks) in enumerate(zip(spec.stage_widths, spec.stage_blocks or STAGE_BLOCKS[spec.depth]), 1):
        stage_stride = 2 if stage > 1 else 1
        if stride * stage_stride > spec.output_stride:
            stage_stride, dilation = 1, dilation * 2
        stride *= stage_stride
        spatial = spec.spatial_op(dilation)
        for block in range(blocks):
            x = bottleneck_block(x, width, width * spec.expansion, stage_stride if block == 0 else 1,
                                 spatial, name=f"stage{stage}_block{block + 1}")
        endpoints[f"stage{stage}"] = x
    return endpoints
