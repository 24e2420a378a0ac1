"""Attention against convolution, in images/s and GMAC/s, today's formulation beside the fast one (issue #11).

    .venv/bin/python benchmarks/attention_speed.py [--backend tensorflow|jax|both] [--pairs ...] [--quick]

For each pair (an attention model and the convolutional model it is measured against) one
fresh process per backend builds the convolutional model, the attention model with the fast
layers of models/layers, and its twin with the reference formulation
(models/layers/reference_attention.py, same weights), and measures each in inference
(forward, training=False) and training (forward, backward and an SGD update, training=True;
a mean-square loss on the outputs, so the step is the model's own cost).  TensorFlow runs a
tf.function (graph mode, no XLA), JAX a jax.jit of the stateless call, as the suite trains.

GMAC/s = images/s x the suite's own M-Adds per image (models/counting.py, the paper's
definition, identical for both formulations).  A ratio of 1 would mean attention turns its
M-Adds into time as efficiently as convolution.  The machine's float32 matmul GMAC/s
(a 1024^3 product) is printed as the limit.

The first step of every measurement (tracing, compiling) is not timed.  Then each measurement
runs at least --min-steps and --min-seconds, or stops at --max-seconds (one step at least):
today's formulation of the large models takes over a minute per training step here and is
timed on one.  With --rounds > 1 the three models of a pair (six step functions) take turns,
so that a change of the shared machine's load falls on all of them alike.  Images/s come
from the median step; the load average is printed.

Pairs: one width-axis layer 1x65x65x256 (d_q 16, d_v 32, 8 heads, 0.80 GMAC) vs a 3x3
convolution of equal M-Adds (82 filters), batch 1; Axial-ResNet-S conv-stem vs ResNet-50 at
224^2, batch 8; PS-Attention ResNet-50 (7x7 local, Eq. 3, BN) vs ResNet-50 at 112^2, batch 8;
Axial-DeepLab-S vs ResNet-50-DeepLab (Cityscapes heads, full width) at the proxy crop 129^2,
batch 4.  Expected time on 2 shared cores: about 12 minutes for TensorFlow (the default),
25 for both backends; --quick about 4.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# name: (title, attention model, convolutional model, input side, batch)
PAIRS = {
    "axial-layer": ("one width-axis layer 1x65x65x256 vs 3x3 conv, equal M-Adds", "layer:axial", "layer:conv",
                    65, 1),
    "axial-resnet-s": ("Axial-ResNet-S conv-stem vs ResNet-50, 224^2", "axial-resnet-conv-stem-w0.5", "resnet50",
                       224, 8),
    # 112^2: at 224^2 today's formulation takes 2.5 minutes per training step here.
    "ps-attention-resnet50": ("PS-Attention ResNet-50 vs ResNet-50, 112^2", "ps-attention-resnet50-w1",
                              "resnet50", 112, 8),
    "axial-deeplab-s": ("Axial-DeepLab-S vs ResNet-50-DeepLab, proxy crop 129^2", "axial-deeplab-s-cityscapes",
                        "resnet50-deeplab-cityscapes", 129, 4),
}
BACKENDS = ("tensorflow", "jax")


# --- worker: one pair, one backend --------------------------------------------------------------

def build(name: str, side: int):
    import keras

    from models import presets
    from models.layers import AxialAttention

    if name == "layer:axial":
        inputs = keras.Input((side, side, 256))
        return keras.Model(inputs, AxialAttention("width", key_depth=128, value_depth=256)(inputs))
    if name == "layer:conv":
        inputs = keras.Input((side, side, 256))
        # 82 filters: 65 * 65 * 9 * 256 * 82 = 0.80 G, the axial layer's M-Adds.
        return keras.Model(inputs, keras.layers.Conv2D(82, 3, padding="same", use_bias=False)(inputs))
    return presets.build(name, (side, side))


def _loss(outputs):
    from keras import ops

    import keras

    return sum(ops.mean(ops.square(o)) for o in keras.tree.flatten(outputs))


def steps_tensorflow(model, images):
    """(inference step, training step), each a no-argument callable that blocks until done."""
    import tensorflow as tf

    import keras

    x = tf.constant(images)
    variables = model.trainable_variables
    optimizer = keras.optimizers.SGD(1e-4)
    optimizer.build(variables)

    @tf.function
    def infer(x):
        return model(x, training=False)

    @tf.function
    def train(x):
        with tf.GradientTape() as tape:
            loss = _loss(model(x, training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    def run(fn):
        return lambda: tf.nest.map_structure(lambda t: t.numpy(), fn(x))

    return run(infer), run(train)


def steps_jax(model, images):
    import jax

    x = jax.device_put(images)
    state = {"trainable": [v.value for v in model.trainable_variables],
             "non_trainable": [v.value for v in model.non_trainable_variables]}

    @jax.jit
    def infer(trainable, non_trainable, x):
        return model.stateless_call(trainable, non_trainable, x, training=False)[0]

    def loss(trainable, non_trainable, x):
        outputs, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        return _loss(outputs), non_trainable

    @jax.jit
    def train(trainable, non_trainable, x):
        (value, non_trainable), grads = jax.value_and_grad(loss, has_aux=True)(trainable, non_trainable, x)
        return [v - 1e-4 * g for v, g in zip(trainable, grads)], non_trainable, value

    def infer_step():
        jax.block_until_ready(infer(state["trainable"], state["non_trainable"], x))

    def train_step():
        state["trainable"], state["non_trainable"], value = train(state["trainable"], state["non_trainable"], x)
        jax.block_until_ready(value)

    return infer_step, train_step


def measure(steps: dict, batch: int, args) -> dict:
    """Images/s of every step function: batch / median step time, in interleaved rounds.

    Each step runs once untimed first (tracing, compiling: reported as first_step_seconds).
    Then, round after round, every step function runs for at least --min-steps / --rounds steps
    and --min-seconds / --rounds seconds, or --max-seconds per round (one step at least), so
    a change in the machine's load (2 shared cores) falls on all of them alike.
    """
    first, times = {}, {key: [] for key in steps}
    for key, step in steps.items():
        began = time.perf_counter()
        step()
        first[key] = time.perf_counter() - began
    for _ in range(args.rounds):
        for key, step in steps.items():
            began = time.perf_counter()
            while True:
                start = time.perf_counter()
                step()
                now = time.perf_counter()
                times[key].append(now - start)
                elapsed, count = now - began, len(times[key])
                if (count >= args.min_steps / args.rounds and elapsed >= args.min_seconds / args.rounds) \
                        or elapsed >= args.max_seconds / args.rounds:
                    break
    return {key: {"images_per_second": batch / float(np.median(times[key])), "steps": len(times[key]),
                  "first_step_seconds": first[key]} for key in steps}


def worker(pair: str, args) -> dict:
    import keras

    from models.counting import count
    from models.layers.reference_attention import with_reference_layers

    _, attention_name, conv_name, side, batch = PAIRS[pair]
    images = np.random.default_rng(0).normal(size=(batch, side, side, 256 if attention_name.startswith("layer")
                                                   else 3)).astype("float32")
    make_steps = steps_jax if keras.backend.backend() == "jax" else steps_tensorflow
    result = {"pair": pair, "backend": keras.backend.backend(), "batch": batch, "side": side,
              "load_before": os.getloadavg()[0]}
    keras.utils.set_random_seed(0)
    attention = build(attention_name, side)
    models = {"conv": build(conv_name, side), "fast": attention, "reference": with_reference_layers(attention)}
    steps = {}
    for name, model in models.items():
        result[name] = {"gmac_per_image": count(model).madds / 1e9}
        steps[name, "inference"], steps[name, "training"] = make_steps(model, images)
    for (name, mode), measured in measure(steps, batch, args).items():
        result[name][mode] = measured
    for name in models:
        print(f"  {pair} [{result['backend']}] {name}: " + ", ".join(
            f"{m} {result[name][m]['images_per_second']:.3g} img/s" for m in ("inference", "training")),
            file=sys.stderr, flush=True)
    result["load_after"] = os.getloadavg()[0]
    return result


def matmul_worker() -> dict:
    """float32 GMAC/s of a 1024 x 1024 x 1024 matmul: the machine's limit for any of these models."""
    import keras

    n = 1024
    a = np.random.default_rng(0).normal(size=(n, n)).astype("float32")
    if keras.backend.backend() == "jax":
        import jax

        fn = jax.jit(lambda a: a @ a)
        step = lambda: jax.block_until_ready(fn(a))  # noqa: E731
    else:
        import tensorflow as tf

        fn = tf.function(lambda a: tf.matmul(a, a))
        x = tf.constant(a)
        step = lambda: fn(x).numpy()  # noqa: E731
    step()
    reps, began = 0, time.perf_counter()
    while time.perf_counter() - began < 3.0:
        step()
        reps += 1
    return {"backend": keras.backend.backend(), "gmac_per_second": reps * n**3 / 1e9 / (time.perf_counter() - began)}


