"""Released checkpoints into the suite's Keras models: deeplab2's TF2 checkpoints, and the
first author's PyTorch Axial-ResNets.

    python -m models.checkpoints deeplab2 CKPT --preset NAME --output OUT.weights.h5
        [--width W --stem-width W --blocks N,N,N,N --output-stride S --num-classes C]
        [--check-input X.npy --check-outputs Y.npz [--tolerance 1e-4]]
    python -m models.checkpoints axial-deeplab-pytorch FILE.npz|FILE.pth --preset pytorch-axial50s
        --output OUT.weights.h5 [--width S --blocks N,N,N,N --num-classes C] [--check-...]

The PyTorch rules are beside their code below (`PYTORCH_MODULES`); torch is needed only to read
a .pth file, and its absence is a one-line message.  What follows is about deeplab2.

CKPT is a checkpoint prefix (`.../ckpt-60000`) or a folder holding one.  It is read with
`tf.train.load_checkpoint`; no deeplab2 code is needed.  Every model variable of the checkpoint
is mapped to one Keras variable of the preset's model, and the conversion refuses, with one
line naming it, any variable it cannot place, any Keras variable left without a value, and any
shape that differs.  Training state is not model state and is passed over: the optimizer and
its slots, `global_step`, `save_counter`, the object graph.  The Keras weights, and beside them
OUT.json (preset, overrides, source checkpoint, check results), are written atomically: on any
failure nothing is written.  `presets.get(NAME).variant(**overrides).build().load_weights(OUT)`
loads them on either backend (`presets.build(NAME)` when there are no overrides).

The overrides are deeplab2's get_model arguments: the test fixture of ../shared/oracles/deeplab2
is `--preset deeplab2-axial-resnet-s --width 0.25 --stem-width 0.25 --blocks 1,1,1,1`.

With --check-input/--check-outputs the converted model runs on X (inference mode) and every
array of Y whose key names an endpoint as deeplab2 does (stage1..stage5, res1..res5,
backbone_output; or the panoptic outputs semantic, center, offset) is compared with the
model's; the largest absolute difference of each is printed.  Exit 0 when all are within the
tolerance, 1 when one is not or is not a number (NaN or inf in the model's outputs; then nothing
is written), 2 on bad input (a missing or unreadable file, NaN or inf in X or Y, a checkpoint of
another model, an unknown preset, an override out of range, a --tolerance that is not a finite
number >= 0, an --output that is a folder or cannot be written), always with one line.  The
arguments, the output path and the check files are checked before TensorFlow or JAX loads.

The mapping (`deeplab2_rules`): a deeplab2 variable `<scope>/<attribute path>` goes to the
Keras layer `keras_scope(<scope>)` (models/deeplab2.py names its layers that way) and:

    <scope>/_conv/kernel                          -> <layer>/kernel
    <scope>/_depthwise_conv/depthwise_kernel      -> <layer>/kernel            (DepthwiseConv2D)
    <scope>/_batch_norm/<gamma|beta|moving_*>     -> <layer>_bn/<same>
    <..._last_layer>/<kernel|bias>                -> <layer>/<same>            (the heads' 1x1 convs)
    <scope>/qkv_kernel                            -> <layer>/qkv_kernel        (axial attention)
    <scope>/_batch_norm_qkv/<v>                   -> <layer>/qkv_norm/<v>
    <scope>/_<query|key|value>_rpe/embeddings     -> <layer>/<same>_position_table/embeddings
    <scope>/_batch_norm_similarity/<v>            -> <layer>/similarity_norm/<v>   reshaped
    <scope>/_batch_norm_retrieved_output/<v>      -> <layer>/output_norm/<v>       reshaped

deeplab2 keeps one BN parameter per (similarity term, head) as [3, 1, heads, 1, 1] and per
(retrieved term, head, channel) as [2, 1, heads, 1, depth]; models/layers' attention keeps
them flat, term fastest: (head, term) and (head, channel, term).  Tables (2 * 255 - 1 rows,
row = key - query + 254), the qkv kernel and its order (q, k, v, each head-major) are the same
in both.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.cli import OneLineParser, UsageError

VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
BN_VARIABLES = "gamma|beta|moving_mean|moving_variance"
DEFAULT_TOLERANCE = 1e-4


class ConversionError(Exception):
    """Bad input for a conversion: the message is the one line printed."""


# --- deeplab2 names -> Keras names ------------------------------------------------------------

def keras_scope(deeplab2_scope: str) -> str:
    """The Keras layer name of a deeplab2 object path (see models/deeplab2.py): components
    without their leading underscore and without deeplab2's `_bn_act` / `_bn` / `_act`
    suffixes (which only say that a BN or an activation follows), joined by "_"; the
    encoder's own name is dropped.  `encoder/_stage2/_block1/_conv1_bn_act` -> stage2_block1_conv1."""
    parts = deeplab2_scope.split("/")
    if parts[0] == "encoder":
        parts = parts[1:]
    names = []
    for part in parts:
        part = part[1:] if part.startswith("_") else part
        for suffix in ("_bn_act", "_bn", "_act"):
            if part.endswith(suffix):
                part = part[: -len(suffix)]
                break
        names.append(part)
    return "_".join(names)


