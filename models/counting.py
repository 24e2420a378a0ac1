"""Params and M-Adds of any model, by operation, without running it (paper Tab. 1-9 columns).

The counting convention (README, "Counting convention") is one rule for every model:

Params   trainable weights, except the BN scale/offset inside attention layers
         (`attention_batch_norm`, reported in the breakdown but not in the total).
         Position tables are what the layers carry: 509 rows per axial table,
         m rows per axis for an m x m local window (models/layers/position.py).
M-Adds   multiply-accumulates, for one image, of convolutions (depthwise too),
         fully connected layers, the attention layers' qkv projections and their
         attention products: each similarity term costs the key depth and each
         retrieved term the value depth, per query and per key; a query has the
         whole axis as keys (global span) or min(m, axis) (span m), m*m for
         local m x m attention.  (An alternative charge for a local axial span,
         2m - 1 keys, is totalled alongside as `madds_blocked_local`, for
         comparison only.)  BN, activations, softmax, pooling, resizing and
         additions are not counted.  Feature grids are those of "same" padding:
         ceil(size / stride).

The model is built symbolically (keras.Input); nothing is evaluated.  Every
layer that owns weights must be known here, so a new layer type cannot be
silently counted as free.
"""

from __future__ import annotations

import argparse
import sys

from runtime import backend
from runtime.cli import OneLineParser, UsageError


# --- the command line: `python -m models.counting PRESET [--input-size H W] [--backend B]` --------
# It sits above `import keras` so that, run as a script, it is checked and the backend chosen
# before Keras loads (runtime/backend.py): --help and bad input answer at once, in one line.

def make_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m models.counting",
        description="Params and M-Adds of a named preset, broken down by operation and stage.")
    parser.add_argument("preset", help="preset name (see models/presets.py)")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                        help="input size (default: the size the paper counts the preset at)")
    backend.add_argument(parser)
    return parser


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    """Parse and check the command line without loading any library; UsageError on bad input.
    (Preset names are checked by main: the presets need Keras.)"""
    args = make_parser().parse_args(argv)
    if args.input_size and min(args.input_size) < 1:
        raise UsageError(f"--input-size must be positive, got {args.input_size[0]} {args.input_size[1]}")
    return args