# --- parent: one process per (backend, pair), one table ---------------------------------------

def run_worker(backend: str, what: str, args) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", what, "--rounds", str(args.rounds),
               "--min-steps", str(args.min_steps), "--min-seconds", str(args.min_seconds),
               "--max-seconds", str(args.max_seconds)]
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    if backend == "jax":
        env.setdefault("JAX_PLATFORMS", "cpu")
    out = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    if out.returncode:
        raise SystemExit(f"{what} under {backend} failed (exit {out.returncode})")
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(results: list[dict], matmul: dict[str, float]) -> str:
    lines = ["| backend | pair | mode | conv img/s | conv GMAC/s | attention img/s today | attention img/s fast "
             "| speed-up | attention GMAC/s fast | GMAC/s attention / conv: today | fast |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for mode in ("inference", "training"):
            conv, fast, ref = (r[k][mode]["images_per_second"] for k in ("conv", "fast", "reference"))
            conv_gmacs = conv * r["conv"]["gmac_per_image"]
            fast_gmacs, ref_gmacs = (s * r["fast"]["gmac_per_image"] for s in (fast, ref))
            lines.append(f"| {r['backend']} | {r['pair']} | {mode} | {conv:.3g} | {conv_gmacs:.3g} | {ref:.3g} "
                         f"| {fast:.3g} | {fast / ref:.1f}x | {fast_gmacs:.3g} | {ref_gmacs / conv_gmacs:.3f} "
                         f"| {fast_gmacs / conv_gmacs:.3f} |")
    lines.append("")
    lines.append("float32 matmul (1024^3), the limit: " + ", ".join(f"{b} {g:.0f} GMAC/s" for b, g in matmul.items()))
    lines.append("M-Adds per image (the suite's counter): " + ", ".join(
        f"{r['pair']} {r['fast']['gmac_per_image']:.3g} vs {r['conv']['gmac_per_image']:.3g} G"
        for r in results if r["backend"] == results[0]["backend"]))
    lines.append("load average during each pair: " + ", ".join(
        f"{r['pair']} [{r['backend']}] {r['load_before']:.1f}-{r['load_after']:.1f}" for r in results))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=BACKENDS + ("both",), default="tensorflow",
                        help="tensorflow (the suite's training backend today), jax, or both (twice as long)")
    parser.add_argument("--pairs", nargs="+", choices=list(PAIRS), help="default: all (--quick: axial-layer, "
                        "axial-deeplab-s)")
    parser.add_argument("--quick", action="store_true", help="one timed step per measurement, two pairs")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds over the three models")
    parser.add_argument("--min-steps", type=int, default=3, help="timed steps per measurement, over all rounds")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="timed seconds per measurement")
    parser.add_argument("--max-seconds", type=float, default=8.0,
                        help="stop a measurement after this many seconds (at least one step per round)")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        from runtime import backend

        backend.choose()  # KERAS_BACKEND from the parent; keeps the libraries' start-up notices off the terminal
        result = matmul_worker() if args.worker == "matmul" else worker(args.worker, args)
        print(json.dumps(result))
        return 0
    if args.quick:
        args.rounds, args.min_steps, args.min_seconds, args.max_seconds = 1, 1, 0.0, 0.0
    args.pairs = args.pairs or (["axial-layer", "axial-deeplab-s"] if args.quick else list(PAIRS))
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    print(f"{os.cpu_count()} CPU cores; load average {os.getloadavg()[0]:.1f}; "
          f"timed in {args.rounds} interleaved rounds: >= {args.min_steps} steps and >= {args.min_seconds:g} s, "
          f"or {args.max_seconds:g} s; images/s from the median step",
          file=sys.stderr)
    began = time.perf_counter()
    matmul = {b: run_worker(b, "matmul", args)["gmac_per_second"] for b in backends}
    results = [run_worker(b, pair, args) for b in backends for pair in args.pairs]
    if args.json:
        args.json.write_text(json.dumps({"matmul": matmul, "results": results}, indent=1))
    print(table(results, matmul))
    print(f"({time.perf_counter() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
