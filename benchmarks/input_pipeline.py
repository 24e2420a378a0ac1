"""Full-size training examples per second of the panoptic input pipeline (issue #26, part 3).

    .venv/bin/python benchmarks/input_pipeline.py [--examples 6] [--workers 2]

Writes a small split of full-size synthetic scenes in each dataset's on-disk layout into a
temporary folder -- Cityscapes 1024 x 2048 through cityscapesScripts' csCreatePanopticImgs,
COCO 480 x 640 JPEGs (COCO's typical size) -- then builds training examples by each
dataset's recipe (recipes/panoptic.csv: crop, scale range, targets) with batch 1:

1. one worker: training/pipeline.py PanopticBatches as the full path builds them (each
   example read from disk, `in_memory=False`; only the crop's window resized,
   `resize_window_only`), one after the other;
2. `--workers` threads (what full runs use: training/experiments.py full_input_workers) and
   3. `--workers` processes: the same batches through the trainer's Keras PyDataset
   (training/engine.py StepBatches), which builds the coming steps in parallel and hands them
   over in order.

It prints examples per second, per core used, and each parallel way's speed-up over one worker,
measured in this one run (machines here are noisy: compare the ratios, not the seconds).  Every
way yields the same batches (checked on the first step).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def scene_ids(shape: tuple[int, int], rng) -> np.ndarray:
    """Cityscapes-style ids: road and sky, a dozen cars (26 * 1000 + k) and people (24 * 1000 + k)."""
    h, w = shape
    ids = np.full(shape, 7, np.uint16)
    ids[: h // 3] = 23
    for k in range(12):
        label = 26 if k % 2 else 24
        top, left = int(rng.integers(h // 3, h - h // 8)), int(rng.integers(0, w - w // 10))
        ids[top:top + h // 8, left:left + w // 10] = label * 1000 + k
    return ids


def write_cityscapes(root: Path, count: int, shape=(1024, 2048)) -> None:
    from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(count):
        stem = f"bench_{i:06d}_000019"
        for folder in ("gtFine", "leftImg8bit"):
            (root / folder / "train" / "bench").mkdir(parents=True, exist_ok=True)
        Image.fromarray(scene_ids(shape, rng)).save(root / "gtFine/train/bench" / f"{stem}_gtFine_instanceIds.png")
        Image.fromarray(rng.integers(0, 255, (*shape, 3), np.uint8)).save(
            root / "leftImg8bit/train/bench" / f"{stem}_leftImg8bit.png")
    convert2panoptic(str(root / "gtFine"), str(root / "gtFine"), setNames=["train"])


def write_coco(root: Path, count: int, shape=(480, 640)) -> None:
    import json

    from PIL import Image

    rng = np.random.default_rng(1)
    (root / "annotations/panoptic_train2017").mkdir(parents=True)
    (root / "train2017").mkdir(parents=True)
    images, annotations = [], []
    categories = [{"id": 1, "name": "person", "isthing": 1}, {"id": 3, "name": "car", "isthing": 1},
                  {"id": 149, "name": "road", "isthing": 0}, {"id": 187, "name": "sky", "isthing": 0}]
    for i in range(count):
        ids = scene_ids(shape, rng).astype(np.int64)
        segments = []
        for segment in np.unique(ids):
            category = {7: 149, 23: 187}.get(int(segment), 3 if segment // 1000 == 26 else 1)
            segments.append({"id": int(segment), "category_id": category, "iscrowd": 0})
        rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
        Image.fromarray(rgb).save(root / "annotations/panoptic_train2017" / f"{i:012d}.png")
        Image.fromarray(rng.integers(0, 255, (*shape, 3), np.uint8)).save(root / "train2017" / f"{i:012d}.jpg",
                                                                          quality=90)
        images.append({"id": i, "file_name": f"{i:012d}.jpg", "height": shape[0], "width": shape[1]})
        annotations.append({"image_id": i, "file_name": f"{i:012d}.png", "segments_info": segments})
    (root / "annotations/panoptic_train2017.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories}))


def measure(dataset: str, root: Path, examples: int, workers: int) -> dict:
    from data import coco_panoptic
    from training import full_recipes
    from training.engine import StepBatches
    from training.pipeline import PanopticBatches

    recipe = full_recipes.recipe(dataset)
    _, categories = coco_panoptic.records(root, dataset, "train")
    batches = PanopticBatches(root, dataset, "train", 1, recipe.crop_size, seed=0, scale_range=recipe.scale_range,
                              class_of={c: i for i, c in enumerate(sorted(categories))},
                              center_sigma=recipe.center_sigma, small_instance_area=recipe.small_instance_area,
                              in_memory=False, resize_window_only=True)
    first = batches.batch(0)
    rates = {}
    began = time.perf_counter()
    for step in range(examples):
        batches.batch(step)
    rates["one worker"] = examples / (time.perf_counter() - began)
    for name, processes in ((f"{workers} threads", False), (f"{workers} processes", True)):
        dataset_ = StepBatches(batches, 0, examples, workers=workers, use_multiprocessing=processes)
        began = time.perf_counter()
        seen = list(zip(range(examples), _iterate(dataset_)))
        rates[name] = examples / (time.perf_counter() - began)
        same = np.array_equal(seen[0][1][0], first[0])
        if not same:
            raise SystemExit(f"{dataset} {name}: the first batch differs from one worker's")
    return rates


def _iterate(dataset):
    """Items in order, as fit takes them (Keras' ordered enqueuer when workers > 1)."""
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    adapter = PyDatasetAdapter(dataset, shuffle=False)
    try:
        yield from adapter.get_numpy_iterator()
    finally:
        adapter.on_epoch_end()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=6, help="training examples per measurement")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args(argv)
    print(f"{args.examples} examples per way, batch 1, {os.cpu_count()} cores here", flush=True)
    with tempfile.TemporaryDirectory(prefix="input-bench-") as folder:
        for dataset, write in (("cityscapes", write_cityscapes), ("coco", write_coco)):
            root = Path(folder) / dataset
            write(root, args.examples)
            rates = measure(dataset, root, args.examples, args.workers)
            one = rates["one worker"]
            print(f"{dataset}: " + "; ".join(
                f"{name} {rate:.2f} examples/s ({rate / (1 if name == 'one worker' else args.workers):.2f} per core"
                + ("" if name == "one worker" else f", x{rate / one:.2f} one worker's") + ")"
                for name, rate in rates.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
