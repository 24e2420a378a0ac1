"""The variables deeplab2 saves for a model, as {checkpoint key: shape}, and a writer of
checkpoints with those keys: test material for models/checkpoints.py.

The names are read from deeplab2's source (commit 64bc1c1a), independently of the Keras models'
layer names: `tf.train.Checkpoint(encoder=..., **PanopticDeepLab.checkpoint_items)` tracks Keras
layers by attribute name (model/encoder/axial_resnet.py, model/layers/axial_blocks.py,
axial_layers.py, convolutions.py, stems.py, resized_fuse.py, model/decoder/panoptic_deeplab.py,
aspp.py; checkpoint item names in common.py).  tests/test_deeplab2.py checks the encoder part
against the variable list deeplab2 itself wrote (tests/fixtures/deeplab2/).  Block types and
widths come from models/deeplab2.py's planner, which the pinned parameter counts check.
"""

from __future__ import annotations

import numpy as np

from models.deeplab2 import (GROUP_INPUT_STRIDES, HIGH_RESOLUTION_OUTPUT_STRIDE, Deeplab2EncoderSpec,
                             Deeplab2PanopticSpec, plan_block_group)
from models.layers import MAX_SPAN

VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"
BN = ("gamma", "beta", "moving_mean", "moving_variance")


def _conv(out: dict, scope: str, kernel: int, cin: int, cout: int, bn: bool = True):
    """Conv2DSame: <scope>/_conv/kernel and <scope>/_batch_norm/*."""
    out[f"{scope}/_conv/kernel"] = (kernel, kernel, cin, cout)
    if bn:
        out.update({f"{scope}/_batch_norm/{v}": (cout,) for v in BN})


def _separable(out: dict, scope: str, kernel: int, cin: int, cout: int):
    """SeparableConv2DSame with BN: <scope>/_depthwise/{_depthwise_conv,_batch_norm}, <scope>/_pointwise."""
    out[f"{scope}/_depthwise/_depthwise_conv/depthwise_kernel"] = (kernel, kernel, cin, 1)
    out.update({f"{scope}/_depthwise/_batch_norm/{v}": (cin,) for v in BN})
    _conv(out, f"{scope}/_pointwise", 1, cin, cout)