class Flatten:
    """deeplab2's attention BN parameters, [terms, 1, heads, 1, depth], as the flat vector of
    models/layers' attention BN: index (head, channel) major, term fastest."""

    def shape(self, source_shape) -> tuple[int, ...]:
        return (int(np.prod(source_shape)),)

    def __call__(self, value: np.ndarray) -> np.ndarray:
        terms = value.shape[0]
        return np.ascontiguousarray(value.reshape(terms, -1).T).reshape(-1)


@dataclass(frozen=True)
class Rule:
    pattern: str          # regular expression on the variable name (without VALUE_SUFFIX)
    target: str           # Keras variable path; {layer} = keras_scope(scope), other groups as named
    transform: object = None

    def match(self, name: str):
        found = re.fullmatch(self.pattern, name)
        if not found:
            return None
        groups = found.groupdict()
        path = self.target.format(layer=keras_scope(groups.pop("scope")), **groups)
        return path, self.transform


def deeplab2_rules() -> tuple[Rule, ...]:
    return (
        Rule(r"(?P<scope>.+)/_conv/kernel", "{layer}/kernel"),
        Rule(r"(?P<scope>.+)/_depthwise_conv/depthwise_kernel", "{layer}/kernel"),
        Rule(rf"(?P<scope>.+)/_batch_norm/(?P<var>{BN_VARIABLES})", "{layer}_bn/{var}"),
        Rule(r"(?P<scope>[a-z_]+_last_layer)/(?P<var>kernel|bias)", "{layer}/{var}"),
        Rule(r"(?P<scope>.+)/qkv_kernel", "{layer}/qkv_kernel"),
        Rule(rf"(?P<scope>.+)/_batch_norm_qkv/(?P<var>{BN_VARIABLES})", "{layer}/qkv_norm/{var}"),
        Rule(r"(?P<scope>.+)/_(?P<which>query|key|value)_rpe/embeddings", "{layer}/{which}_position_table/embeddings"),
        Rule(rf"(?P<scope>.+)/_batch_norm_similarity/(?P<var>{BN_VARIABLES})", "{layer}/similarity_norm/{var}",
             Flatten()),
        Rule(rf"(?P<scope>.+)/_batch_norm_retrieved_output/(?P<var>{BN_VARIABLES})", "{layer}/output_norm/{var}",
             Flatten()),
    )


def is_training_state(key: str) -> bool:
    """Checkpoint entries that are training state, not model state."""
    return (key == "_CHECKPOINTABLE_OBJECT_GRAPH" or "/.OPTIMIZER_SLOT/" in key
            or key.split("/", 1)[0] in ("optimizer", "backbone_optimizer", "global_step", "save_counter"))


def keras_path(name: str) -> tuple[str, object]:
    for rule in deeplab2_rules():
        found = rule.match(name)
        if found:
            return found
    raise ConversionError(f"unused checkpoint variable {name}: no mapping rule places it in a Keras model")


# --- reading and converting ------------------------------------------------------------------

def open_deeplab2_checkpoint(path: str | Path):
    """A CheckpointReader for a checkpoint prefix or a folder holding checkpoints."""
    import tensorflow as tf

    path = Path(path)
    if path.is_dir():
        latest = tf.train.latest_checkpoint(str(path))
        if latest is None:
            raise ConversionError(f"no TensorFlow checkpoint in folder {path}")
        path = Path(latest)
    if not Path(f"{path}.index").exists():
        raise ConversionError(f"checkpoint not found: {path} (expected {path}.index and its data files)")
    try:
        return tf.train.load_checkpoint(str(path))
    except (tf.errors.OpError, ValueError) as error:
        raise ConversionError(f"cannot read checkpoint {path} (corrupt or truncated: "
                              f"{_first_line(error)})") from None


def _build(preset, input_size):
    """The preset's model; ConversionError when its overrides make it unbuildable (a width so
    small that a layer gets no channels)."""
    try:
        return preset.build(tuple(input_size) if input_size else None)
    except (ValueError, OverflowError) as error:
        raise ConversionError(f"{preset.name} cannot be built with these overrides: {_first_line(error)}") from None


