"""mIoU against the official Cityscapes pixel-level evaluator."""

import contextlib
import io

import numpy as np
import pytest
from PIL import Image

from evaluation.semantic import MeanIoU


def cityscapes_oracle(pred_files, gt_files):
    if not hasattr(np, "in1d"):  # removed in numpy 2.4; the script still calls it
        np.in1d = np.isin
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official

    args = official.args
    args.evalInstLevelScore = False
    args.JSONOutput = False
    args.quiet = True
    args.evalPixelAccuracy = False
    with contextlib.redirect_stdout(io.StringIO()):
        result = official.evaluateImgLists(pred_files, gt_files, args)
    return result["averageScoreClasses"], result["classScores"]


@pytest.mark.parametrize("seed", range(50))
def test_miou_equals_the_cityscapes_script(tmp_path, seed):
    from cityscapesscripts.helpers.labels import labels

    rng = np.random.default_rng(seed)
    label_ids = [l.id for l in labels if l.id >= 0]
    train_of = {l.id: (l.trainId if not l.ignoreInEval else 255) for l in labels if l.id >= 0}
    evaluated = sorted({l.trainId for l in labels if not l.ignoreInEval})
    metric = MeanIoU(num_classes=len(evaluated), ignore_label=255)
    pred_files, gt_files = [], []
    for i in range(5):
        gt = rng.choice(label_ids, size=(20, 30))
        noise = rng.random(gt.shape) < 0.35          # 35 % of pixels get a random label
        pred = np.where(noise, rng.choice(label_ids, size=gt.shape), gt)
        if seed % 2:                                 # some classes absent from ground truth
            gt = np.where(np.isin(gt, [7, 8, 26]), 0, gt)
        for array, folder, files in ((gt, "gt", gt_files), (pred, "pred", pred_files)):
            path = tmp_path / folder / f"city_000000_{i:06d}_gtFine_labelIds.png"
            path.parent.mkdir(exist_ok=True)
            Image.fromarray(array.astype(np.uint8)).save(path)
            files.append(str(path))
        to_train = np.vectorize(train_of.get)
        metric.update(to_train(gt), to_train(pred))
    want_mean, want_per_class = cityscapes_oracle(pred_files, gt_files)
    ours = metric.result()
    assert ours["miou"] == pytest.approx(want_mean, abs=1e-4)
    names = {l.trainId: l.name for l in labels if not l.ignoreInEval}
    for train_id, iou in ours["per_class"].items():
        assert iou == pytest.approx(want_per_class[names[train_id]], abs=1e-4)


def test_empty_union_classes_are_left_out_and_ignore_is_ignored():
    metric = MeanIoU(3, ignore_label=255)
    metric.update(np.array([[0, 0, 255, 1]]), np.array([[0, 1, 2, 1]]))
    result = metric.result()
    assert result["per_class"] == {0: 0.5, 1: 0.5}    # class 2 predicted only on ignore: no union
    assert result["miou"] == 0.5 and result["n"] == 2