def _axial_layer(out: dict, scope: str, cin: int, key: int, value: int, heads: int):
    out[f"{scope}/qkv_kernel"] = (cin, 2 * key + value)
    out.update({f"{scope}/_batch_norm_qkv/{v}": (2 * key + value,) for v in BN})
    out.update({f"{scope}/_batch_norm_similarity/{v}": (3, 1, heads, 1, 1) for v in BN})
    out.update({f"{scope}/_batch_norm_retrieved_output/{v}": (2, 1, heads, 1, value // heads) for v in BN})
    rows = 2 * MAX_SPAN - 1
    out[f"{scope}/_query_rpe/embeddings"] = (rows, key // heads)
    out[f"{scope}/_key_rpe/embeddings"] = (rows, key // heads)
    out[f"{scope}/_value_rpe/embeddings"] = (rows, value // heads)


def _block(out: dict, scope: str, plan, cin: int, spec: Deeplab2EncoderSpec) -> int:
    f = plan.filters
    if cin != f[-1]:
        _conv(out, f"{scope}/_shortcut", 1, cin, f[-1])
    if plan.kind == "basic":
        _conv(out, f"{scope}/_conv1_bn_act", 3, cin, f[0])
        _conv(out, f"{scope}/_conv2_bn", 3, f[0], f[1])
        return f[-1]
    _conv(out, f"{scope}/_conv1_bn_act", 1, cin, f[0])
    if plan.kind == "axial":
        key, value = int(round(f[1] * spec.key_expansion)), int(round(f[1] * spec.value_expansion))
        _axial_layer(out, f"{scope}/_attention/_height_axis", f[0], key, value, spec.num_heads)
        _axial_layer(out, f"{scope}/_attention/_width_axis", value, key, value, spec.num_heads)
        _conv(out, f"{scope}/_conv3_bn", 1, value, f[2])
    else:
        _conv(out, f"{scope}/_conv2_bn_act", 3, f[0], f[1])
        _conv(out, f"{scope}/_conv3_bn", 1, f[1], f[2])
    return f[-1]


def encoder_variables(spec: Deeplab2EncoderSpec) -> tuple[dict, dict]:
    """({key: shape} of the encoder, {endpoint: channels})."""
    out: dict = {}
    swm = spec.stem_width_multiplier
    if spec.backbone_type == "resnet_beta":
        c1, c3 = int(64 * swm), int(128 * swm)
        _conv(out, "encoder/_stem/_conv1_bn_act", 3, 3, c1)
        _conv(out, "encoder/_stem/_conv2_bn_act", 3, c1, c1)
        _conv(out, "encoder/_stem/_conv3_bn", 3, c1, c3)
        channels = c3
    else:
        channels = int(round(64 * swm))
        _conv(out, "encoder/_stem", 7 if spec.backbone_type == "resnet" else 3, 3, channels)
    endpoints = {"res1": channels}
    wide = spec.backbone_type == "wider_resnet"
    blocks = spec.group_blocks()
    for index in range(0 if wide else 1, 5):
        input_stride, group_stride = (2, 1) if wide and index == 0 else (GROUP_INPUT_STRIDES[index], 2)
        plans = plan_block_group(spec.group_filters(index), blocks[index], group_stride, input_stride, spec)
        for b, plan in enumerate(plans, 1):
            channels = _block(out, f"encoder/_stage{index + 1}/_block{b}", plan, channels, spec)
        endpoints[f"res{index + 1}"] = channels
    if spec.backbone_decoder_num_stacks:
        _stacked_decoder(out, spec, endpoints)
    return out, endpoints


def _stacked_decoder(out: dict, spec: Deeplab2EncoderSpec, endpoints: dict):
    """AxialResNet.build's ResizedFuse layers and __init__'s decoder block groups
    (`_decoder_stage<d>_resized_fuse`, `_decoder_stage<d>`), for the backbone's stacks."""
    os_ = spec.output_stride
    features = {min(s, os_): [(endpoints[f"res{k}"], min(s, os_))] for k, s in enumerate((2, 4, 8, 16), 1)}
    features[os_] = [(endpoints["res5"], os_)]
    current = (endpoints["res5"], os_)
    stride, down, stacks, stage = os_, True, 0, 0
    while stacks < spec.backbone_decoder_num_stacks:
        stage += 1
        stride = stride // 2 if down else stride * 2
        resnet_stride = 32 if stride == os_ else stride
        channels = int(round(resnet_stride * 64 * spec.width_multiplier))
        for i, (cin, feature_stride) in enumerate([current] + features[stride][-2:], 1):
            if cin == channels:
                continue
            kind = "strided" if feature_stride * 2 == stride else "resized"
            _conv(out, f"encoder/_decoder_stage{stage}_resized_fuse/_{kind}_conv_bn{i}", 1, cin, channels)
        plan, = plan_block_group(channels // 4, 1, 1, resnet_stride, spec)
        _block(out, f"encoder/_decoder_stage{stage}/_block1", plan, channels, spec)
        current = (plan.filters[-1], stride)
        features[stride].append(current)
        if stride == os_:
            stacks, down = stacks + 1, True
        if stride == HIGH_RESOLUTION_OUTPUT_STRIDE:
            down = False


def panoptic_variables(spec: Deeplab2PanopticSpec) -> dict:
    """The encoder's and the checkpoint items of PanopticDeepLab (decoders and heads)."""
    out, channels = encoder_variables(spec.encoder)
    for name, config in (("semantic_decoder", spec.semantic), ("instance_decoder", spec.instance)):
        _conv(out, f"{name}/_aspp/_proj_conv_bn_act", 1, channels[config.feature_key], config.aspp_channels)
        current = config.aspp_channels
        for i, (key, project) in enumerate(config.low_level, 1):
            _conv(out, f"{name}/_low_level_conv{i}", 1, channels[key], project)
            _separable(out, f"{name}/_fusion_conv{i}/_conv1_bn_act", 5, current + project, config.decoder_channels)
            current = config.decoder_channels
    heads = (("semantic_head", "semantic_last_layer", spec.semantic.decoder_channels, spec.semantic_head_channels,
              spec.num_classes),
             ("instance_center_head", "instance_center_head_last_layer", spec.instance.decoder_channels,
              spec.instance_head_channels, 1),
             ("instance_regression_head", "instance_regression_head_last_layer", spec.instance.decoder_channels,
              spec.instance_head_channels, 2))
    for head, last, cin, hidden, outputs in heads:
        _separable(out, f"{head}_without_last_layer/_conv1_bn_act", 5, cin, hidden)
        out[f"{last}/kernel"] = (1, 1, hidden, outputs)
        out[f"{last}/bias"] = (outputs,)
    return out


def variables_of(model_spec) -> dict:
    if isinstance(model_spec, Deeplab2PanopticSpec):
        return panoptic_variables(model_spec)
    return encoder_variables(model_spec)[0]


def random_values(shapes: dict, seed: int = 0) -> dict:
    """Random values of those shapes, BN statistics kept well conditioned (variance in [1, 2])."""
    rng = np.random.default_rng(seed)
    values = {}
    for name, shape in shapes.items():
        if name.endswith("moving_variance"):
            values[name] = rng.uniform(1.0, 2.0, shape)
        elif name.endswith("gamma"):
            values[name] = rng.uniform(0.5, 1.0, shape)
        else:
            fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 10
            values[name] = rng.normal(0.0, 1.0 / np.sqrt(max(fan_in, 1)), shape)
    return {k: v.astype(np.float32) for k, v in values.items()}


def write_checkpoint(prefix, values: dict, extra_training_state: bool = True) -> str:
    """A TF checkpoint whose variables have exactly these keys (a tree of tracked objects),
    plus, if asked, training state a trainer saves (global step, optimizer slots)."""
    import tensorflow as tf

    root = {}
    for name, value in values.items():
        node = root
        *scopes, leaf = name.split("/")
        for scope in scopes:
            node = node.setdefault(scope, {})
        node[leaf] = tf.Variable(value)

    def build(tree):
        module = tf.Module()
        for key, child in tree.items():
            setattr(module, key, build(child) if isinstance(child, dict) else child)
        return module

    children = {key: build(child) if isinstance(child, dict) else child for key, child in root.items()}
    if extra_training_state:
        children["global_step"] = tf.Variable(60000, dtype=tf.int64)
        optimizer = tf.Module()
        optimizer.iter = tf.Variable(60000, dtype=tf.int64)
        children["optimizer"] = optimizer
    return tf.train.Checkpoint(**children).write(str(prefix))