def _first_line(error) -> str:
    text = str(getattr(error, "message", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@dataclass
class Conversion:
    model: object
    assigned: int = 0
    skipped_training_state: int = 0
    skipped_unused: list[str] = field(default_factory=list)


def match_variables(checkpoint_shapes: dict, model, preset) -> tuple[dict, Conversion]:
    """{Keras variable path: (checkpoint key, transform)} for every variable of `model`, from
    the checkpoint's {key: shape}; ConversionError on the first variable that cannot be placed,
    shape that differs, or Keras variable left without a value.  Shapes only: nothing is read."""
    targets = {variable.path: variable for variable in model.weights}
    unused_scopes = getattr(preset.model, "unused_checkpoint_scopes", ())
    conversion = Conversion(model)
    plan = {}
    for key in sorted(checkpoint_shapes):
        if is_training_state(key):
            conversion.skipped_training_state += 1
            continue
        name = key[: -len(VALUE_SUFFIX)] if key.endswith(VALUE_SUFFIX) else key
        if any(name.startswith(scope) for scope in unused_scopes):
            conversion.skipped_unused.append(name)
            continue
        path, transform = keras_path(name)
        target = targets.get(path)
        if target is None:
            raise ConversionError(f"unused checkpoint variable {name}: {preset.name} has no Keras variable "
                                  f"{path} (a checkpoint of another model?)")
        if path in plan:
            raise ConversionError(f"checkpoint variables {plan[path][0]} and {name} both map to {path}")
        shape = tuple(int(n) for n in checkpoint_shapes[key])
        converted = transform.shape(shape) if transform is not None else shape
        if converted != tuple(target.shape):
            raise ConversionError(f"shape mismatch: checkpoint {name} is {list(shape)} but {preset.name}'s "
                                  f"{path} is {list(target.shape)} (a checkpoint of another model?)")
        plan[path] = (key, transform)
    missing = [path for path in targets if path not in plan]
    if missing:
        raise ConversionError(f"missing: the checkpoint has no variable for {preset.name}'s {missing[0]} "
                              f"({len(missing)} of {len(targets)} Keras variables without a value; "
                              "a checkpoint of another model?)")
    conversion.assigned = len(plan)
    return plan, conversion


def load_deeplab2(checkpoint, preset, input_size=None) -> Conversion:
    """Builds `preset` (a presets.Preset, overrides applied) at `input_size` (default: the
    preset's) and fills every variable from the deeplab2 checkpoint; ConversionError on the
    first problem, before any value is read when the names or shapes do not fit."""
    import tensorflow as tf

    reader = open_deeplab2_checkpoint(checkpoint)
    model = _build(preset, input_size)
    plan, conversion = match_variables(reader.get_variable_to_shape_map(), model, preset)
    targets = {variable.path: variable for variable in model.weights}
    for path, (key, transform) in plan.items():
        try:
            value = np.asarray(reader.get_tensor(key))
        except (tf.errors.OpError, ValueError, IndexError) as error:  # IndexError: data file cut short
            raise ConversionError(f"cannot read {key} from {checkpoint} (corrupt or truncated: "
                                  f"{_first_line(error)})") from None
        targets[path].assign((transform(value) if transform is not None else value).astype(targets[path].dtype))
    return conversion


# --- the first author's PyTorch checkpoints (csrhddlam/axial-deeplab) --------------------------
# models/axial_pytorch.py names its layers after the PyTorch modules; these are the rules:
#   conv1 / bn1                            -> stem_conv / stem_conv_bn
#   layer<l>.<b>.conv_down / bn1           -> stage<l>_block<b+1>_conv_down / _conv_down_bn
#   layer<l>.<b>.hight_block / width_block -> stage<l>_block<b+1>_height / _width  (axial layers)
#   layer<l>.<b>.conv_up / bn2             -> stage<l>_block<b+1>_conv_up / _conv_up_bn
#   layer<l>.<b>.downsample.0 / .1         -> stage<l>_block<b+1>_downsample / _downsample_bn
#   fc                                     -> fc
# Convolution weights (out, in, kh, kw) become (kh, kw, in, out); fc's (out, in) becomes (in, out).
# BN: weight, bias, running_mean, running_var -> gamma, beta, moving_mean, moving_variance, the
# epsilon (PyTorch 1e-5, Keras 1e-3) folded into gamma; num_batches_tracked is training state.
# Axial layers (axialnet.py's AxialAttention): its qkv channels are interleaved per head
# ([q | k | v] of each head in turn), models/layers' are [all q | all k | all v]; its similarity
# BN channel is term * heads + head, models/layers' head * 3 + term; its output BN has the same
# order (channel, term).  Its `relative` table [2 * depth per head, 2K - 1] stacks the q, k and v
# tables over an axis of length K; its q and v terms index a column by query - key + K - 1, its k
# term by key - query + K - 1; models/layers' tables index a row by key - query + 254, so each
# column lands on one row, and the rows for offsets beyond K - 1 (never used at 224 x 224) are 0.
# `flatten_index` is derived from K: checked, not loaded.

PYTORCH_MODULES = (
    (r"conv1", "conv", "stem_conv"),
    (r"bn1", "bn", "stem_conv_bn"),
    (r"layer(?P<l>\d+)\.(?P<b>\d+)\.conv_down", "conv", "{block}_conv_down"),
    (r"layer(?P<l>\d+)\.(?P<b>\d+)\.bn1", "bn", "{block}_conv_down_bn"),
    (r"layer(?P<l>\d+)\.(?P<b>\d+)\.hight_block", "attention", "{block}_height"),
    (r"layer(?P<l>\d+)\.(?P<b>\d+)\.width_block", "attention", "{block}_width"),
    (r"layer(?P<l>\d+)\.(?P<b>\d+)\.conv_up", "conv", "{block}_conv_up"),
    (r"layer(?P<l>\d+)\.(?P<b>\d+)\.bn2", "bn", "{block}_conv_up_bn"),
    (r"layer(?P<l>\d+)\.(?P<b>\d+)\.downsample\.0", "conv", "{block}_downsample"),
    (r"layer(?P<l>\d+)\.(?P<b>\d+)\.downsample\.1", "bn", "{block}_downsample_bn"),
    (r"fc", "dense", "fc"),
)
KERAS_BN_EPSILON = 1e-3
PYTORCH_BN_EPSILON = 1e-5


def read_pytorch_state_dict(path) -> dict[str, np.ndarray]:
    """A state_dict as numpy arrays, from a .npz (numpy.savez of the state_dict: no PyTorch
    needed) or a PyTorch file (.pth/.pt/.tar, torch.load; a {'state_dict': ...} training
    checkpoint too).  DataParallel's `module.` prefix is dropped."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"checkpoint not found: {path}")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                state = {key: np.asarray(archive[key]) for key in archive.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
            raise ConversionError(f"cannot read {path} as .npz (corrupt or truncated: {_first_line(error)})") from None
    else:
        try:
            import torch
        except ImportError:
            raise ConversionError(f"reading {path.name} needs PyTorch, an optional dependency (pip install torch); "
                                  "without it, save the state_dict as .npz: numpy.savez(OUT, **{k: v.numpy() for "
                                  "k, v in state_dict.items()})") from None
        try:
            loaded = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises many types for a file that is not its format
            raise ConversionError(f"cannot read {path} as a PyTorch checkpoint ({_first_line(error)})") from None
        if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
            loaded = loaded["state_dict"]
        if not isinstance(loaded, dict):
            raise ConversionError(f"{path} holds no state_dict")
        state = {key: value.detach().cpu().numpy() for key, value in loaded.items() if hasattr(value, "detach")}
    return {(key[len("module."):] if key.startswith("module.") else key): value for key, value in state.items()}


def _pytorch_modules(state: dict) -> dict[tuple[str, str, str], dict[str, np.ndarray]]:
    """{(kind, Keras layer, PyTorch module): {parameter: array}}; ConversionError for a key no
    rule places."""
    modules: dict = {}
    for key in sorted(state):
        for pattern, kind, layer in PYTORCH_MODULES:
            found = re.fullmatch(rf"(?P<module>{pattern})\.(?P<param>.+)", key)
            if found:
                groups = found.groupdict()
                block = f"stage{groups['l']}_block{int(groups['b']) + 1}" if groups.get("l") else ""
                modules.setdefault((kind, layer.format(block=block), groups["module"]), {})[groups["param"]] = state[key]
                break
        else:
            raise ConversionError(f"unused checkpoint variable {key}: no mapping rule places it in a Keras model")
    return modules


def _take(params: dict, module: str, names) -> list[np.ndarray]:
    missing = [n for n in names if n not in params]
    if missing:
        raise ConversionError(f"missing: the checkpoint has no {module}.{missing[0]}")
    return [params.pop(n) for n in names]


def _pytorch_bn(params: dict, module: str) -> tuple[np.ndarray, ...]:
    gamma, beta, mean, var = _take(params, module, ("weight", "bias", "running_mean", "running_var"))
    params.pop("num_batches_tracked", None)  # training state
    gamma = gamma * np.sqrt((var + KERAS_BN_EPSILON) / (var + PYTORCH_BN_EPSILON))
    return gamma, beta, mean, var


def _bn_values(layer_path: str, bn, order=None) -> dict:
    names = ("gamma", "beta", "moving_mean", "moving_variance")
    return {f"{layer_path}/{n}": (v if order is None else v[order]) for n, v in zip(names, bn)}


def _pytorch_attention(params: dict, module: str, layer: str, heads: int, rows: int) -> dict:
    (qkv,) = _take(params, module, ("qkv_transform.weight",))
    width = qkv.shape[0] // 2
    if qkv.ndim != 3 or width % heads or (width // heads) % 2:
        raise ConversionError(f"shape mismatch: {module}.qkv_transform.weight is {list(qkv.shape)}, not "
                              f"[2 x width, in, 1] with width divisible into {heads} heads")
    per_head, key_depth = width // heads, width // heads // 2
    head_base = np.arange(heads)[:, None] * 2 * per_head
    order = np.concatenate([(head_base + np.arange(key_depth)).ravel(),               # q of every head
                            (head_base + key_depth + np.arange(key_depth)).ravel(),   # k
                            (head_base + per_head + np.arange(per_head)).ravel()])    # v
    values = {f"{layer}/qkv_kernel": qkv[:, :, 0].T[:, order]}
    values.update(_bn_values(f"{layer}/qkv_norm", _pytorch_bn(_sub(params, "bn_qkv"), f"{module}.bn_qkv"), order))
    similarity = (np.arange(3)[None, :] * heads + np.arange(heads)[:, None]).ravel()  # (head, term) order
    values.update(_bn_values(f"{layer}/similarity_norm",
                             _pytorch_bn(_sub(params, "bn_similarity"), f"{module}.bn_similarity"), similarity))
    values.update(_bn_values(f"{layer}/output_norm", _pytorch_bn(_sub(params, "bn_output"), f"{module}.bn_output")))
    (relative,) = _take(params, module, ("relative",))
    length = (relative.shape[1] + 1) // 2
    if relative.shape[0] != 2 * per_head or relative.shape[1] != 2 * length - 1 or length > (rows + 1) // 2:
        raise ConversionError(f"shape mismatch: {module}.relative is {list(relative.shape)}")
    (flatten_index,) = _take(params, module, ("flatten_index",))
    expected_index = (np.arange(length)[:, None] - np.arange(length)[None, :] + length - 1).ravel()
    if not np.array_equal(np.asarray(flatten_index).ravel(), expected_index):
        raise ConversionError(f"{module}.flatten_index is not the relative index of an axis of {length}")
    offsets = np.arange(-(length - 1), length)  # key - query
    centre = (rows - 1) // 2
    for name, table, column in (("query", relative[:key_depth], length - 1 - offsets),
                                ("key", relative[key_depth:per_head], length - 1 + offsets),
                                ("value", relative[per_head:], length - 1 - offsets)):
        full = np.zeros((rows, table.shape[0]), table.dtype)
        full[centre + offsets] = table[:, column].T
        values[f"{layer}/{name}_position_table/embeddings"] = full
    return values


def _sub(params: dict, prefix: str) -> dict:
    """The parameters of a child module, removed from `params`."""
    keys = [k for k in params if k.startswith(prefix + ".")]
    return {k[len(prefix) + 1:]: params.pop(k) for k in keys}


def load_axial_deeplab_pytorch(path, preset, input_size=None) -> Conversion:
    """Builds `preset` (a pytorch-... preset, overrides applied) and fills every variable from
    the PyTorch state_dict; ConversionError on the first problem."""
    from models.layers import MAX_SPAN

    state = read_pytorch_state_dict(path)
    model = _build(preset, input_size)
    targets = {variable.path: variable for variable in model.weights}
    values: dict = {}
    conversion = Conversion(model)
    conversion.skipped_training_state = sum(k.endswith("num_batches_tracked") for k in state)
    for (kind, layer, module), params in _pytorch_modules(state).items():
        if kind == "conv":
            (weight,) = _take(params, module, ("weight",))
            values[f"{layer}/kernel"] = weight.transpose(2, 3, 1, 0)
        elif kind == "bn":
            values.update(_bn_values(layer, _pytorch_bn(params, module)))
        elif kind == "dense":
            weight, bias = _take(params, module, ("weight", "bias"))
            values[f"{layer}/kernel"], values[f"{layer}/bias"] = weight.T, bias
        else:
            values.update(_pytorch_attention(params, module, layer, preset.model.num_heads, 2 * MAX_SPAN - 1))
        if params:
            raise ConversionError(f"unused checkpoint variable {module}.{sorted(params)[0]}: no mapping rule places it")
    for path, value in values.items():
        if path not in targets:
            raise ConversionError(f"unused checkpoint values for {path}: {preset.name} has no such Keras variable "
                                  "(a checkpoint of another model?)")
        if tuple(value.shape) != tuple(targets[path].shape):
            raise ConversionError(f"shape mismatch: the checkpoint gives {path} {list(value.shape)} but "
                                  f"{preset.name}'s is {list(targets[path].shape)} (a checkpoint of another model?)")
    missing = [path for path in targets if path not in values]
    if missing:
        raise ConversionError(f"missing: the checkpoint has no variable for {preset.name}'s {missing[0]} "
                              f"({len(missing)} of {len(targets)} Keras variables without a value; "
                              "a checkpoint of another model?)")
    for path, value in values.items():
        targets[path].assign(np.asarray(value).astype(targets[path].dtype))
    conversion.assigned = len(values)
    return conversion


# --- checking --------------------------------------------------------------------------------

ENDPOINTS = tuple(f"{kind}{k}" for k in range(1, 6) for kind in ("stage", "res")) + ("backbone_output",)


def endpoint_model(model):
    """The model with every endpoint it has as an output: its own outputs, and for a panoptic
    model the encoder's stage<k> (before activation) and res<k> (the ReLU layers named so)."""
    import keras

    outputs = dict(model.output) if isinstance(model.output, dict) else {"logits": model.output}
    names = {layer.name for layer in model.layers}
    for k in range(1, 6):
        if f"res{k}" in names and f"res{k}" not in outputs:
            layer = model.get_layer(f"res{k}")
            outputs[f"res{k}"], outputs[f"stage{k}"] = layer.output, layer.input
        if f"layer{k}" in names:  # the PyTorch Axial-ResNets' stage outputs
            outputs[f"layer{k}"] = model.get_layer(f"layer{k}").output
    return keras.Model(model.inputs, outputs, name=f"{model.name}_endpoints")


def compare_outputs(model, inputs: np.ndarray, expected: dict) -> dict[str, float]:
    """Largest absolute difference per key of `expected` that the model produces; a key it
    does not produce is bad input."""
    probe = endpoint_model(model)
    produced = set(probe.output)
    unknown = [key for key in expected if key not in produced]
    if unknown:
        raise ConversionError(f"the check outputs hold {unknown[0]!r}, which {model.name} does not produce "
                              f"(it has {', '.join(sorted(produced))})")
    if not expected:
        raise ConversionError("the check outputs hold no arrays")
    outputs = probe([inputs], training=False)
    diffs = {}
    for key, reference in expected.items():
        value = np.asarray(outputs[key], np.float64)
        if value.shape != reference.shape:
            raise ConversionError(f"check output {key!r} is {list(reference.shape)} but the model gives "
                                  f"{list(value.shape)} (another input size or output stride?)")
        diffs[key] = float(np.max(np.abs(value - reference)))
    return diffs


def _load_check_files(input_path, outputs_path) -> tuple[np.ndarray, dict]:
    try:
        inputs = np.load(input_path, allow_pickle=False)
    except FileNotFoundError:
        raise ConversionError(f"check input not found: {input_path}") from None
    except (ValueError, OSError, EOFError) as error:
        raise ConversionError(f"cannot read check input {input_path} as .npy ({_first_line(error)})") from None
    if inputs.ndim != 4 or inputs.shape[-1] != 3 or inputs.shape[0] == 0:
        raise ConversionError(f"check input {input_path} is {list(inputs.shape)}; expected [batch, height, width, 3] "
                              "with at least one image")
    inputs = _finite(inputs, np.float32, f"check input {input_path}")
    try:
        with np.load(outputs_path, allow_pickle=False) as archive:
            expected = {key: _finite(archive[key], np.float64, f"check outputs {outputs_path}, array {key!r},")
                        for key in archive.files}
    except FileNotFoundError:
        raise ConversionError(f"check outputs not found: {outputs_path}") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise ConversionError(f"cannot read check outputs {outputs_path} as .npz ({_first_line(error)})") from None
    return inputs, expected


def _finite(array, dtype, what: str) -> np.ndarray:
    """`array` as `dtype`; ConversionError when it is not real numbers or holds NaN or inf
    (after the cast: 1e300 is inf in float32): a difference with a NaN is NaN, which no
    tolerance can judge."""
    array = np.asarray(array)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool) or np.iscomplexobj(array):
        raise ConversionError(f"{what} holds {array.dtype} values, not real numbers")
    with np.errstate(over="ignore"):
        array = array.astype(dtype)
    bad = ~np.isfinite(array)
    if bad.any():
        first = [int(i) for i in np.argwhere(bad)[0]]
        raise ConversionError(f"{what} holds {int(bad.sum())} NaN or infinite value(s) (first at {first}, "
                              f"{array[tuple(first)]}); the check compares finite numbers")
    return array


# --- writing ---------------------------------------------------------------------------------

def sidecar_path(weights_path: str | Path) -> Path:
    weights_path = Path(weights_path)
    return weights_path.with_name(weights_path.name[: -len(".weights.h5")] + ".json")


def write_weights(model, output: Path, record: dict) -> None:
    """OUT.weights.h5 and OUT.json, both or neither: temporary files renamed at the end."""
    tmp_weights = output.with_name(f".{output.name[:-len('.weights.h5')]}.tmp{os.getpid()}.weights.h5")
    sidecar = sidecar_path(output)
    tmp_sidecar = sidecar.with_name(f".{sidecar.name}.tmp{os.getpid()}")
    try:
        model.save_weights(str(tmp_weights))
        tmp_sidecar.write_text(json.dumps(record, indent=1) + "\n")
        os.replace(tmp_weights, output)
        os.replace(tmp_sidecar, sidecar)
    except OSError as error:  # h5py's errors included; the output was checked, but the disk may fill
        raise ConversionError(f"cannot write {output}: {error.strerror or _first_line(error)}") from None
    finally:
        for path in (tmp_weights, tmp_sidecar):
            if path.exists():
                path.unlink()


def read_sidecar(weights_path) -> dict | None:
    path = sidecar_path(weights_path)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, OSError) as error:
        raise ConversionError(f"cannot read {path} ({_first_line(error)})") from None


