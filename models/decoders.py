"""Panoptic-DeepLab decoders, ASPP, prediction heads and the Axial-Decoder.

Paper Sec. 3.2 ("Axial-DeepLab") keeps Panoptic-DeepLab's [18] dual
convolutional decoders and heads, drops ASPP, and explores a single
Axial-Decoder (Sec. 3.2; Appendix B, Fig. 9).

- Dual decoders [18]: the backbone (or ASPP) output is upsampled bilinearly and
  fused with a 1x1-projected encoder feature at each finer stride, each fusion a
  5x5 depthwise-separable convolution.  Semantic: projections 64 (OS8), 32 (OS4),
  256 channels; instance: 32, 16, 128 channels.  At output stride 32 the first
  fusion is with the OS16 feature (projections 128 / 64), so the decoder still
  reaches OS4 in the same steps.
- ASPP [13, 14]: 1x1 branch, three 3x3 depthwise-separable branches (rates
  6, 12, 18 at OS16), image pooling, 1x1 projection; 256 channels.  Each decoder
  has its own ASPP in [18].
- Heads [18] at OS4: semantic 5x5 separable conv (256) + 1x1 to the classes;
  center and offset each 5x5 separable conv (32) + 1x1 to 1 and 2 channels.
- Axial-Decoder (Fig. 9): one axial-attention block per upsampling stage: the
  coarser feature is upsampled, concatenated with a projected encoder feature,
  and passed through an axial bottleneck block.  The exact widths are not
  published; see `AXIAL_DECODER_*` and README "Assumptions".
"""

from __future__ import annotations

from keras import layers

from models.blocks import AxialAttentionOp, batch_norm, bottleneck_block, conv_bn

ASPP_CHANNELS = 256
ASPP_RATES = {16: (6, 12, 18), 32: (3, 6, 9)}
DECODER_KERNEL = 5


def separable_conv_bn(x, filters: int, kernel_size: int = DECODER_KERNEL, dilation: int = 1,
                      name: str = "sepconv"):
    """Depthwise conv + BN + ReLU, then 1x1 conv + BN + ReLU (no biases: BN follows)."""
    x = layers.DepthwiseConv2D(kernel_size, padding="same", dilation_rate=dilation, use_bias=False,
                               name=f"{name}_depthwise")(x)
    x = batch_norm(x, name=f"{name}_depthwise_bn")
    x = layers.ReLU(name=f"{name}_depthwise_relu")(x)
    return conv_bn(x, filters, 1, name=f"{name}_pointwise")


def resize_to(x, reference, name: str):
    """Bilinear resize of x to the spatial size of `reference` (sizes are static)."""
    height, width = reference.shape[1], reference.shape[2]
    if (x.shape[1], x.shape[2]) == (height, width):
        return x
    return layers.Resizing(height, width, interpolation="bilinear", name=name)(x)


def aspp(x, output_stride: int, name: str, filters: int = ASPP_CHANNELS):
    """Atrous spatial pyramid pooling with depthwise-separable atrous branches."""
    branches = [conv_bn(x, filters, 1, name=f"{name}_conv1x1")]
    for i, rate in enumerate(ASPP_RATES[output_stride]):
        branches.append(separable_conv_bn(x, filters, 3, dilation=rate, name=f"{name}_atrous{i + 1}"))
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    pooled = conv_bn(pooled, filters, 1, name=f"{name}_pool_conv")
    branches.append(layers.UpSampling2D(size=(x.shape[1], x.shape[2]), name=f"{name}_pool_up")(pooled))
    x = layers.Concatenate(name=f"{name}_concat")(branches)
    x = conv_bn(x, filters, 1, name=f"{name}_project")
    return layers.Dropout(0.1, name=f"{name}_dropout")(x)


# Encoder features fused on the way up, finest last: (endpoint, stride).
FUSION_SOURCES = {16: (("stage2", 8), ("stage1", 4)),
                  32: (("stage3", 16), ("stage2", 8), ("stage1", 4))}
SEMANTIC_DECODER = {"channels": 256, "projections": {16: 128, 8: 64, 4: 32}}
INSTANCE_DECODER = {"channels": 128, "projections": {16: 64, 8: 32, 4: 16}}


def convolutional_decoder(x, endpoints, output_stride: int, channels: int, projections: dict,
                          name: str):
    """Panoptic-DeepLab's decoder: upsample, concatenate a projected encoder feature, 5x5 sep conv."""
    for endpoint, stride in FUSION_SOURCES[output_stride]:
        skip = conv_bn(endpoints[endpoint], projections[stride], 1, name=f"{name}_os{stride}_project")
        x = resize_to(x, skip, name=f"{name}_os{stride}_upsample")
        x = layers.Concatenate(name=f"{name}_os{stride}_concat")([x, skip])
        x = separable_conv_bn(x, channels, name=f"{name}_os{stride}_fuse")
    return x


def prediction_head(x, hidden: int, outputs: int, name: str):
    """5x5 separable conv, then a 1x1 convolution with bias to the predicted channels."""
    x = separable_conv_bn(x, hidden, name=f"{name}_conv")
    return layers.Conv2D(outputs, 1, name=f"{name}_predict")(x)


# Axial-Decoder (Fig. 9; App. B: "We apply three such blocks, analogous to the three 5x5
# convolutions in Panoptic-DeepLab").  Not published beyond that; designed here from Fig. 9's
# caption and Tab. 8's counts (README "Assumptions"): three axial bottleneck blocks of width
# 128 (output 256, like the 256-channel decoder), one per stride from OS16 down to OS4.  Each
# block's input is the coarser feature, bilinearly upsampled, concatenated with the encoder
# feature of that stride after a 1x1 projection to 512 / 256 / 128 channels at OS16 / 8 / 4
# (four times Panoptic-DeepLab's semantic projections); at output stride 16 the OS16 block works
# on the backbone output itself.  Of the layouts tried (block widths 32-256, projections x1, x2,
# x4, concatenation or addition, three or four blocks) this one leaves the fewest Tab. 8 cells
# off; none fits all four.  Widths scale with the backbone's multiplier.
AXIAL_DECODER_WIDTH = 128
AXIAL_DECODER_PROJECTIONS = {16: 512, 8: 256, 4: 128}
AXIAL_DECODER_STAGES = {16: ((16, None), (8, "stage2"), (4, "stage1")),
                        32: ((16, "stage3"), (8, "stage2"), (4, "stage1"))}


def axial_decoder(x, endpoints, output_stride: int, span: int | None, width_multiplier: float,
                  name: str = "decoder"):
    """Single Axial-Decoder shared by the semantic and instance heads (Sec. 3.2, App. B)."""
    spatial = AxialAttentionOp(span=span)
    width = int(round(AXIAL_DECODER_WIDTH * width_multiplier))
    for stride, endpoint in AXIAL_DECODER_STAGES[output_stride]:
        if endpoint is not None:
            projection = int(round(AXIAL_DECODER_PROJECTIONS[stride] * width_multiplier))
            skip = conv_bn(endpoints[endpoint], projection, 1, name=f"{name}_os{stride}_project")
            x = resize_to(x, skip, name=f"{name}_os{stride}_upsample")
            x = layers.Concatenate(name=f"{name}_os{stride}_concat")([x, skip])
        x = bottleneck_block(x, width, 2 * width, 1, spatial, name=f"{name}_os{stride}_block")
    return x
