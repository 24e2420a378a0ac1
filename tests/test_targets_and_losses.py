"""Panoptic-DeepLab targets on hand-made instances, and the losses on hand-computed values."""

import numpy as np
import pytest
from keras import ops

from data.targets import SegmentInfo, panoptic_targets
from training import losses

pytestmark = pytest.mark.jax  # also run under the JAX backend (make test's JAX lane)


def scene():
    ids = np.zeros((20, 30), np.int64)           # 0: void
    ids[:, :] = 5                                 # stuff everywhere ...
    ids[0:2, 0:2] = 0                             # ... except a void corner
    ids[2:7, 3:8] = 11                            # thing, 5 x 5, center (4, 5)
    ids[10:14, 20:30] = 12                        # thing, 4 x 10, center of mass (11.5, 24.5) -> (12, 24)
    ids[15:20, 0:4] = 13                          # crowd thing
    segments = {5: SegmentInfo(3, False), 11: SegmentInfo(1, True), 12: SegmentInfo(2, True),
                13: SegmentInfo(1, True, iscrowd=True)}
    return ids, segments


def test_centers_and_offsets_are_exact():
    ids, segments = scene()
    t = panoptic_targets(ids, segments)
    assert t["center"][4, 5] == 1.0 and t["center"][12, 24] == 1.0
    assert t["center"][4, 6] == pytest.approx(np.exp(-1 / (2 * 64)))
    assert t["offsets"][2, 3].tolist() == [2.0, 2.0]         # top-left pixel of instance 11
    assert t["offsets"][13, 29].tolist() == [-1.0, -5.0]     # bottom-right pixel of instance 12
    assert (t["offsets"][ids == 5] == 0).all()
    assert t["offset_weights"].sum() == 25 + 40


def test_semantic_labels_and_weights():
    ids, segments = scene()
    t = panoptic_targets(ids, segments)
    assert t["semantic"][3, 4] == 1 and t["semantic"][11, 25] == 2 and t["semantic"][10, 0] == 3
    assert t["semantic"][0, 0] == 255 and t["semantic"][16, 1] == 255       # void, crowd
    assert t["semantic_weights"][3, 4] == 3.0                                # small instance
    assert t["semantic_weights"][10, 0] == 1.0 and t["semantic_weights"][16, 1] == 0.0
    assert t["center_weights"][16, 1] == 0.0 and t["center_weights"][10, 0] == 1.0


def reference_targets(ids, segments, ignore_label=255, sigma=8.0, small_instance_area=64 * 64):
    """The definition, one segment at a time over the whole image (what data/targets.py
    computes in one pass, with each Gaussian cut where it rounds to 0 in float32)."""
    height, width = ids.shape
    semantic = np.full(ids.shape, ignore_label, np.int32)
    weights, center = np.zeros(ids.shape, np.float32), np.zeros(ids.shape, np.float32)
    offsets, on_thing = np.zeros((height, width, 2), np.float32), np.zeros(ids.shape, np.float32)
    ys, xs = np.mgrid[:height, :width]
    for segment_id, info in segments.items():
        mask = ids == segment_id
        if not mask.any() or info.iscrowd:
            continue
        semantic[mask] = info.category_id
        weights[mask] = 3.0 if info.is_thing and mask.sum() < small_instance_area else 1.0
        if info.is_thing:
            cy, cx = np.round(ys[mask].mean()), np.round(xs[mask].mean())
            gaussian = np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * sigma**2)).astype(np.float32)
            np.maximum(center, gaussian, out=center)
            offsets[mask] = np.stack([cy - ys[mask], cx - xs[mask]], -1)
            on_thing[mask] = 1.0
    return {"semantic": semantic, "semantic_weights": weights, "center": center,
            "center_weights": (semantic != ignore_label).astype(np.float32), "offsets": offsets,
            "offset_weights": on_thing}