# --- command line ----------------------------------------------------------------------------

def _number(text: str, low: float, low_included: bool, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or not (value >= low if low_included else value > low):
        raise argparse.ArgumentTypeError(f"{what} must be a finite number {'>=' if low_included else '>'} "
                                         f"{low:g}, got {text!r}")
    return value


def tolerance_argument(text: str) -> float:
    """--tolerance: a finite number >= 0 (NaN would pass every comparison, a negative one none)."""
    return _number(text, 0.0, True, "the tolerance")


def multiplier_argument(text: str) -> float:
    """--width, --stem-width: a finite number > 0."""
    return _number(text, 0.0, False, "a width multiplier")


def count_argument(text: str) -> int:
    """--num-classes: a positive integer."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_override_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--width", type=multiplier_argument, help="deeplab2's width_multiplier")
    parser.add_argument("--stem-width", type=multiplier_argument, help="deeplab2's stem_width_multiplier")
    parser.add_argument("--blocks", help="deeplab2's num_blocks, four comma-separated counts (e.g. 1,1,1,1)")
    parser.add_argument("--output-stride", type=int, choices=(8, 16, 32), help="deeplab2's output_stride")
    parser.add_argument("--num-classes", type=count_argument,
                        help="panoptic presets: semantic classes (19 on Cityscapes)")


def overrides_from(args) -> dict:
    overrides = {}
    if args.width is not None:
        overrides["width_multiplier"] = args.width
    if args.stem_width is not None:
        overrides["stem_width_multiplier"] = args.stem_width
    if args.blocks is not None:
        parts = args.blocks.split(",")
        if len(parts) != 4 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
            raise ConversionError(f"--blocks takes four positive comma-separated counts, got {args.blocks!r}")
        overrides["num_blocks"] = tuple(int(p) for p in parts)
    if args.output_stride is not None:
        overrides["output_stride"] = args.output_stride
    if args.num_classes is not None:
        overrides["num_classes"] = args.num_classes
    return overrides


FORMATS = {  # command-line format -> (preset origin, loader, what the presets are called)
    "deeplab2": ("deeplab2", "load_deeplab2", "deeplab2-..."),
    "axial-deeplab-pytorch": ("pytorch", "load_axial_deeplab_pytorch", "pytorch-..."),
}


def resolve_preset(name: str, overrides: dict, checkpoint_format: str = "deeplab2"):
    from models import presets

    try:
        preset = presets.get(name)
    except KeyError as error:
        raise ConversionError(error.args[0]) from None
    origin, _, family = FORMATS[checkpoint_format]
    if preset.origin != origin:
        raise ConversionError(f"{name} is not a {checkpoint_format}-layout preset; {checkpoint_format} checkpoints "
                              f"load into the {family} presets")
    if "num_classes" in overrides and not hasattr(preset.model, "num_classes"):
        raise ConversionError(f"--num-classes applies to models with a classifier; {name} is a backbone")
    try:
        return preset.variant(**overrides)
    except (ValueError, TypeError) as error:
        raise ConversionError(f"{name}: {_first_line(error)}") from None


@dataclass
class Checked:
    """What `check_arguments` found good, before any library loads."""
    overrides: dict
    output: Path
    check: tuple[np.ndarray, dict] | None


def check_output(output: Path) -> None:
    """--output: OUT.weights.h5 in an existing folder that takes files, neither it nor OUT.json a
    folder; a probe file (removed at once) finds a read-only folder before the conversion."""
    if not output.name.endswith(".weights.h5"):
        raise ConversionError(f"--output must end in .weights.h5 (Keras weights), got {output.name}")
    if not output.parent.is_dir():
        raise ConversionError(f"output folder not found: {output.parent}")
    for path in (output, sidecar_path(output)):
        if path.is_dir():
            raise ConversionError(f"--output: {path} is a folder; the converter writes a file there")
    try:
        with tempfile.TemporaryFile(dir=output.parent, prefix=".write-probe-"):
            pass
    except OSError as error:
        raise ConversionError(f"cannot write to the output folder {output.parent}: "
                              f"{error.strerror or _first_line(error)}") from None


def check_checkpoint_path(checkpoint: str, checkpoint_format: str) -> None:
    """The plain not-found cases, before the (slow) library load; the rest is the loaders'."""
    path = Path(checkpoint)
    if checkpoint_format == "deeplab2":
        if not path.is_dir() and not Path(f"{path}.index").exists():
            raise ConversionError(f"checkpoint not found: {path} (expected {path}.index and its data files)")
    elif not path.is_file():
        raise ConversionError(f"checkpoint not found: {path}")


def check_arguments(args) -> Checked:
    """Every check that needs no TensorFlow, JAX or Keras: overrides, output, checkpoint path,
    check files (finite numbers).  ConversionError on the first problem."""
    overrides = overrides_from(args)
    output = Path(args.output)
    check_output(output)
    if bool(args.check_input) != bool(args.check_outputs):
        raise ConversionError("--check-input and --check-outputs go together")
    check_checkpoint_path(args.checkpoint, args.format)
    check = _load_check_files(args.check_input, args.check_outputs) if args.check_input else None
    return Checked(overrides, output, check)


def convert_command(args, checked: Checked | None = None) -> int:
    checked = checked or check_arguments(args)
    overrides, output, check = checked.overrides, checked.output, checked.check
    preset = resolve_preset(args.preset, overrides, args.format)
    input_size = check[0].shape[1:3] if check else None

    conversion = globals()[FORMATS[args.format][1]](args.checkpoint, preset, input_size)
    print(f"{preset.name}: {conversion.assigned} variables from {args.checkpoint} "
          f"({conversion.skipped_training_state} entries of training state passed over)")
    if conversion.skipped_unused:
        print(f"  {len(conversion.skipped_unused)} checkpoint variables under "
              f"{', '.join(preset.model.unused_checkpoint_scopes)} not loaded: this model's outputs do not use "
              "them (deeplab2's decoders read res5, before MaX-DeepLab-L's stacked decoder)")
    record = {"preset": args.preset, "overrides": {k: list(v) if isinstance(v, tuple) else v
                                                   for k, v in overrides.items()},
              "source": {"format": args.format, "checkpoint": str(args.checkpoint)},
              "variables": conversion.assigned, "unused_checkpoint_variables": len(conversion.skipped_unused)}
    if check:
        diffs = compare_outputs(conversion.model, *check)
        tolerance = args.tolerance
        # NaN-safe: `diff <= tolerance` is False for a NaN difference, which fails the check.
        within = {key: math.isfinite(diff) and diff <= tolerance for key, diff in diffs.items()}
        for key, diff in diffs.items():
            print(f"  {key:16s} max |difference| {diff:.3g}"
                  + ("" if within[key] else "  > tolerance" if math.isfinite(diff) else "  not finite"))
        record["check"] = {"input": str(args.check_input), "outputs": str(args.check_outputs),
                           "tolerance": tolerance, "max_abs_difference": diffs}
        if not all(within.values()):
            not_finite = [key for key, diff in diffs.items() if not math.isfinite(diff)]
            if not_finite:
                print(f"check failed: the model gives NaN or infinite values in {', '.join(not_finite)}; "
                      "nothing written")
            else:
                print(f"check failed: an endpoint differs by more than {tolerance:g}; nothing written")
            return 1
        print(f"check passed: {len(diffs)} outputs within {tolerance:g}")
    write_weights(conversion.model, output, record)
    print(f"wrote {output} and {sidecar_path(output).name}")
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m models.checkpoints",
                           description="Convert a released checkpoint into Keras weights of a preset.")
    formats = parser.add_subparsers(dest="format", required=True, parser_class=OneLineParser)
    d2 = formats.add_parser("deeplab2", help="a deeplab2 (TF2) checkpoint, read with tf.train.load_checkpoint")
    d2.add_argument("checkpoint", help="checkpoint prefix (e.g. .../ckpt-60000) or a folder holding one")
    d2.add_argument("--preset", required=True, help="a deeplab2-... preset (models/presets.py)")
    d2.add_argument("--output", required=True, help="OUT.weights.h5 (OUT.json is written beside it)")
    add_override_arguments(d2)
    d2.add_argument("--check-input", help="X.npy: [batch, height, width, 3] images, already as the model takes them")
    d2.add_argument("--check-outputs", help="Y.npz: reference outputs by endpoint name (stage1..5, res1..5, ...)")
    d2.add_argument("--tolerance", type=tolerance_argument, default=DEFAULT_TOLERANCE,
                    help=f"largest absolute difference accepted by the check (default {DEFAULT_TOLERANCE:g})")
    d2.set_defaults(run=convert_command)
    pt = formats.add_parser("axial-deeplab-pytorch",
                            help="a state_dict of csrhddlam/axial-deeplab's Axial-ResNets: .npz (no PyTorch "
                                 "needed) or .pth (needs torch, an optional dependency)")
    pt.add_argument("checkpoint", help="FILE.npz (numpy.savez of the state_dict) or FILE.pth")
    pt.add_argument("--preset", required=True, help="a pytorch-... preset (models/presets.py)")
    pt.add_argument("--output", required=True, help="OUT.weights.h5 (OUT.json is written beside it)")
    pt.add_argument("--width", type=multiplier_argument, help="AxialAttentionNet's s")
    pt.add_argument("--blocks", help="AxialAttentionNet's layers, four comma-separated counts")
    pt.add_argument("--num-classes", type=count_argument, help="classes of the fc head (1000 on ImageNet)")
    pt.set_defaults(stem_width=None, output_stride=None)
    for sub in (pt,):
        sub.add_argument("--check-input", help="X.npy: [batch, height, width, 3] images, as the model takes them")
        sub.add_argument("--check-outputs", help="Y.npz: reference outputs by name (logits, layer1..layer4)")
        sub.add_argument("--tolerance", type=tolerance_argument, default=DEFAULT_TOLERANCE,
                         help=f"largest absolute difference accepted by the check (default {DEFAULT_TOLERANCE:g})")
    pt.set_defaults(run=convert_command)
    from runtime import backend

    for sub in (d2, pt):
        backend.add_argument(sub)
    return parser


def main(argv=None) -> int:
    """Arguments, output path and check files are checked before TensorFlow or JAX loads: bad
    input answers at once, one line, exit code 2."""
    from runtime import backend

    argv = sys.argv[1:] if argv is None else argv
    try:
        try:
            args = make_parser().parse_args(argv)
        except SystemExit as exit_:  # --help
            return int(exit_.code or 0)
        checked = check_arguments(args)
        backend.choose(args.backend)  # the converted weights load on both; the check runs on this one
        return args.run(args, checked)
    except (UsageError, ConversionError, backend.BackendError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
