"""Mean IoU, the paper's mIoU column (Tab. 4-8), streaming over images.

One confusion matrix of ground-truth class by predicted class, with an extra column for
predictions outside the evaluated classes.  Ground-truth pixels with the ignore label are
left out; a prediction outside the evaluated classes counts as a miss of the ground-truth
class (as the Cityscapes script treats predictions of its ignored labels).  Per class
IoU = TP / (TP + FP + FN); classes with an empty union are left out of the mean.
"""

from __future__ import annotations

import numpy as np


class MeanIoU:
    def __init__(self, num_classes: int, ignore_label: int = 255):
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        # Rows: ground truth; columns: prediction, the last one for "any other prediction".
        self.confusion = np.zeros((num_classes, num_classes + 1), np.int64)

    def update(self, ground_truth: np.ndarray, prediction: np.ndarray) -> None:
        if ground_truth.shape != prediction.shape:
            raise ValueError(f"ground truth {ground_truth.shape} and prediction {prediction.shape} differ")
        gt = np.asarray(ground_truth, np.int64).ravel()
        pred = np.asarray(prediction, np.int64).ravel()
        valid = gt != self.ignore_label
        if ((gt[valid] < 0) | (gt[valid] >= self.num_classes)).any():
            raise ValueError(f"ground truth has labels outside 0..{self.num_classes - 1} and "
                             f"the ignore label {self.ignore_label}")
        gt, pred = gt[valid], pred[valid]
        pred = np.where((pred >= 0) & (pred < self.num_classes), pred, self.num_classes)
        self.confusion += np.bincount(gt * (self.num_classes + 1) + pred,
                                      minlength=self.confusion.size).reshape(self.confusion.shape)

    def per_class_iou(self) -> np.ndarray:
        tp = np.diag(self.confusion[:, : self.num_classes]).astype(float)
        fn = self.confusion.sum(axis=1) - tp
        fp = self.confusion[:, : self.num_classes].sum(axis=0) - tp
        union = tp + fp + fn
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    def result(self) -> dict:
        iou = self.per_class_iou()
        valid = ~np.isnan(iou)
        return {"miou": float(iou[valid].mean()) if valid.any() else None,
                "per_class": {int(c): float(iou[c]) for c in np.flatnonzero(valid)},
                "n": int(valid.sum())}