def start(argv: list[str]) -> argparse.Namespace | int:
    """The checked arguments, with the backend chosen; or the exit status to end with (0 after
    --help; 2 after a one-line `error: ...` for bad input or an unusable backend)."""
    try:
        args = parse_arguments(argv)
        backend.choose(args.backend)
    except (UsageError, backend.BackendError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except SystemExit as exit_:  # --help
        return int(exit_.code or 0)
    return args


if __name__ == "__main__":
    _started = start(sys.argv[1:])
    if isinstance(_started, int):
        raise SystemExit(_started)


from collections import Counter  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import numpy as np  # noqa: E402
import keras  # noqa: E402

# Parameters listed in the breakdown but left out of the Params total.
EXCLUDED_PARAMETERS = frozenset({"attention_batch_norm"})

# Layers with no multiply-accumulates under the convention (and no weights, or only BN).
FREE_LAYERS = (
    keras.layers.InputLayer,
    keras.layers.BatchNormalization,
    keras.layers.ReLU,
    keras.layers.Activation,
    keras.layers.Add,
    keras.layers.Concatenate,
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.UpSampling2D,
    keras.layers.Resizing,
    keras.layers.Identity,
    keras.layers.Dropout,
    keras.layers.ZeroPadding2D,
)


def _is_free(layer) -> bool:
    """A layer of FREE_LAYERS, or a weightless layer of this suite that declares itself free
    under the convention (`madds_free = True`: resampling such as models.deeplab2's
    align-corners resize)."""
    return isinstance(layer, FREE_LAYERS) or getattr(type(layer), "madds_free", False)


@dataclass
class Counts:
    """Params and M-Adds of one model at one input size, with per-op and per-stage breakdowns."""

    params: int
    madds: int
    params_by_op: dict[str, int] = field(default_factory=dict)
    madds_by_op: dict[str, int] = field(default_factory=dict)
    madds_by_stage: dict[str, int] = field(default_factory=dict)
    uncounted_params: int = 0
    # M-Adds under the comparison reading of local axial spans (2m - 1 keys per query).
    madds_blocked_local: int = 0

    def scaled(self, passes: int) -> "Counts":
        """The same model run `passes` times: M-Adds multiply, Params do not."""
        return Counts(self.params, self.madds * passes, dict(self.params_by_op),
                      {k: v * passes for k, v in self.madds_by_op.items()},
                      {k: v * passes for k, v in self.madds_by_stage.items()}, self.uncounted_params,
                      self.madds_blocked_local * passes)

    def plus(self, other: "Counts") -> "Counts":
        """Another forward pass of the same model (another input size)."""
        if (self.params, self.params_by_op) != (other.params, other.params_by_op):
            raise ValueError("only passes of the same model can be added")
        return Counts(self.params, self.madds + other.madds, dict(self.params_by_op),
                      dict(Counter(self.madds_by_op) + Counter(other.madds_by_op)),
                      dict(Counter(self.madds_by_stage) + Counter(other.madds_by_stage)),
                      self.uncounted_params, self.madds_blocked_local + other.madds_blocked_local)

    def to_dict(self) -> dict:
        return {
            "params": self.params,
            "madds": self.madds,
            "params_by_op": dict(self.params_by_op),
            "madds_by_op": dict(self.madds_by_op),
            "madds_by_stage": dict(self.madds_by_stage),
            "uncounted_params": self.uncounted_params,
            "madds_blocked_local": self.madds_blocked_local,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Counts":
        return cls(**data)


def _shape(tensor) -> tuple:
    return tuple(tensor.shape)


def _weight_count(layer) -> int:
    return int(sum(np.prod(w.shape) for w in layer.trainable_weights))


def _conv_madds(layer, out_shape, in_channels) -> int:
    kh, kw = layer.kernel_size
    out_pixels = int(np.prod(out_shape[1:-1]))
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return out_pixels * kh * kw * in_channels * layer.depth_multiplier
    groups = getattr(layer, "groups", 1)
    return out_pixels * kh * kw * (in_channels // groups) * layer.filters


def layer_counts(layer, local_keys: str = "window") -> tuple[dict[str, int], dict[str, int]]:
    """(params by op, M-Adds by op) of one layer inside a built functional model."""
    if hasattr(layer, "count_madds"):
        return layer.parameter_breakdown(), layer.count_madds(_shape(layer.input), local_keys)
    if isinstance(layer, keras.layers.SeparableConv2D):
        in_shape, out_shape = _shape(layer.input), _shape(layer.output)
        out_pixels = int(np.prod(out_shape[1:-1]))
        kh, kw = layer.kernel_size
        depthwise = out_pixels * kh * kw * in_shape[-1] * layer.depth_multiplier
        pointwise = out_pixels * in_shape[-1] * layer.depth_multiplier * layer.filters
        return {"conv": _weight_count(layer)}, {"depthwise_conv": depthwise, "conv": pointwise}
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        madds = _conv_madds(layer, _shape(layer.output), _shape(layer.input)[-1])
        return {"depthwise_conv": _weight_count(layer)}, {"depthwise_conv": madds}
    if isinstance(layer, keras.layers.Conv2D):
        madds = _conv_madds(layer, _shape(layer.output), _shape(layer.input)[-1])
        return {"conv": _weight_count(layer)}, {"conv": madds}
    if isinstance(layer, keras.layers.Dense):
        in_shape = _shape(layer.input)
        positions = int(np.prod(in_shape[1:-1])) if len(in_shape) > 2 else 1
        return {"fc": _weight_count(layer)}, {"fc": positions * in_shape[-1] * layer.units}
    if isinstance(layer, keras.layers.BatchNormalization):
        return {"batch_norm": _weight_count(layer)}, {}
    if _is_free(layer):
        if _weight_count(layer):
            raise TypeError(f"layer {layer.name} ({type(layer).__name__}) has weights but no counting rule")
        return {}, {}
    if isinstance(layer, keras.Model):
        raise TypeError(f"nested model {layer.name}: count a flat functional model")
    raise TypeError(
        f"no counting rule for layer {layer.name} ({type(layer).__name__}); "
        "add one to models/counting.py"
    )


def stage_of(layer_name: str) -> str:
    """Stage label from the naming scheme `<stage>_<block>_<op>` (e.g. stage2_block1_conv1)."""
    return layer_name.split("_", 1)[0]


def count(model: keras.Model) -> Counts:
    """Counts Params and M-Adds of a built functional model (per image).

    Alongside the convention's M-Adds it adds up the comparison reading of
    local axial spans, 2m - 1 keys per query (`madds_blocked_local`, see
    AxialAttention.keys_per_query); both come from the same walk over the model.
    """
    params_by_op: Counter = Counter()
    madds_by_op: Counter = Counter()
    madds_by_stage: Counter = Counter()
    madds_blocked = 0
    for layer in model.layers:
        params, madds = layer_counts(layer)
        params_by_op.update(params)
        madds_by_op.update(madds)
        madds_by_stage[stage_of(layer.name)] += sum(madds.values())
        madds_blocked += sum(layer_counts(layer, "blocked")[1].values()) if hasattr(layer, "count_madds") \
            else sum(madds.values())
    counted = sum(v for k, v in params_by_op.items() if k not in EXCLUDED_PARAMETERS)
    total_weights = sum(_weight_count(layer) for layer in model.layers)
    if sum(params_by_op.values()) != total_weights:
        raise AssertionError(
            f"{model.name}: per-op parameters ({sum(params_by_op.values())}) do not add up to the "
            f"model's trainable weights ({total_weights})"
        )
    return Counts(
        params=int(counted),
        madds=int(sum(madds_by_op.values())),
        params_by_op=dict(sorted(params_by_op.items())),
        madds_by_op=dict(sorted(madds_by_op.items())),
        madds_by_stage={k: int(v) for k, v in madds_by_stage.items() if v},
        uncounted_params=int(total_weights - counted),
        madds_blocked_local=int(madds_blocked),
    )


def count_model(model_spec, input_size) -> Counts:
    """Counts one forward pass of a model spec at `input_size`.

    The model is built inside a StatelessScope, where Keras defers weight
    initialisation: counting needs weight shapes only, so this skips drawing
    millions of random numbers (faster; memory is about the same, see
    benchmarks/build_memory.py).
    """
    keras.backend.clear_session(free_memory=False)
    with keras.StatelessScope():
        model = model_spec.build(tuple(input_size))
    return count(model)


def count_preset(preset, input_size=None, count_at=count_model) -> Counts:
    """Counts a preset at `input_size`, or over every forward pass of its inference.

    Without `input_size`, a multi-scale preset (the paper's MS rows) is counted
    over the passes it actually runs, one per scale and flip: Params are the one
    model's, M-Adds add up over the passes.  `count_at(model_spec, size)` counts
    one pass (the runner passes a cached version).
    """
    runs = [tuple(input_size)] if input_size else preset.inference_runs()
    total = None
    for size, passes in Counter(runs).items():
        counts = count_at(preset.model, size).scaled(passes)
        total = counts if total is None else total.plus(counts)
    return total


def format_counts(name: str, counts: Counts, input_size) -> str:
    """Human-readable breakdown: where the parameters and the multiply-accumulates are."""
    lines = [f"{name} at {input_size[0]}x{input_size[1]}: "
             f"{counts.params / 1e6:.3f} M params, {counts.madds / 1e9:.3f} B M-Adds"]
    if counts.madds_blocked_local != counts.madds:
        lines.append(f"  (with 2m-1 keys per local axial query: {counts.madds_blocked_local / 1e9:.3f} B)")
    lines.append("  params by op" + " " * 20 + "(* = listed, not in the total)")
    for op, value in sorted(counts.params_by_op.items(), key=lambda kv: -kv[1]):
        mark = "*" if op in EXCLUDED_PARAMETERS else " "
        lines.append(f"   {mark}{op:28s} {value / 1e6:10.3f} M")
    for title, table in (("M-Adds by op", counts.madds_by_op), ("M-Adds by stage", counts.madds_by_stage)):
        lines.append(f"  {title}")
        for key, value in sorted(table.items(), key=lambda kv: -kv[1]):
            share = 100 * value / counts.madds if counts.madds else 0
            lines.append(f"    {key:28s} {value / 1e9:10.3f} B  {share:5.1f} %")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    started = start(sys.argv[1:] if argv is None else argv)
    if isinstance(started, int):
        return started
    args = started
    from models import presets

    try:
        preset = presets.get(args.preset)
    except KeyError as error:
        print(f"error: {error.args[0]}", file=sys.stderr)
        return 2
    size = tuple(args.input_size) if args.input_size else preset.input_size
    print(format_counts(preset.name, count_preset(preset, size), size))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
