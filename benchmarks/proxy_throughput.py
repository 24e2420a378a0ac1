"""Proxy training throughput (images/s) of Axial-DeepLab-S and ResNet-50 DeepLab, side by side.

    .venv/bin/python benchmarks/proxy_throughput.py [--steps 10] [--batch 4] [--crop 65] [--backend jax]

Both models follow the proxy rule (training/experiments.py: the preset's architecture with
every width x PROXY_WIDTH) and train with the same engine, recipe and panoptic-proxy
batches in one process, so the ratio is measured under the same machine load.  The first
two steps (tracing) are not timed.  The batches are prepared before timing: this measures
the model's training step, not data loading.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runtime import backend  # noqa: E402

backend.choose_from_argv(sys.argv[1:])

from training import experiments  # noqa: E402
from training.engine import Trainer  # noqa: E402
from training.pipeline import PanopticBatches  # noqa: E402
from training.recipe import Recipe  # noqa: E402

MODELS = {"Axial-DeepLab-S": "axial-deeplab-s-cityscapes",
          "ResNet-50 DeepLab": "resnet50-deeplab-cityscapes"}
WARMUP = 2


class Prepared:
    """Batches computed once, so the timing excludes augmentation and target building."""

    task = "panoptic"

    def __init__(self, batches, steps):
        self.cache = [batches.batch(step) for step in range(steps)]

    def batch(self, step):
        return self.cache[step]


def throughput(preset: str, data: experiments.Data, recipe: Recipe, batches) -> tuple[float, int]:
    import keras

    keras.backend.clear_session()
    experiment = experiments.Experiment(preset, data, recipe, recipe.crop_size)
    spec = experiments.model_spec(experiment, num_classes=7)
    trainer = Trainer(lambda: spec.build(recipe.crop_size), batches, recipe, tempfile.mkdtemp(),
                      precision="float32")
    trainer.train(until=WARMUP, progress=False)
    start = time.perf_counter()
    trainer.train(progress=False)
    elapsed = time.perf_counter() - start
    return (recipe.steps - WARMUP) * recipe.batch_size / elapsed, trainer.model.count_params()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per model (after 2 untimed)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--crop", type=int, default=65, help="square crop side, 16k + 1")
    parser.add_argument("--presets", nargs="+", metavar="PRESET",
                        help="other presets to time beside ResNet-50 DeepLab (default: Axial-DeepLab-S)")
    backend.add_argument(parser)
    args = parser.parse_args(argv)
    models = ({"ResNet-50 DeepLab": MODELS["ResNet-50 DeepLab"], **{p: p for p in args.presets}}
              if args.presets else MODELS)
    data = experiments.Data("panoptic-proxy", train=16, val=4, render_size=(129, 129))
    recipe = Recipe(steps=WARMUP + args.steps, batch_size=args.batch, crop_size=(args.crop, args.crop),
                    checkpoint_every=10**9)
    root = experiments.prepared_proxy(data)
    batches = Prepared(PanopticBatches(root, "coco", "train", args.batch, recipe.crop_size,
                                       class_of={c: c - 1 for c in range(1, 8)}), recipe.steps)
    print(f"proxy rule: widths x{experiments.PROXY_WIDTH}; {data.describe()}; crop {args.crop}x{args.crop}, "
          f"batch {args.batch}, {args.steps} timed steps, {os.cpu_count()} CPU cores, "
          f"{__import__('keras').backend.backend()} backend")
    results = {name: throughput(preset, data, recipe, batches) for name, preset in models.items()}
    base = results["ResNet-50 DeepLab"][0]
    print(f"{'model':34s} {'params':>10s} {'images/s':>9s} {'x ResNet-50':>11s}")
    for name, (speed, params) in results.items():
        print(f"{name:34s} {params:10,d} {speed:9.2f} {speed / base:11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