@pytest.mark.parametrize("sigma", [8.0, 1.5])
def test_targets_equal_their_definition_bit_for_bit(sigma):
    rng = np.random.default_rng(int(sigma))
    for trial in range(20):
        height, width = ((301, 297), (40, 63))[trial % 2]
        ids = np.zeros((height, width), np.int64)
        for k in range(1, 9):  # overlapping boxes: later ones cover earlier ones
            top, left = rng.integers(0, height), rng.integers(0, width)
            ids[top:top + rng.integers(1, height), left:left + rng.integers(1, width)] = 1000 + 7 * k
        segments = {1000 + 7 * k: SegmentInfo(int(rng.integers(0, 4)), bool(rng.random() < 0.6), bool(rng.random() < 0.1))
                    for k in range(1, 11) if rng.random() < 0.9}  # some listed ids are absent, some drawn unlisted
        got = panoptic_targets(ids, segments, sigma=sigma, small_instance_area=900)
        want = reference_targets(ids, segments, sigma=sigma, small_instance_area=900)
        for key in want:
            assert got[key].dtype == want[key].dtype and np.array_equal(got[key], want[key]), (trial, key)
    assert panoptic_targets(ids, {})["semantic"].max() == 255  # nothing listed: all void
    for sigma in (0.0, -8.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="center sigma must be a positive number"):
            panoptic_targets(ids, segments, sigma=sigma)


def test_bootstrapped_cross_entropy_keeps_the_hardest_pixels():
    labels = np.array([[0, 1, 1, 255]])
    logits = np.array([[[5.0, 0.0], [0.0, 1.0], [2.0, 0.0], [9.0, 0.0]]], "float32")
    weights = np.array([[1.0, 1.0, 3.0, 1.0]], "float32")
    ce = [np.log1p(np.exp(-5.0)), np.log1p(np.exp(-1.0)), 3 * np.log1p(np.exp(2.0)), 0.0]
    full = float(losses.bootstrapped_cross_entropy(labels, logits, weights, top_k_fraction=1.0))
    assert full == pytest.approx(np.mean(ce), rel=1e-5)
    hardest = float(losses.bootstrapped_cross_entropy(labels, logits, weights, top_k_fraction=0.25))
    assert hardest == pytest.approx(max(ce), rel=1e-5)


def test_center_and_offset_losses():
    target = np.zeros((1, 2, 2), "float32")
    prediction = np.full((1, 2, 2, 1), 0.5, "float32")
    weights = np.array([[[1.0, 1.0], [0.0, 1.0]]], "float32")
    assert float(losses.center_loss(target, prediction, weights)) == pytest.approx(0.25 * 3 / 4)
    offsets = np.zeros((1, 2, 2, 2), "float32")
    predicted = np.ones((1, 2, 2, 2), "float32")
    assert float(losses.offset_loss(offsets, predicted, weights)) == pytest.approx(2.0)
    total = losses.panoptic_loss(
        {"semantic": np.zeros((1, 2, 2), "int32"), "semantic_weights": np.ones((1, 2, 2), "float32"),
         "center": target, "center_weights": weights, "offsets": offsets, "offset_weights": weights},
        {"semantic": ops.convert_to_tensor(np.zeros((1, 2, 2, 3), "float32")), "center": prediction,
         "offset": predicted})
    assert float(total["total"]) == pytest.approx(np.log(3) + 200 * 0.1875 + 0.01 * 2.0, rel=1e-5)


def test_the_loss_upsampling_is_tensorflows_align_corners_resize():
    # The heads are upsampled to the crop with aligned corners, as [18] does with
    # tf.compat.v1.image.resize_bilinear(align_corners=True); here as two interpolation matrices.
    rng = np.random.default_rng(0)
    heads = rng.normal(size=(2, 9, 17, 3)).astype("float32")
    up = np.asarray(losses.resize_align_corners(heads, (33, 65)))
    # Corners coincide; every output is a convex combination of its 2 x 2 input neighbours.
    np.testing.assert_allclose(up[:, [0, -1]][:, :, [0, -1]], heads[:, [0, -1]][:, :, [0, -1]], atol=1e-6)
    np.testing.assert_allclose(up[:, ::4, ::4], heads, atol=1e-5)  # (33 - 1) / (9 - 1) = 4: on the grid
    middle = 0.25 * (heads[:, :1, :1] + heads[:, 1:2, :1] + heads[:, :1, 1:2] + heads[:, 1:2, 1:2])
    np.testing.assert_allclose(up[:, 2:3, 2:3], middle, atol=1e-5)
