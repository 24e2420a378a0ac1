"""COCO mask AP against pycocotools' COCOeval (iouType "segm")."""

import contextlib
import io

import numpy as np
import pytest

from evaluation.instance_ap import CocoMaskAP

CATEGORIES = (1, 2, 3)


def random_case(seed, images=4, size=(24, 32)):
    rng = np.random.default_rng(seed)
    h, w = size
    data = []
    for _ in range(images):
        gts, dets = [], []
        for _ in range(rng.integers(1, 6)):
            mask = np.zeros(size, bool)
            y, x = rng.integers(0, h - 4), rng.integers(0, w - 4)
            mask[y:y + rng.integers(3, 12), x:x + rng.integers(3, 14)] = True
            gts.append((mask, int(rng.choice(CATEGORIES)), bool(rng.random() < 0.15)))
        for mask, cat, crowd in gts:
            for _ in range(rng.choice([0, 1, 1, 1, 2])):   # misses, duplicates, jitter
                good = rng.random() < 0.7
                shift = rng.integers(-1, 2, size=2) if good else rng.integers(-3, 4, size=2)
                shifted = np.roll(mask, tuple(shift), axis=(0, 1))
                label = cat if rng.random() < 0.85 else int(rng.choice(CATEGORIES))
                dets.append((shifted, label, float(rng.random() * 0.5 + 0.5 * good)))
        for _ in range(rng.integers(0, 3)):          # false positives
            mask = np.zeros(size, bool)
            y, x = rng.integers(0, h - 4), rng.integers(0, w - 4)
            mask[y:y + 5, x:x + 6] = True
            dets.append((mask, int(rng.choice(CATEGORIES)), float(rng.random())))
        data.append((gts, dets))
    return data


def ours(data):
    metric = CocoMaskAP(CATEGORIES)
    for gts, dets in data:
        metric.update([g[0] for g in gts], [g[1] for g in gts], [g[2] for g in gts],
                      np.array([d[0] for d in dets]).reshape(-1, *gts[0][0].shape),
                      [d[1] for d in dets], [d[2] for d in dets])
    return metric.result()


def pycocotools_ap(data):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def rle(mask):
        return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))

    images, annotations, results = [], [], []
    for image_id, (gts, dets) in enumerate(data, 1):
        h, w = gts[0][0].shape
        images.append({"id": image_id, "height": h, "width": w})
        for mask, cat, crowd in gts:
            encoded = rle(mask)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cat,
                                "segmentation": encoded, "area": float(mask.sum()),
                                "bbox": list(mask_utils.toBbox(encoded)), "iscrowd": int(crowd)})
        for mask, cat, score in dets:
            results.append({"image_id": image_id, "category_id": cat, "segmentation": rle(mask),
                            "score": score})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": annotations,
                      "categories": [{"id": c, "name": str(c)} for c in CATEGORIES]}
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(results) if results else COCO(), "segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats[0], evaluator.stats[1], evaluator.stats[2]


@pytest.mark.parametrize("seed", range(50))
def test_mask_ap_equals_pycocotools(seed):
    data = random_case(seed)
    if not any(dets for _, dets in data):
        pytest.skip("a case without detections: pycocotools cannot load empty results")
    result = ours(data)
    ap, ap50, ap75 = pycocotools_ap(data)
    assert result["ap"] == pytest.approx(ap, abs=1e-4)
    assert result["ap50"] == pytest.approx(ap50, abs=1e-4)
    assert result["ap75"] == pytest.approx(ap75, abs=1e-4)


def test_generated_cases_are_not_trivial():
    # Guards the oracle test: APs vary between cases and are neither 0 nor 1 throughout.
    aps = [ours(random_case(seed))["ap"] for seed in range(50)]
    assert min(aps) < 0.15 and max(aps) > 0.3 and len(set(np.round(aps, 6))) > 40


def test_crowd_match_is_ignored_not_a_false_positive():
    gt = np.zeros((1, 4, 4), bool)
    gt[0, :2, :2] = True
    crowd = np.zeros((1, 4, 4), bool)
    crowd[0, 2:, 2:] = True
    metric = CocoMaskAP([1])
    metric.update(np.concatenate([gt, crowd]), [1, 1], [False, True],
                  np.concatenate([gt, crowd]), [1, 1], [0.9, 0.8])
    assert metric.result()["ap"] == pytest.approx(1.0)
