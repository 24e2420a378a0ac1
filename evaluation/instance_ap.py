"""COCO-style mask AP (the AP of Tab. 4-8 on COCO's definition), streaming over images.

The rules of COCO's reference evaluation (pycocotools COCOeval, iouType "segm", area range
"all", at most 100 detections per image):

- per image and category, detections are taken by decreasing score (the first 100);
- IoU with a crowd ground truth is the intersection over the detection's area;
- at each IoU threshold 0.50, 0.55, ..., 0.95 each detection greedily takes the best
  still-free ground truth with IoU >= threshold, non-crowd first; a detection matched
  to a crowd region is ignored; crowd regions are never missed;
- per category, detections of all images are ranked by score (stable), precision is
  made monotone and read at 101 recall points; AP averages categories with at least
  one non-crowd ground truth, and thresholds.

Streaming: `update` keeps per detection only its score and match flags, not its mask.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def mask_iou(detections: np.ndarray, ground_truths: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """(D, G) IoU of boolean masks (D, H, W) and (G, H, W); crowd columns use the detection area."""
    d = detections.reshape(len(detections), -1).astype(np.float64)
    g = ground_truths.reshape(len(ground_truths), -1).astype(np.float64)
    intersection = d @ g.T
    d_area, g_area = d.sum(1)[:, None], g.sum(1)[None, :]
    union = np.where(crowd[None, :], d_area, d_area + g_area - intersection)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, intersection / union, 0.0)


class CocoMaskAP:
    def __init__(self, category_ids, max_detections: int = 100):
        self.category_ids = list(category_ids)
        self.max_detections = max_detections
        self.scores = defaultdict(list)      # category -> [score]
        self.matched = defaultdict(list)     # category -> [(T,) bool]
        self.ignored = defaultdict(list)     # category -> [(T,) bool]
        self.ground_truths = defaultdict(int)  # category -> non-crowd count

    def update(self, gt_masks, gt_categories, gt_crowd, det_masks, det_categories, det_scores) -> None:
        """One image: ground-truth masks (G, H, W) with categories and crowd flags, detections
        (D, H, W) with categories and scores."""
        gt_masks, det_masks = np.asarray(gt_masks, bool), np.asarray(det_masks, bool)
        gt_categories, gt_crowd = np.asarray(gt_categories), np.asarray(gt_crowd, bool)
        det_categories, det_scores = np.asarray(det_categories), np.asarray(det_scores, float)
        for category in self.category_ids:
            g = np.flatnonzero(gt_categories == category)
            g = g[np.argsort(gt_crowd[g], kind="mergesort")]  # non-crowd first
            d = np.flatnonzero(det_categories == category)
            d = d[np.argsort(-det_scores[d], kind="mergesort")][: self.max_detections]
            crowd = gt_crowd[g]
            self.ground_truths[category] += int((~crowd).sum())
            if len(d) == 0:
                continue
            ious = mask_iou(det_masks[d], gt_masks[g], crowd) if len(g) else np.zeros((len(d), 0))
            matched = np.zeros((len(IOU_THRESHOLDS), len(d)), bool)
            ignored = np.zeros_like(matched)
            for t, threshold in enumerate(IOU_THRESHOLDS):
                taken = np.zeros(len(g), bool)
                for i in range(len(d)):
                    best, best_iou = -1, min(threshold, 1 - 1e-10)
                    for j in range(len(g)):
                        if taken[j] and not crowd[j]:
                            continue
                        if best > -1 and not crowd[best] and crowd[j]:
                            break  # matched a real instance: crowd regions come after
                        if ious[i, j] < best_iou:
                            continue
                        best, best_iou = j, ious[i, j]
                    if best == -1:
                        continue
                    matched[t, i] = True
                    ignored[t, i] = crowd[best]
                    taken[best] = True
            self.scores[category].extend(det_scores[d].tolist())
            self.matched[category].extend(matched.T)
            self.ignored[category].extend(ignored.T)

    def precision(self) -> dict[int, np.ndarray]:
        """Per category with ground truth: (T, 101) interpolated precision."""
        out = {}
        for category in self.category_ids:
            if self.ground_truths[category] == 0:
                continue
            curve = np.zeros((len(IOU_THRESHOLDS), len(RECALL_POINTS)))
            scores = np.asarray(self.scores[category])
            if len(scores):
                order = np.argsort(-scores, kind="mergesort")
                matched = np.asarray(self.matched[category])[order].T
                ignored = np.asarray(self.ignored[category])[order].T
                tp = np.cumsum(matched & ~ignored, axis=1)
                fp = np.cumsum(~matched & ~ignored, axis=1)
                for t in range(len(IOU_THRESHOLDS)):
                    recall = tp[t] / self.ground_truths[category]
                    prec = tp[t] / (tp[t] + fp[t] + np.spacing(1))
                    prec = np.maximum.accumulate(prec[::-1])[::-1]
                    at = np.searchsorted(recall, RECALL_POINTS, side="left")
                    valid = at < len(prec)
                    curve[t, valid] = prec[at[valid]]
            out[category] = curve
        return out

    def result(self) -> dict:
        curves = self.precision()
        if not curves:
            return {"ap": None, "ap50": None, "ap75": None, "per_class": {}, "n": 0}
        stack = np.stack(list(curves.values()))  # (K, T, R)
        return {"ap": float(stack.mean()), "ap50": float(stack[:, 0].mean()),
                "ap75": float(stack[:, 5].mean()),
                "per_class": {c: float(v.mean()) for c, v in curves.items()}, "n": len(curves)}
