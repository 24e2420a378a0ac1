"""Random panoptic test cases written in the COCO panoptic on-disk format.

Ground truth: stuff rectangles over the image, thing rectangles with their own segment ids,
crowd regions, and void.  Predictions are edited copies: boundaries shifted (IoU around the
0.5 threshold), segments missed, split, merged, relabelled, and false positives painted on
void and on crowd regions.
"""

import json
from pathlib import Path

import numpy as np
from PIL import Image

THINGS = (1, 2, 3)
STUFF = (4, 5, 6)


def categories(with_stuff: bool = True):
    cats = [{"id": c, "name": f"thing{c}", "isthing": 1} for c in THINGS]
    if with_stuff:
        cats += [{"id": c, "name": f"stuff{c}", "isthing": 0} for c in STUFF]
    return cats


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)


def _rect(rng, h, w, min_size=3):
    y0, x0 = rng.integers(0, h - min_size), rng.integers(0, w - min_size)
    y1, x1 = rng.integers(y0 + min_size, h + 1), rng.integers(x0 + min_size, w + 1)
    return slice(y0, y1), slice(x0, x1)


def ground_truth(rng, h, w, with_stuff=True):
    ids = np.zeros((h, w), np.int64)
    segments = {}
    next_id = int(rng.integers(1, 1000))

    def new(category, crowd=False):
        nonlocal next_id
        next_id += int(rng.integers(1, 50000))
        segments[next_id] = {"category_id": category, "iscrowd": int(crowd)}
        return next_id

    if with_stuff:
        for _ in range(rng.integers(2, 5)):
            ids[_rect(rng, h, w, 6)] = new(int(rng.choice(STUFF)))
    for _ in range(rng.integers(2, 7)):
        ids[_rect(rng, h, w)] = new(int(rng.choice(THINGS)))
    if rng.random() < 0.6:
        ids[_rect(rng, h, w)] = new(int(rng.choice(THINGS)), crowd=True)
    if rng.random() < 0.8:
        ids[_rect(rng, h, w)] = 0  # void
    return ids, segments


def prediction(rng, gt_ids, gt_segments, allowed):
    h, w = gt_ids.shape
    pred = np.zeros_like(gt_ids)
    segments = {}
    next_id = int(rng.integers(1, 1000))

    def new(category):
        nonlocal next_id
        next_id += int(rng.integers(1, 50000))
        segments[next_id] = {"category_id": int(category), "iscrowd": 0}
        return next_id

    gt_list = [g for g in np.unique(gt_ids) if g]
    merged = {}
    for g in gt_list:
        mask = gt_ids == g
        info = gt_segments[g]
        action = rng.choice(["keep", "shift", "miss", "split", "merge", "relabel"],
                            p=[0.3, 0.3, 0.1, 0.1, 0.1, 0.1])
        category = info["category_id"]
        if action == "miss":
            continue
        if action == "relabel":
            category = int(rng.choice(allowed))
        if action == "shift":
            dy, dx = rng.integers(-3, 4, size=2)
            mask = np.roll(mask, (dy, dx), axis=(0, 1))
        if action == "split":
            ys, xs = np.nonzero(mask)
            cut = np.median(xs)
            left = mask & (np.arange(w)[None, :] <= cut)
            pred[left] = new(category)
            pred[mask & ~left] = new(category)
            continue
        if action == "merge" and category in merged:
            pred[mask] = merged[category]
            continue
        pid = new(category)
        merged[category] = pid
        pred[mask] = pid
    for _ in range(rng.integers(0, 3)):  # false positives on void or crowd
        crowd = [g for g, s in gt_segments.items() if s["iscrowd"] and (gt_ids == g).any()]
        target = (gt_ids == rng.choice(crowd)) if crowd and rng.random() < 0.5 else (gt_ids == 0)
        ys, xs = np.nonzero(target)
        if len(ys):
            i = rng.integers(len(ys))
            region = np.zeros_like(target)
            region[max(0, ys[i] - 3):ys[i] + 3, max(0, xs[i] - 3):xs[i] + 3] = True
            category = (gt_segments[gt_ids[ys[i], xs[i]]]["category_id"]
                        if gt_ids[ys[i], xs[i]] and rng.random() < 0.7 else rng.choice(THINGS))
            pred[region] = new(category)
    present = set(np.unique(pred).tolist()) - {0}
    return pred, {k: v for k, v in segments.items() if k in present}


def write_dataset(root: Path, seed: int, images: int = 3, with_stuff: bool = True, size=(24, 32)):
    """Writes gt/ and pred/ folders and JSONs; returns the four paths."""
    rng = np.random.default_rng(seed)
    paths = {}
    for kind in ("gt", "pred"):
        (root / kind).mkdir(parents=True, exist_ok=True)
    gt_ann, pred_ann = [], []
    for i in range(images):
        gt_ids, gt_segments = ground_truth(rng, *size, with_stuff=with_stuff)
        pred_ids, pred_segments = prediction(rng, gt_ids, gt_segments,
                                             THINGS + STUFF if with_stuff else THINGS)
        name = f"img{i:03d}.png"
        Image.fromarray(id_to_rgb(gt_ids)).save(root / "gt" / name)
        Image.fromarray(id_to_rgb(pred_ids)).save(root / "pred" / name)
        gt_ann.append({"image_id": f"img{i}", "file_name": name, "segments_info": [
            dict(id=int(k), area=int((gt_ids == k).sum()), **v) for k, v in gt_segments.items()]})
        pred_ann.append({"image_id": f"img{i}", "file_name": name, "segments_info": [
            dict(id=int(k), **v) for k, v in pred_segments.items()]})
    cats = categories(with_stuff)
    paths["gt_json"] = root / "gt.json"
    paths["pred_json"] = root / "pred.json"
    paths["gt_json"].write_text(json.dumps({"annotations": gt_ann, "categories": cats}))
    paths["pred_json"].write_text(json.dumps({"annotations": pred_ann}))
    paths["gt_folder"], paths["pred_folder"] = root / "gt", root / "pred"
    return paths
