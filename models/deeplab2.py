"""Models in the layout of deeplab2, the authors' TF2 library, so its released checkpoints load.

deeplab2 (google-research/deeplab2) publishes the Axial-DeepLab model zoo: ImageNet-pretrained
backbones and Cityscapes Panoptic-DeepLab models built on Axial-SWideRNets and the MaX-DeepLab
backbones (`g3doc/projects/axial_deeplab.md`, beside the checkout as
`../shared/paper/003_aa2f8f118d60f19e.txt`).  Their layout differs from the paper-faithful
models of models/backbones.py in ways that change the numbers a checkpoint produces, so they
are built here, facts read from deeplab2's source (commit 64bc1c1a):

- `model/encoder/axial_resnet.py` (AxialResNet): five block groups at input strides
  1, 2, 4, 8, 16.  ResNet-type encoders skip the first (their stem is a 7x7 conv, or the
  inception "beta" stem of three 3x3 convs); Wide-ResNet-type encoders use a 3x3 stride-2 stem
  conv and all five, the first at stride 1 with 3 blocks that the layer multiplier never
  scales (the "stem" of SWideRNet-(1, 1, x)).  There is no max-pool: the first block of the
  next group strides instead.  Filters of a group are round(32 x input stride x width
  multiplier) (the first Wide-ResNet group uses the stem width multiplier); blocks per group
  are int(n x layer multiplier).
- `model/layers/axial_block_groups.py` (BlockGroup) picks each block's type from the stride
  its input has in the original ResNet: an axial block when that stride reaches
  `use_axial_beyond_stride` (so a group can start with a convolutional block and continue with
  axial ones: MaX-DeepLab-S's third group, the Axial-SWideRNets' fourth), else a bottleneck
  (ResNet types), or a basic block (Wide-ResNet, before the last group) and an expanded
  bottleneck (Wide-ResNet's last group).  Only the first block of a group strides, and only
  while the input stride is below the output stride; beyond it, atrous rates grow instead
  (the first block keeps rate 1, or, in a basic block, rate 1 then the new rate).
- `model/layers/axial_blocks.py` (AxialBlock): a block takes the previous (not activated)
  output, applies ReLU, and returns conv branch + shortcut without a final ReLU.  The shortcut
  is a strided 1x1 conv + BN when the channels change, else x[::s, ::s].  The last BN of the
  branch starts at gamma = 0.  Axial blocks: 1x1 conv to (expansion x filters), height-axis
  layer (stride after it), width-axis layer (stride after it), ReLU, 1x1 conv.  Key depth
  = key_expansion x filters, value depth = value_expansion x filters, 8 heads, global span,
  position tables of 2 x 255 - 1 rows (model/layers/axial_layers.py, positional_encodings.py).
- `model/layers/convolutions.py` (Conv2DSame): strided convolutions pad symmetrically
  ((k - 1) / 2 on every side) and then run "valid"; Keras' "same" would pad the bottom/right
  more for even inputs, which shifts every feature.  BN: Keras defaults, epsilon 1e-3,
  momentum 0.99 (trainer.proto's batchnorm defaults).
- Endpoints (AxialResNet.call_encoder_before_stacked_decoder): `stage<k>` is group k's output
  before activation, `res<k>` after ReLU; `stage1`/`res1` is the stem, or for Wide-ResNets the
  first group.  deeplab2's group k is the paper's ResNet stage k - 1.
- MaX-DeepLab-L's backbone adds one stack of the MaX-DeepLab "stacked decoder" (strides
  8, 4, 8, 16 at output stride 16; `model/layers/resized_fuse.py` merges features), whose
  activated output is the `backbone_output` endpoint.

The Panoptic-DeepLab meta-architecture of the Cityscapes model zoo
(`configs/cityscapes/axial_deeplab/*.textproto`, `model/decoder/panoptic_deeplab.py`,
`model/decoder/aspp.py`): per decoder a 1x1 "ASPP" projection of `res5` to 256 channels
(`aspp_use_only_1x1_proj_conv`), then for `res3` and `res2` a 1x1 projection (semantic 64 / 32,
instance 32 / 16), a bilinear resize with aligned corners, concatenation and a 5x5
depthwise-separable conv (256 / 128 channels; BN + ReLU after both parts); heads of a 5x5
separable conv (256 semantic, 32 center, 32 offset) and a 1x1 conv with bias.  The decoders
read `res5`, so MaX-DeepLab-L's stacked decoder does not reach the predictions: the panoptic
model leaves it out and the converter says so (models/checkpoints.py).

Keras layer names follow deeplab2's object paths (models/checkpoints.py, `keras_scope`): the
path's components without their leading underscore, without deeplab2's `_bn` / `_bn_act`
suffixes, joined by "_"; a convolution's BN is "<conv>_bn".  E.g. deeplab2's
`encoder/_stage2/_block1/_conv1_bn_act/_conv` is `stage2_block1_conv1`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import keras
from keras import layers, ops

from models.blocks import batch_norm
from models.layers import AxialAttention

BACKBONE_TYPES = ("resnet", "resnet_beta", "wider_resnet")
# Input strides of deeplab2's five block groups in the original ResNet.
GROUP_INPUT_STRIDES = (1, 2, 4, 8, 16)
# Ends of MaX-DeepLab's stacked decoder: it decodes down to this output stride.
HIGH_RESOLUTION_OUTPUT_STRIDE = 4


# --- layers ----------------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package="axial_deeplab")
class AlignCornersResize(keras.layers.Layer):
    """Bilinear resize with aligned corners (tf.compat.v1.image.resize(..., align_corners=True)).

    deeplab2 resizes every decoder feature this way (model/utils.py, resize_align_corners):
    the corner pixels of input and output coincide, so a feature of (n - 1) s + 1 pixels maps
    exactly onto one of n pixels.  Keras' Resizing uses half-pixel centers instead.  Sizes are
    static, so each axis is one gather of the two neighbours and a linear blend.  Weightless
    resampling: the counting convention charges it no M-Adds (`madds_free`).
    """

    madds_free = True

    def __init__(self, height: int, width: int, **kwargs):
        super().__init__(**kwargs)
        self.height = int(height)
        self.width = int(width)

    @staticmethod
    def _neighbours(n_in: int, n_out: int):
        scale = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        position = np.arange(n_out, dtype=np.float32) * np.float32(scale)
        low = np.minimum(np.floor(position).astype("int32"), n_in - 1)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, (position - low).astype("float32")

    def _resize_axis(self, x, axis: int, n_out: int):
        n_in = x.shape[axis]
        if n_in == n_out:
            return x
        low, high, fraction = self._neighbours(n_in, n_out)
        shape = [1, 1, 1, 1]
        shape[axis] = n_out
        fraction = ops.cast(np.reshape(fraction, shape), x.dtype)
        below, above = ops.take(x, low, axis=axis), ops.take(x, high, axis=axis)
        return below + (above - below) * fraction

    def call(self, inputs):
        return self._resize_axis(self._resize_axis(inputs, 1, self.height), 2, self.width)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.height, self.width, input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update(height=self.height, width=self.width)
        return config


def conv_bn(x, filters: int, kernel_size: int, name: str, strides: int = 1, dilation: int = 1,
            relu: bool = True, bn: bool = True, zero_gamma: bool = False):
    """deeplab2's Conv2DSame: conv (no bias) + BN (+ ReLU), symmetric padding when strided.

    A strided conv zero-pads (k_eff - 1) // 2 before and the rest after, then runs "valid";
    an unstrided one is "same" (symmetric for odd kernels).  Names: `name`, `name`_bn.
    """
    if strides > 1:
        total = (kernel_size - 1) * dilation
        before = total // 2
        if total:
            x = layers.ZeroPadding2D(((before, total - before), (before, total - before)), name=f"{name}_pad")(x)
        x = layers.Conv2D(filters, kernel_size, strides=strides, padding="valid", dilation_rate=dilation,
                          use_bias=False, name=name)(x)
    else:
        x = layers.Conv2D(filters, kernel_size, padding="same", dilation_rate=dilation, use_bias=False,
                          name=name)(x)
    if bn:
        x = batch_norm(x, name=f"{name}_bn", zero_gamma=zero_gamma)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def separable_conv_bn(x, filters: int, kernel_size: int, name: str):
    """deeplab2's SeparableConv2DSame with BN and ReLU after the depthwise and the pointwise part."""
    x = layers.DepthwiseConv2D(kernel_size, padding="same", use_bias=False, name=f"{name}_depthwise")(x)
    x = batch_norm(x, name=f"{name}_depthwise_bn")
    x = layers.ReLU(name=f"{name}_depthwise_relu")(x)
    return conv_bn(x, filters, 1, name=f"{name}_pointwise")


