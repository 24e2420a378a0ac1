"""Cityscapes-style instance AP (the AP of Tab. 5-8 on Cityscapes), streaming over images.

Cityscapes AP differs from COCO's (evaluation notes): it follows the official script
(cityscapesscripts evalInstanceLevelSemanticLabeling) rule for rule:

- ground truth comes as one id map per image: id >= 1000 is an instance of class
  id // 1000; ids below 1000 are classes without instance (group regions, stuff, void);
- at each overlap threshold 0.50, 0.55, ..., 0.95 (match when IoU > threshold):
  instances under min_region_size pixels and group regions neither count nor are missed;
  a second match of one instance adds a false positive at the lower confidence;
  a prediction overlapping no instance of its class above the threshold is a false
  positive unless more than `threshold` of it lies on void, group regions or small
  instances;
- AP per class and threshold from the script's precision-recall steps; a class with
  ground truth but no prediction anywhere scores 0, a class without ground truth is
  left out (NaN); AP averages classes and thresholds, AP50 the 0.5 threshold.

Streaming: per class and threshold only (true/false, confidence) pairs and the count of
missed instances are kept.
"""

from __future__ import annotations

import numpy as np

OVERLAPS = np.arange(0.5, 1.0, 0.05)
MIN_REGION_SIZE = 100


class CityscapesInstanceAP:
    """Args: thing_labels {label id: name}; void_labels: label ids ignored in evaluation."""

    def __init__(self, thing_labels: dict[int, str], void_labels, min_region_size: int = MIN_REGION_SIZE):
        self.thing_labels = dict(thing_labels)
        self.void_labels = np.asarray(sorted(void_labels))
        self.min_region_size = min_region_size
        shape = (len(self.thing_labels), len(OVERLAPS))
        self.y_true = np.empty(shape, object)
        self.y_score = np.empty(shape, object)
        for index in np.ndindex(shape):
            self.y_true[index], self.y_score[index] = [], []
        self.hard_false_negatives = np.zeros(shape, int)
        self.have_gt = np.zeros(shape, bool)
        self.have_prediction = np.zeros(len(self.thing_labels), bool)

    def update(self, gt_ids: np.ndarray, pred_masks, pred_labels, pred_confidences) -> None:
        """One image: the ground-truth id map and the predicted instances (masks, label ids,
        confidences), in the order the official prediction file would list them."""
        gt_ids = np.asarray(gt_ids)
        void = np.isin(gt_ids, self.void_labels)
        ids, counts = np.unique(gt_ids, return_counts=True)
        gt_pixels = dict(zip(ids.tolist(), counts.tolist()))
        for li, label in enumerate(self.thing_labels):
            # Every ground-truth region of this class: instances and the group region.
            regions = [i for i in gt_pixels if (i // 1000 if i >= 1000 else i) == label]
            predictions = []
            for mask, pred_label, confidence in zip(pred_masks, pred_labels, pred_confidences):
                mask = np.asarray(mask, bool)
                if pred_label != label or not mask.any():
                    continue
                overlaps = {r: int(np.count_nonzero(mask & (gt_ids == r))) for r in regions}
                predictions.append({"pixels": int(mask.sum()), "confidence": float(confidence),
                                    "void": int(np.count_nonzero(mask & void)),
                                    "overlaps": {r: n for r, n in overlaps.items() if n > 0}})
            if predictions:
                self.have_prediction[li] = True
            counted = [r for r in regions if r >= 1000 and gt_pixels[r] >= self.min_region_size]
            for oi, threshold in enumerate(OVERLAPS):
                self._score_image(li, oi, threshold, counted, gt_pixels, predictions)

    def _score_image(self, li, oi, threshold, counted, gt_pixels, predictions):
        def iou(region, prediction):
            inter = prediction["overlaps"].get(region, 0)
            return inter / (gt_pixels[region] + prediction["pixels"] - inter)

        if counted:
            self.have_gt[li, oi] = True
        true, score = [], []
        for region in counted:
            best = None
            for prediction in predictions:
                if region in prediction["overlaps"] and iou(region, prediction) > threshold:
                    if best is None:
                        best = prediction["confidence"]
                    else:  # a duplicate: the lower confidence becomes a false positive
                        true.append(0)
                        score.append(min(best, prediction["confidence"]))
                        best = max(best, prediction["confidence"])
            if best is None:
                self.hard_false_negatives[li, oi] += 1
            else:
                true.append(1)
                score.append(best)
        for prediction in predictions:
            if any(iou(r, prediction) > threshold for r in prediction["overlaps"]):
                continue
            ignored = prediction["void"]
            for region, inter in prediction["overlaps"].items():
                if region < 1000:
                    ignored += inter
                if gt_pixels[region] < self.min_region_size:
                    ignored += inter
            if ignored / prediction["pixels"] <= threshold:
                true.append(0)
                score.append(prediction["confidence"])
        self.y_true[li, oi].extend(true)
        self.y_score[li, oi].extend(score)

    @staticmethod
    def _average_precision(y_true, y_score, hard_false_negatives) -> float:
        order = np.argsort(y_score, kind="mergesort")
        scores, truth = np.asarray(y_score)[order], np.asarray(y_true, float)[order]
        cumulative = np.append(np.cumsum(truth), 0)
        _, first = np.unique(scores, return_index=True)
        n, n_true = len(scores), cumulative[-2] if len(scores) else 0
        precision, recall = np.zeros(len(first) + 1), np.zeros(len(first) + 1)
        for k, index in enumerate(first):
            below = cumulative[index - 1]
            tp = n_true - below
            fp = n - index - tp
            fn = below + hard_false_negatives
            precision[k] = tp / (tp + fp)
            recall[k] = tp / (tp + fn)
        precision[-1], recall[-1] = 1.0, 0.0
        padded = np.concatenate([recall[:1], recall, [0.0]])
        steps = np.convolve(padded, [-0.5, 0, 0.5], "valid")
        return float(np.dot(precision, steps))

    def per_class_threshold(self) -> np.ndarray:
        """(classes, thresholds) AP; NaN where a class has no ground truth."""
        ap = np.full(self.y_true.shape, np.nan)
        for li, oi in np.ndindex(ap.shape):
            if self.have_gt[li, oi] and self.have_prediction[li]:
                ap[li, oi] = self._average_precision(self.y_true[li, oi], self.y_score[li, oi],
                                                     self.hard_false_negatives[li, oi])
            elif self.have_gt[li, oi]:
                ap[li, oi] = 0.0
        return ap

    def result(self) -> dict:
        ap = self.per_class_threshold()
        with np.errstate(invalid="ignore"), _quiet_nan_mean():
            return {
                "ap": _nanmean(ap), "ap50": _nanmean(ap[:, 0]),
                "per_class": {name: _nanmean(ap[li]) for li, name in enumerate(self.thing_labels.values())},
            }


def _nanmean(values) -> float | None:
    values = np.asarray(values, float)
    return float(np.nanmean(values)) if np.isfinite(values).any() else None


class _quiet_nan_mean:
    def __enter__(self):
        import warnings

        self._catcher = warnings.catch_warnings()
        self._catcher.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        self._catcher.__exit__(*exc)
