"""Panoptic Quality (Kirillov et al. [44]), the paper's PQ, PQ^Th and PQ^St columns.

Same rules as the official COCO panopticapi (Cityscapes' script is a copy of it):

- a predicted and a ground-truth segment match when they have the same category and
  IoU > 0.5, where the union leaves out the part of the prediction lying on void (id 0);
- ground-truth crowd segments (iscrowd = 1) are never matched and never false negatives;
- an unmatched prediction is not a false positive when more than half of it lies on void
  plus the crowd region of its own category;
- per class PQ = sum IoU / (TP + FP/2 + FN/2), SQ = sum IoU / TP, RQ = TP / (TP + FP/2 + FN/2);
  classes with TP + FP + FN = 0 are skipped; All, Things and Stuff average the rest equally.

Two rules that follow from the official code rather than the definition, kept so the numbers
are the official ones (the paper's are official-script numbers):

- a ground-truth segment's area is its JSON `area` when given (the official code never counts
  ground-truth pixels), so a JSON area that disagrees with the PNG changes IoU;
- a ground-truth PNG id absent from the JSON is skipped: it matches nothing and is not void,
  so a prediction lying on it can still be a false positive.

Streaming: `update` takes one image at a time and keeps only per-class sums, so memory does
not grow with the dataset.  A split with no class to average (e.g. no stuff classes) gives
`n = 0` and `None` for its scores instead of the official code's division by zero.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

VOID = 0
_OFFSET = 2**32  # pairs (gt id, pred id) packed into one uint64


@dataclass
class Segment:
    """A described segment; `area` (ground truth only) is the JSON's, else the map's count."""

    category_id: int
    iscrowd: bool = False
    area: int | None = None


@dataclass
class ClassStats:
    iou: float = 0.0
    tp: int = 0
    fp: int = 0
    fn: int = 0


class PanopticQuality:
    """Accumulates PQ statistics over images.

    Args:
        categories: {category id: is thing} for every evaluated category.
    """

    def __init__(self, categories: dict[int, bool]):
        self.categories = dict(categories)
        self.stats: dict[int, ClassStats] = defaultdict(ClassStats)

    def update(self, gt_ids: np.ndarray, gt_segments: dict[int, Segment],
               pred_ids: np.ndarray, pred_segments: dict[int, Segment]) -> None:
        """Adds one image: segment-id maps (0 = void) and their segment descriptions.

        Prediction areas come from the map; ground-truth areas from `Segment.area` where
        given.  Every prediction id other than 0 must be described and every described
        prediction must appear in its map (as the official script requires); undescribed
        ground-truth ids are skipped, and a described ground-truth segment with no pixels
        counts as missed, as officially.
        """
        if gt_ids.shape != pred_ids.shape:
            raise ValueError(f"ground truth {gt_ids.shape} and prediction {pred_ids.shape} differ in size")
        pred_present = set(np.unique(pred_ids).tolist()) - {VOID}
        missing = pred_present - set(pred_segments)
        if missing:
            raise ValueError(f"prediction segment ids {sorted(missing)} appear in the map but are not described")
        for name, ids, segments in (("ground truth", gt_ids, gt_segments), ("prediction", pred_ids, pred_segments)):
            present = set(np.unique(ids).tolist()) - {VOID}
            unknown = {s.category_id for i, s in segments.items() if i in present} - set(self.categories)
            if unknown:
                raise ValueError(f"{name} uses unknown category ids {sorted(unknown)}")
        absent = set(pred_segments) - pred_present
        if absent:
            raise ValueError(f"prediction segment ids {sorted(absent)} are described but not in the map")
        pairs, counts = np.unique(gt_ids.astype(np.uint64) * _OFFSET + pred_ids.astype(np.uint64),
                                  return_counts=True)
        overlap = {(int(p // _OFFSET), int(p % _OFFSET)): int(c) for p, c in zip(pairs, counts)}
        gt_area, pred_area = defaultdict(int), defaultdict(int)
        for (g, p), c in overlap.items():
            gt_area[g] += c
            pred_area[p] += c
        for g, gt in gt_segments.items():
            if gt.area is not None:
                gt_area[g] = gt.area

        gt_matched, pred_matched = set(), set()
        for (g, p), intersection in overlap.items():
            if g == VOID or p == VOID or g not in gt_segments or p not in pred_segments:
                continue
            gt, pred = gt_segments[g], pred_segments[p]
            if gt.iscrowd or gt.category_id != pred.category_id:
                continue
            union = pred_area[p] + gt_area[g] - intersection - overlap.get((VOID, p), 0)
            iou = intersection / union
            if iou > 0.5:
                stats = self.stats[gt.category_id]
                stats.tp += 1
                stats.iou += iou
                gt_matched.add(g)
                pred_matched.add(p)

        crowd_of_category = {}
        for g, gt in gt_segments.items():
            if g in gt_matched:
                continue
            if gt.iscrowd:
                # Like the official code, one crowd region per category (the last listed).
                crowd_of_category[gt.category_id] = g
            else:
                self.stats[gt.category_id].fn += 1
        for p, pred in pred_segments.items():
            if p in pred_matched:
                continue
            ignored = overlap.get((VOID, p), 0)
            if pred.category_id in crowd_of_category:
                ignored += overlap.get((crowd_of_category[pred.category_id], p), 0)
            if ignored / pred_area[p] > 0.5:
                continue
            self.stats[pred.category_id].fp += 1

    def per_class(self) -> dict[int, dict]:
        out = {}
        for cat in self.categories:
            s = self.stats.get(cat, ClassStats())
            if s.tp + s.fp + s.fn == 0:
                continue
            denominator = s.tp + 0.5 * s.fp + 0.5 * s.fn
            out[cat] = {"pq": s.iou / denominator, "sq": s.iou / s.tp if s.tp else 0.0,
                        "rq": s.tp / denominator, "tp": s.tp, "fp": s.fp, "fn": s.fn}
        return out

    def result(self) -> dict:
        """{"All" | "Things" | "Stuff": {"pq", "sq", "rq", "n"}, "per_class": {...}}."""
        per_class = self.per_class()
        out = {}
        for split, wanted in (("All", None), ("Things", True), ("Stuff", False)):
            chosen = [c for c in per_class if wanted is None or self.categories[c] == wanted]
            if not chosen:
                out[split] = {"pq": None, "sq": None, "rq": None, "n": 0}
                continue
            out[split] = {k: float(np.mean([per_class[c][k] for c in chosen])) for k in ("pq", "sq", "rq")}
            out[split]["n"] = len(chosen)
        out["per_class"] = per_class
        return out