def resize_like_size(x, height: int, width: int, name: str):
    """x resized with aligned corners to (height, width); itself when it has that size."""
    if (x.shape[1], x.shape[2]) == (height, width):
        return x
    return AlignCornersResize(height, width, name=name)(x)


def resize_like(x, reference, name: str):
    return resize_like_size(x, reference.shape[1], reference.shape[2], name)


# --- blocks ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class BlockPlan:
    """One residual block as deeplab2's BlockGroup decides it."""

    kind: str                 # "axial", "bottleneck" or "basic"
    filters: tuple[int, ...]  # deeplab2's filters_list
    strides: int
    dilation: int             # atrous rate of the 3x3 convs
    second_dilation: int      # the basic block's second 3x3 conv


def plan_block_group(filters: int, num_blocks: int, group_stride: int, input_stride: int, spec) -> list[BlockPlan]:
    """The blocks of one group: type, widths, stride and atrous rates (see module docstring)."""
    plans = []
    stride_now = input_stride  # the stride this block's input has in the original ResNet
    output_stride = spec.output_stride
    for index in range(num_blocks):
        strides = group_stride if index == 0 and input_stride < output_stride else 1
        dilation = stride_now // output_stride if stride_now > output_stride else 1
        if index == 0 and input_stride * group_stride > output_stride:
            second = input_stride * group_stride // output_stride
        else:
            second = dilation
        if 0 < spec.use_axial_beyond_stride <= stride_now:
            plan = BlockPlan("axial", (filters * spec.attention_bottleneck_expansion, filters, filters * 4),
                             strides, dilation, second)
        elif spec.backbone_type in ("resnet", "resnet_beta"):
            plan = BlockPlan("bottleneck", (filters, filters, filters * 4), strides, dilation, second)
        elif input_stride * group_stride < 32:
            plan = BlockPlan("basic", (filters * 4, filters * 4), strides, dilation, second)
        else:  # Wide-ResNet's last group: an expanded bottleneck
            plan = BlockPlan("bottleneck", (filters, filters * 2, filters * 4), strides, dilation, second)
        plans.append(plan)
        if index == 0:
            stride_now *= group_stride
    return plans


