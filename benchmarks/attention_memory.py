"""Training memory and step time of span-limited axial attention: masked path against windowed (issue #24).

    .venv/bin/python benchmarks/attention_memory.py [--quick] [--lengths 129 257 ...] [--sizes 257x513 ...]

Under JAX (the backend whose compiler states a program's memory), in one process, for each
configuration both ways of computing the same layer (models/layers/axial_attention.py):
"masked", every query against the whole axis with the keys outside the span masked (the
layer before issue #24), and "windowed", query blocks against their halos of block + m - 1
keys (what the layer chooses by itself when the span is shorter than the axis).

1. One span-65 axial layer along the width (128 channels in and out, key depth 64, 8 heads,
   batch 1, 8 rows), axis lengths 129 .. 2049: XLA's compiled temporary memory of a training
   step (`jax.jit(value_and_grad).lower(...).compile().memory_analysis()`, the buffers beyond
   arguments and outputs) and the median wall time per step; then memory(4 L) / memory(L).
2. Axial-DeepLab-L (`axial-deeplab-l-cityscapes`, batch 1) at increasing input sizes: the same
   two figures for its training step, every axial layer masked, then as chosen.

The step is a value-and-grad of the mean square of the outputs with respect to the weights and
the input, the BN statistics updated (training mode).  Compiled memory needs no execution, so
it is reported for every size; the steps are timed only where each one's temporaries fit in
--time-memory GiB (default: a quarter of this machine's memory, which other jobs share) and,
for the model, up to --time-pixels.  Both paths of a configuration are
compiled first, then run one untimed step each and take turns step by step (--steps, or
--model-steps, each); a time is the median.  JAX's persistent compilation cache is off here
(every figure is a fresh compilation).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runtime import backend  # noqa: E402

PATHS = ("masked", "windowed")
PRESET = "axial-deeplab-l-cityscapes"
GIB = 2.0**30


def _size(text: str) -> tuple[int, int]:
    height, width = (int(n) for n in text.lower().split("x"))
    return height, width


def _memory_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB


def set_path(model, path: str) -> int:
    """Every AxialAttention layer of `model` on `path` ("masked" or "auto"); how many there are."""
    from models.layers import AxialAttention

    layers = [layer for layer in model._flatten_layers(include_self=True, recursive=True)
              if isinstance(layer, AxialAttention)]
    for layer in layers:
        layer.attention_path = "masked" if path == "masked" else "auto"
    return len(layers)


def training_step(model, x):
    """(compiled step, its arguments): value and gradient of mean(outputs^2) w.r.t. weights and input."""
    import jax
    import keras
    from keras import ops

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def loss(trainable, non_trainable, x):
        outputs, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        return sum(ops.mean(ops.square(o)) for o in keras.tree.flatten(outputs)), non_trainable

    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 2), has_aux=True))
    arguments = (trainable, non_trainable, x)
    return step.lower(*arguments).compile(), arguments


def compile_step(model, x) -> dict:
    """The compiled step, its arguments, its temporaries (GiB) and the compile seconds."""
    began = time.perf_counter()
    compiled, arguments = training_step(model, x)
    return {"compiled": compiled, "arguments": arguments, "step_s": None,
            "temp_gib": compiled.memory_analysis().temp_size_in_bytes / GIB,
            "compile_s": time.perf_counter() - began}


def time_steps(measured: dict, steps: int) -> None:
    """Median seconds per step of every compiled step in `measured` (path -> compile_step's dict),
    the paths taking turns step by step, so that a change of the shared machine's load falls on
    both alike; one untimed step each first.  Sets "step_s"; drops the compiled steps."""
    import jax

    for m in measured.values():
        jax.block_until_ready(m["compiled"](*m["arguments"]))
    times = {path: [] for path in measured}
    for _ in range(steps):
        for path, m in measured.items():
            start = time.perf_counter()
            jax.block_until_ready(m["compiled"](*m["arguments"]))
            times[path].append(time.perf_counter() - start)
    for path, m in measured.items():
        m["step_s"] = float(np.median(times[path]))


def _release(measured: dict) -> None:
    for m in measured.values():
        m.pop("compiled", None)
        m.pop("arguments", None)


def layer_model(length: int, rows: int, channels: int, heads: int, span: int, path: str):
    import keras

    from models.layers import AxialAttention

    inputs = keras.Input((rows, length, channels), batch_size=1)
    layer = AxialAttention("width", key_depth=channels // 2, value_depth=channels, num_heads=heads, span=span)
    model = keras.Model(inputs, layer(inputs))
    set_path(model, path)
    return model, layer


def _fmt(value, digits=3):
    return "-" if value is None else f"{value:.{digits}g}"


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def layer_section(args) -> list[str]:
    import keras

    lines = [f"## One span-{args.span} axial layer: width axis of L, {args.rows} rows, {args.channels} channels, "
             f"{args.heads} heads, batch 1", "",
             "| L | path | keys per query computed | compiled temp GiB | step s | compile s |",
             "|---|---|---|---|---|---|"]
    results = {}
    for length in args.lengths:
        x = np.random.default_rng(0).normal(size=(1, args.rows, length, args.channels)).astype("float32")
        measured = {}
        for path in PATHS:
            keras.backend.clear_session()
            keras.utils.set_random_seed(0)
            model, layer = layer_model(length, args.rows, args.channels, args.heads, args.span, path)
            measured[path] = compile_step(model, x)
            measured[path]["windowed"] = layer.uses_window(length)
            measured[path]["keys"] = layer.blocking(length).halo if measured[path]["windowed"] else length
        if max(m["temp_gib"] for m in measured.values()) < args.time_memory:
            time_steps(measured, args.steps)
        _release(measured)
        for path, r in measured.items():
            results[length, path] = r
            lines.append(f"| {length} | {path}{'' if r['windowed'] == (path == 'windowed') else ' (= masked)'} "
                         f"| {r['keys']} | {r['temp_gib']:.3f} | {_fmt(r['step_s'])} | {r['compile_s']:.1f} |")
            print(lines[-1], file=sys.stderr, flush=True)
    lines += ["", "Growth for 4x the axis (memory(4L) / memory(L); step time likewise):", ""]
    for length in args.lengths:
        if length * 4 - 3 not in args.lengths and length * 4 not in args.lengths:
            continue
        longer = length * 4 - 3 if length * 4 - 3 in args.lengths else length * 4
        cells = []
        for path in PATHS:
            a, b = results[length, path], results[longer, path]
            cells.append(f"{path} memory x{_ratio(b['temp_gib'], a['temp_gib']):.2f}, "
                         f"time x{_fmt(_ratio(b['step_s'], a['step_s']))}")
        lines.append(f"- L {length} -> {longer}: " + "; ".join(cells))
    lines += ["", "Windowed against masked at the same L (memory; step time):", ""]
    for length in args.lengths:
        m, w = results[length, "masked"], results[length, "windowed"]
        lines.append(f"- L {length}: memory x{_ratio(w['temp_gib'], m['temp_gib']):.3f}, "
                     f"time x{_fmt(_ratio(w['step_s'], m['step_s']))}")
    return lines


def model_section(args) -> list[str]:
    import keras

    from models import presets

    lines = [f"## Axial-DeepLab-L (`{PRESET}`), training step, batch 1", "",
             f"| input | path | axial layers windowed / all | compiled temp GiB | fits {args.device_memory:g} GiB "
             "| step s | compile s |",
             "|---|---|---|---|---|---|---|"]
    results = {}
    for size in args.sizes:
        x = np.random.default_rng(0).normal(size=(1,) + size + (3,)).astype("float32")
        measured = {}
        for path in PATHS:
            keras.backend.clear_session()
            keras.utils.set_random_seed(0)
            model = presets.build(PRESET, size)
            total = set_path(model, path)
            windowed = _windowed_layers(model) if path == "windowed" else 0
            measured[path] = compile_step(model, x) | {"layers": f"{windowed} / {total}"}
            del model
        if (max(m["temp_gib"] for m in measured.values()) < args.time_memory
                and size[0] * size[1] <= args.time_pixels):
            time_steps(measured, args.model_steps)
        _release(measured)
        for path, r in measured.items():
            results[size, path] = r
            fits = "yes" if r["temp_gib"] < args.device_memory else "no"
            lines.append(f"| {size[0]}x{size[1]} | {path} | {r['layers']} | {r['temp_gib']:.2f} | {fits} "
                         f"| {_fmt(r['step_s'])} | {r['compile_s']:.0f} |")
            print(lines[-1], file=sys.stderr, flush=True)
    lines += ["", "Windowed against masked at the same input (memory; step time):", ""]
    for size in args.sizes:
        m, w = results[size, "masked"], results[size, "windowed"]
        lines.append(f"- {size[0]}x{size[1]}: memory x{_ratio(w['temp_gib'], m['temp_gib']):.3f} "
                     f"({m['temp_gib']:.2f} -> {w['temp_gib']:.2f} GiB), "
                     f"time x{_fmt(_ratio(w['step_s'], m['step_s']))}")
    lines += ["", "Growth between consecutive inputs (memory; step time):", ""]
    for small, large in zip(args.sizes, args.sizes[1:]):
        cells = [f"{path} memory x{_ratio(results[large, path]['temp_gib'], results[small, path]['temp_gib']):.2f}, "
                 f"time x{_fmt(_ratio(results[large, path]['step_s'], results[small, path]['step_s']))}"
                 for path in PATHS]
        lines.append(f"- {small[0]}x{small[1]} -> {large[0]}x{large[1]}: " + "; ".join(cells))
    return lines


def _windowed_layers(model) -> int:
    """How many of the model's axial layers take the windowed path at its input size."""
    from models.layers import AxialAttention

    count = 0
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, AxialAttention):
            shape = layer.input.shape if hasattr(layer, "input") else None
            length = shape[1] if layer.axis == "height" else shape[2]
            count += layer.uses_window(length)
    return count


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", help="axis lengths of the layer (default "
                        "129 257 513 1025 2049; --quick 129 257 513)")
    parser.add_argument("--sizes", type=_size, nargs="+", metavar="HxW", help="Axial-DeepLab-L inputs (default "
                        "257x513 513x1025 1025x2049; --quick 129x257 257x513)")
    parser.add_argument("--span", type=int, default=65)
    parser.add_argument("--rows", type=int, default=8, help="the layer's other axis")
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per layer measurement (after one untimed)")
    parser.add_argument("--model-steps", type=int, default=1, help="timed steps per model measurement")
    parser.add_argument("--device-memory", type=float, default=24.0,
                        help="GiB of the accelerator the model's figures are held against (the issue's 24)")
    parser.add_argument("--time-memory", type=float, default=_memory_gib() / 4,
                        help="time the steps only if each one's compiled temporaries are below this many "
                        "GiB (default: a quarter of this machine's memory, which other jobs share)")
    parser.add_argument("--time-pixels", type=int, default=513 * 1025,
                        help="time Axial-DeepLab-L's steps only up to this many input pixels")
    parser.add_argument("--quick", action="store_true", help="small sizes only (a few minutes)")
    parser.add_argument("--skip", choices=("layer", "model"), help="leave one section out")
    args = parser.parse_args(argv)
    args.lengths = args.lengths or ([129, 257, 513] if args.quick else [129, 257, 513, 1025, 2049])
    args.sizes = args.sizes or ([(129, 257), (257, 513)] if args.quick else [(257, 513), (513, 1025), (1025, 2049)])

    backend.choose("jax")
    import jax

    jax.config.update("jax_enable_compilation_cache", False)
    print(f"JAX {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPU cores, "
          f"{_memory_gib():.0f} GiB memory; load average {os.getloadavg()[0]:.1f}", flush=True)
    began = time.perf_counter()
    if args.skip != "layer":
        print("\n".join(layer_section(args)), flush=True)
        print(flush=True)
    if args.skip != "model":
        print("\n".join(model_section(args)), flush=True)
    print(f"\n({time.perf_counter() - began:.0f} s; load average {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
