"""Panoptic-DeepLab post-processing on hand-made heads with known answers."""

import numpy as np
import pytest

from evaluation.postprocess import (PostProcessConfig, find_centers, group_pixels,
                                    merge_semantic_and_instances, panoptic_prediction)

CONFIG = PostProcessConfig(thing_classes=(1, 2), stuff_area=20, label_divisor=1000, nms_kernel=3)


def offsets_to(center_of_pixel):
    """Offsets (H, W, 2) pointing every pixel exactly at the center given for it."""
    h, w = center_of_pixel.shape[:2]
    ys, xs = np.mgrid[:h, :w]
    return (center_of_pixel - np.stack([ys, xs], -1)).astype("float32")


def test_two_centers_split_the_things():
    h, w = 6, 12
    heat = np.zeros((h, w), "float32")
    heat[2, 2], heat[2, 9] = 0.9, 0.8
    logits = np.zeros((h, w, 3), "float32")
    logits[..., 1] = 1.0                     # everything is thing class 1
    target = np.zeros((h, w, 2))
    target[:, :6] = (2, 2)
    target[:, 6:] = (2, 9)
    out = panoptic_prediction(logits, heat, offsets_to(target), CONFIG)
    assert (out[:, :6] == 1001).all() and (out[:, 6:] == 1002).all()


def test_center_below_threshold_is_dropped_and_things_become_void():
    heat = np.full((5, 5), 0.05, "float32")
    logits = np.zeros((5, 5, 3), "float32")
    logits[..., 2] = 1.0
    out = panoptic_prediction(logits, heat, np.zeros((5, 5, 2), "float32"), CONFIG)
    assert (out == 255 * 1000).all()
    assert find_centers(heat, 0.1, 3, 200).shape[0] == 0


def test_nms_keeps_the_local_maximum_and_ties():
    heat = np.zeros((5, 9), "float32")
    heat[2, 1], heat[2, 2] = 0.5, 0.7        # neighbours: only the larger survives
    heat[2, 6], heat[2, 7] = 0.6, 0.6        # a tie: both equal the neighbourhood maximum
    centers = find_centers(heat, 0.1, 3, 200).tolist()
    assert centers == [[2, 2], [2, 6], [2, 7]]
    assert find_centers(heat, 0.1, 3, 2).tolist() == [[2, 2], [2, 6]]  # top-k


def test_equidistant_pixel_joins_the_first_ranked_center():
    centers = np.array([[0, 4], [0, 0]], "int32")   # ranked: (0, 4) first
    ids = group_pixels(centers, np.zeros((1, 5, 2), "float32"))
    assert ids.tolist() == [[2, 2, 1, 1, 1]]        # x = 2 is equidistant: joins center 1


def test_majority_vote_and_stuff_area_limit():
    semantic = np.zeros((6, 10), "int32")           # class 0: stuff, 40 px >= 20
    semantic[:, 8:] = 3                              # class 3: stuff, 12 px < 20 -> void
    semantic[0:2, 0:5] = 1                           # instance: 6 px of class 1 ...
    semantic[0:2, 3:5] = 2                           # ... and 4 px of class 2
    instances = np.zeros_like(semantic)
    instances[0:2, 0:5] = 1
    out = merge_semantic_and_instances(semantic, instances, 4, CONFIG)
    assert (out[0:2, 0:5] == 1001).all()             # majority: class 1
    assert (out[:, 8:] == 255 * 1000).all()          # small stuff region: void
    assert (out[2:, :8] == 0).all()                  # stuff class 0, instance 0


def test_instances_are_scored_by_center_and_class_probability():
    h, w = 6, 12
    heat = np.zeros((h, w), "float32")
    heat[2, 2], heat[2, 9] = 0.9, 0.8
    logits = np.zeros((h, w, 3), "float32")
    logits[..., 1] = 2.0
    target = np.zeros((h, w, 2))
    target[:, :6] = (2, 2)
    target[:, 6:] = (2, 9)
    panoptic = panoptic_prediction(logits, heat, offsets_to(target), CONFIG)
    from evaluation.postprocess import instance_predictions

    found = instance_predictions(panoptic, logits, heat, CONFIG)
    p1 = np.exp(2.0) / (np.exp(2.0) + 2)
    assert [(m.sum(), c) for m, c, _ in found] == [(36, 1), (36, 1)]
    assert [s for _, _, s in found] == pytest.approx([0.9 * p1, 0.8 * p1])


def test_instances_are_numbered_within_their_class_so_a_small_divisor_never_spills():
    """COCO's label divisor is 256 and top-k 400: 300 instances of one class stay that class."""
    semantic = np.ones((20, 30), np.int64)          # class 1 (thing) everywhere ...
    semantic[:, 15:] = 2                            # ... and class 2 (thing) on the right
    instances = np.arange(1, 601).reshape(20, 30)   # 600 one-pixel instances, 300 per class
    config = PostProcessConfig(thing_classes=(1, 2), label_divisor=256, stuff_area=0)
    panoptic = merge_semantic_and_instances(semantic, instances, 3, config)
    kept = panoptic[panoptic // 256 != config.void_class]
    assert set((kept // 256).tolist()) == {1, 2}
    assert ((panoptic // 256 == semantic) | (panoptic // 256 == config.void_class)).all()  # never spilled
    for cls in (1, 2):
        numbers = sorted((kept[kept // 256 == cls] % 256).tolist())
        assert numbers == list(range(1, 256))       # 1..255 within the class; the rest void