def residual_block(x, plan: BlockPlan, spec, name: str):
    """deeplab2's AxialBlock on the previous block's (not activated) output; returns the sum,
    not activated.  The ReLU at the start is shared by branch and shortcut."""
    x = layers.ReLU(name=f"{name}_input_relu")(x)
    out_channels = plan.filters[-1]
    if x.shape[-1] != out_channels:
        shortcut = conv_bn(x, out_channels, 1, name=f"{name}_shortcut", strides=plan.strides, relu=False)
    elif plan.strides > 1:
        # x[::s, ::s]: a 1x1 max-pool with stride s keeps exactly those pixels.
        shortcut = layers.MaxPooling2D(1, strides=plan.strides, name=f"{name}_shortcut_subsample")(x)
    else:
        shortcut = x
    if plan.kind == "basic":
        y = conv_bn(x, plan.filters[0], 3, name=f"{name}_conv1", strides=plan.strides, dilation=plan.dilation)
        y = conv_bn(y, plan.filters[1], 3, name=f"{name}_conv2", dilation=plan.second_dilation, relu=False,
                    zero_gamma=True)
    else:
        y = conv_bn(x, plan.filters[0], 1, name=f"{name}_conv1")
        if plan.kind == "axial":
            width = plan.filters[1]
            for axis in ("height", "width"):
                y = AxialAttention(
                    axis=axis,
                    key_depth=int(round(width * spec.key_expansion)),
                    value_depth=int(round(width * spec.value_expansion)),
                    num_heads=spec.num_heads,
                    span=None,  # deeplab2 implements global axial attention only
                    strides=plan.strides,
                    name=f"{name}_attention_{axis}_axis",
                )(y)
            y = layers.ReLU(name=f"{name}_attention_relu")(y)
        else:
            y = conv_bn(y, plan.filters[1], 3, name=f"{name}_conv2", strides=plan.strides, dilation=plan.dilation)
        y = conv_bn(y, plan.filters[2], 1, name=f"{name}_conv3", relu=False, zero_gamma=True)
    return layers.Add(name=f"{name}_add")([y, shortcut])


def block_group(x, filters: int, num_blocks: int, group_stride: int, input_stride: int, spec, name: str):
    for index, plan in enumerate(plan_block_group(filters, num_blocks, group_stride, input_stride, spec)):
        x = residual_block(x, plan, spec, name=f"{name}_block{index + 1}")
    return x


def resized_fuse(features, height: int, width: int, channels: int, name: str):
    """MaX-DeepLab's ResizedFuse (model/layers/resized_fuse.py): every feature brought to
    (height, width, channels) and summed.  A feature with the channels already is only
    resized; one of twice the size goes through ReLU and a strided 1x1 conv + BN; any other
    through ReLU, a 1x1 conv + BN and a resize."""
    outputs = []
    for index, feature in enumerate(features, 1):
        if feature.shape[-1] == channels:
            outputs.append(resize_like_size(feature, height, width, f"{name}_resize{index}"))
            continue
        activated = layers.ReLU(name=f"{name}_relu{index}")(feature)
        if ((feature.shape[1] + 1) // 2, (feature.shape[2] + 1) // 2) == (height, width):
            outputs.append(conv_bn(activated, channels, 1, name=f"{name}_strided_conv_bn{index}", strides=2,
                                   relu=False))
        else:
            y = conv_bn(activated, channels, 1, name=f"{name}_resized_conv_bn{index}", relu=False)
            outputs.append(resize_like_size(y, height, width, f"{name}_resize{index}"))
    return layers.Add(name=f"{name}_add")(outputs) if len(outputs) > 1 else outputs[0]


# --- encoder ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Deeplab2EncoderSpec:
    """deeplab2's AxialResNet in classification mode (the released backbones), as data.

    Field names follow deeplab2's get_model arguments (model/encoder/axial_resnet_instances.py):
    backbone_type, num_blocks, backbone_layer_multiplier, width_multiplier,
    stem_width_multiplier, output_stride, use_axial_beyond_stride; the block group config's
    attention_bottleneck_expansion and the axial layer's key/value expansions; and
    backbone_decoder_num_stacks (MaX-DeepLab-L's stacked decoder).
    """

    backbone_type: str
    num_blocks: tuple[int, int, int, int] = (3, 4, 6, 3)
    backbone_layer_multiplier: float = 1.0
    width_multiplier: float = 1.0
    stem_width_multiplier: float = 1.0
    output_stride: int = 16
    use_axial_beyond_stride: int = 0
    attention_bottleneck_expansion: int = 2
    key_expansion: float = 1.0
    value_expansion: float = 2.0
    num_heads: int = 8
    backbone_decoder_num_stacks: int = 0

    def __post_init__(self):
        if self.backbone_type not in BACKBONE_TYPES:
            raise ValueError(f"unknown deeplab2 backbone type {self.backbone_type!r}; expected one of "
                             f"{BACKBONE_TYPES}")
        if self.output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {self.output_stride}")
        if len(self.num_blocks) != 4 or min(self.num_blocks) < 1:
            raise ValueError(f"num_blocks needs four positive counts, got {self.num_blocks}")

    def group_filters(self, index: int) -> int:
        multiplier = self.stem_width_multiplier if (self.backbone_type == "wider_resnet" and index == 0) \
            else self.width_multiplier
        return int(round(GROUP_INPUT_STRIDES[index] * 32 * multiplier))

    def group_blocks(self) -> list[int]:
        return [3] + [int(n * self.backbone_layer_multiplier) for n in self.num_blocks]

    def stem(self, inputs):
        swm = self.stem_width_multiplier
        if self.backbone_type == "resnet_beta":  # inception stem (model/layers/stems.py)
            x = conv_bn(inputs, int(64 * swm), 3, name="stem_conv1", strides=2)
            x = conv_bn(x, int(64 * swm), 3, name="stem_conv2")
            return conv_bn(x, int(128 * swm), 3, name="stem_conv3", relu=False)
        kernel = 7 if self.backbone_type == "resnet" else 3
        return conv_bn(inputs, int(round(64 * swm)), kernel, name="stem", strides=2, relu=False)

    def endpoints(self, inputs) -> dict:
        """stage1..stage5 (not activated), res1..res5 (after ReLU) and backbone_output."""
        x = self.stem(inputs)
        out = {"stage1": x, "res1": layers.ReLU(name="res1")(x)}
        wide = self.backbone_type == "wider_resnet"
        blocks = self.group_blocks()
        for index in range(0 if wide else 1, 5):
            # Wide-ResNets apply their stem's stride already: their first group runs at stride 2.
            input_stride, group_stride = (2, 1) if wide and index == 0 else (GROUP_INPUT_STRIDES[index], 2)
            x = block_group(x, self.group_filters(index), blocks[index], group_stride, input_stride, self,
                            name=f"stage{index + 1}")
            out[f"stage{index + 1}"] = x
            out[f"res{index + 1}"] = layers.ReLU(name=f"res{index + 1}")(x)
        # Classification mode's `backbone_output`: the stacked decoder's activated output, or res5.
        out["backbone_output"] = (self.stacked_decoder(out, inputs.shape[1:3]) if self.backbone_decoder_num_stacks
                                  else out["res5"])
        return out

    def stacked_decoder(self, endpoints, input_size) -> keras.KerasTensor:
        """MaX-DeepLab's stacked decoder inside the backbone (AxialResNet, classification mode):
        from the output stride down to stride 4 and back, fusing the current feature with the
        last two features of the target stride, then one block; one stack per return to the
        output stride.  Returns the activated output."""
        os_ = self.output_stride
        features = {min(s, os_): [endpoints[f"stage{k}"]] for k, s in enumerate((2, 4, 8, 16), 1)}
        features[os_] = [endpoints["stage5"]]  # the last group's output replaces res4's stride
        current = endpoints["stage5"]
        stride, going_down, stacks, stage = os_, True, 0, 0
        while stacks < self.backbone_decoder_num_stacks:
            stage += 1
            stride = stride // 2 if going_down else stride * 2
            resnet_stride = 32 if stride == os_ else stride
            height, width = (-(-n // stride) for n in input_size)
            channels = int(round(resnet_stride * 64 * self.width_multiplier))
            current = resized_fuse([current] + features[stride][-2:], height, width, channels,
                                   name=f"decoder_stage{stage}_resized_fuse")
            current = block_group(current, channels // 4, 1, 1, resnet_stride, self, name=f"decoder_stage{stage}")
            features[stride].append(current)
            if stride == os_:
                stacks += 1
                going_down = True
            if stride == HIGH_RESOLUTION_OUTPUT_STRIDE:
                going_down = False
        return layers.ReLU(name="backbone_output")(current)

    def build(self, input_size, name: str = "deeplab2_encoder") -> keras.Model:
        inputs = keras.Input(shape=(*input_size, 3), name="image")
        return keras.Model(inputs, self.endpoints(inputs), name=name)

    def with_overrides(self, **changes) -> "Deeplab2EncoderSpec":
        return dataclasses.replace(self, **changes)


# --- Panoptic-DeepLab (deeplab2's decoder and heads) -------------------------------------------

@dataclass(frozen=True)
class DecoderConfig:
    """One Panoptic-DeepLab decoder (model/decoder/panoptic_deeplab.py, SingleDecoder)."""

    feature_key: str = "res5"
    aspp_channels: int = 256
    low_level: tuple[tuple[str, int], ...] = (("res3", 64), ("res2", 32))
    decoder_channels: int = 256


# The Cityscapes model zoo's settings (configs/cityscapes/axial_deeplab/*.textproto).
SEMANTIC_DECODER = DecoderConfig()
INSTANCE_DECODER = DecoderConfig(low_level=(("res3", 32), ("res2", 16)), decoder_channels=128)


def single_decoder(endpoints, config: DecoderConfig, name: str):
    # aspp_use_only_1x1_proj_conv: the ASPP reduces to its 1x1 projection (model/decoder/aspp.py).
    x = conv_bn(endpoints[config.feature_key], config.aspp_channels, 1, name=f"{name}_aspp_proj_conv")
    for index, (key, channels) in enumerate(config.low_level, 1):
        low = conv_bn(endpoints[key], channels, 1, name=f"{name}_low_level_conv{index}")
        x = resize_like(x, low, name=f"{name}_upsample{index}")
        x = layers.Concatenate(name=f"{name}_concat{index}")([x, low])
        x = separable_conv_bn(x, config.decoder_channels, 5, name=f"{name}_fusion_conv{index}_conv1")
    return x


def single_head(x, hidden: int, outputs: int, name: str, last_layer: str):
    """5x5 separable conv + BN + ReLU, then the 1x1 prediction conv with bias.  Named after
    deeplab2's checkpoint items (common.py): `<head>_without_last_layer` and the last layer's
    own item (`semantic_last_layer`, `instance_center_head_last_layer`, ...)."""
    x = separable_conv_bn(x, hidden, 5, name=f"{name}_without_last_layer_conv1")
    return layers.Conv2D(outputs, 1, name=last_layer)(x)


@dataclass(frozen=True)
class Deeplab2PanopticSpec:
    """deeplab2's DeepLab model with the Panoptic-DeepLab meta-architecture, as trained for the
    Cityscapes model zoo.  Outputs at output stride 4, as the suite's other panoptic models:
    semantic logits, center heatmap and offsets (dy, dx) in output-stride-4 pixels; upsampling
    to the input (training.losses.upsample_outputs) rescales the offsets as deeplab2's
    resize_and_rescale_offsets does."""

    encoder: Deeplab2EncoderSpec
    num_classes: int = 19
    semantic: DecoderConfig = SEMANTIC_DECODER
    instance: DecoderConfig = INSTANCE_DECODER
    semantic_head_channels: int = 256
    instance_head_channels: int = 32

    @property
    def backbone(self) -> Deeplab2EncoderSpec:
        return self.encoder

    # deeplab2 checkpoint scopes present in a released checkpoint that the predictions do not
    # depend on (the decoders read res5, before MaX-DeepLab-L's stacked decoder).
    @property
    def unused_checkpoint_scopes(self) -> tuple[str, ...]:
        return ("encoder/_decoder_stage",) if self.encoder.backbone_decoder_num_stacks else ()

    def build(self, input_size, name: str = "deeplab2_panoptic_deeplab") -> keras.Model:
        inputs = keras.Input(shape=(*input_size, 3), name="image")
        encoder = dataclasses.replace(self.encoder, backbone_decoder_num_stacks=0)
        endpoints = encoder.endpoints(inputs)
        semantic = single_decoder(endpoints, self.semantic, "semantic_decoder")
        instance = single_decoder(endpoints, self.instance, "instance_decoder")
        outputs = {
            "semantic": single_head(semantic, self.semantic_head_channels, self.num_classes, "semantic_head",
                                    "semantic_last_layer"),
            "center": single_head(instance, self.instance_head_channels, 1, "instance_center_head",
                                  "instance_center_head_last_layer"),
            "offset": single_head(instance, self.instance_head_channels, 2, "instance_regression_head",
                                  "instance_regression_head_last_layer"),
        }
        return keras.Model(inputs, outputs, name=name)

    def with_overrides(self, num_classes: int | None = None, **encoder_changes) -> "Deeplab2PanopticSpec":
        spec = dataclasses.replace(self, encoder=self.encoder.with_overrides(**encoder_changes))
        return spec if num_classes is None else dataclasses.replace(spec, num_classes=num_classes)


# --- deeplab2's named instances (model/encoder/axial_resnet_instances.py) ----------------------

RESNET50 = Deeplab2EncoderSpec("resnet")
RESNET50_BETA = Deeplab2EncoderSpec("resnet_beta")
AXIAL_RESNET_L = Deeplab2EncoderSpec("resnet", use_axial_beyond_stride=2)
AXIAL_RESNET_S = dataclasses.replace(AXIAL_RESNET_L, width_multiplier=0.5)
AXIAL_DEEPLAB_L = Deeplab2EncoderSpec("resnet_beta", use_axial_beyond_stride=2)
AXIAL_DEEPLAB_S = dataclasses.replace(AXIAL_DEEPLAB_L, width_multiplier=0.5)
MAX_DEEPLAB_S_BACKBONE = Deeplab2EncoderSpec("resnet_beta", use_axial_beyond_stride=16)
MAX_DEEPLAB_L_BACKBONE = Deeplab2EncoderSpec(
    "wider_resnet", num_blocks=(3, 6, 3, 3), use_axial_beyond_stride=16, attention_bottleneck_expansion=4,
    key_expansion=2, value_expansion=4, backbone_decoder_num_stacks=1)
SWIDERNET = Deeplab2EncoderSpec("wider_resnet", num_blocks=(3, 6, 3, 3))
AXIAL_SWIDERNET = dataclasses.replace(SWIDERNET, use_axial_beyond_stride=16, attention_bottleneck_expansion=4,
                                      key_expansion=2, value_expansion=4)
