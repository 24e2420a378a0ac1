"""The panoptic proxy: exact ground truth at any resolution, real pixels, readable by the real reader."""

import numpy as np
from PIL import Image

from data import coco_panoptic, proxy


def scene(seed=0):
    return proxy.sample_scene(np.random.default_rng(seed))


def test_render_is_deterministic_and_consistent():
    s = scene()
    image, ids, segments = proxy.render(s, 64, 96)
    again = proxy.render(s, 64, 96)
    assert (again[0] == image).all() and (again[1] == ids).all()
    assert image.shape == (64, 96, 3) and image.dtype == np.uint8
    assert set(np.unique(ids).tolist()) - {0} == set(segments)
    things = [k for k, v in segments.items() if v["category_id"] in proxy.THINGS]
    assert things and all(segments[k]["category_id"] in proxy.THINGS for k in things)


def test_same_scene_at_two_resolutions_agrees():
    for seed in range(5):
        s = scene(seed)
        _, low, seg_low = proxy.render(s, 64, 96)
        _, high, seg_high = proxy.render(s, 256, 384)
        assert {k for k in seg_high if k >= 1000} >= {k for k in seg_low if k >= 1000}
        down = high[2::4, 2::4]                      # centres of the 4 x 4 blocks
        assert (down == low).mean() > 0.9
        for k in seg_low:
            assert abs((low == k).mean() - (high == k).mean()) < 0.02


def test_stuff_pixels_are_real_texture_samples():
    s = scene(3)
    image, ids, segments = proxy.render(s, 128, 192)
    stuff_id = next(k for k, v in segments.items() if v["category_id"] in proxy.STUFF)
    category = segments[stuff_id]["category_id"]
    region = s.stuff.index(category)  # the first region of that class (one segment per class)
    mask = ids == stuff_id
    tint = s.stuff_tints[region]
    channel = int(np.argmax(tint))
    values = image[..., channel][mask].astype(float)
    assert values.std() > 5                          # textured, not flat
    texture = proxy.textures()[category]
    assert values.max() <= 255 * max(t[channel] for c, t in zip(s.stuff, s.stuff_tints) if c == category) + 1
    assert np.percentile(values, 50) > 0.1 * np.percentile(texture, 50)


def test_written_proxy_is_read_by_the_coco_panoptic_reader(tmp_path):
    proxy.write_dataset(tmp_path, "val", count=3, size=(65, 97), seed=1)
    records, categories = coco_panoptic.records(tmp_path, "coco", "val")
    assert len(records) == 3 and set(categories) == set(proxy.STUFF) | set(proxy.THINGS)
    example = coco_panoptic.load_example(records[0])
    assert example["image"].shape == (65, 97, 3)
    assert example["instance"].max() >= 1
    assert set(np.unique(example["semantic"]).tolist()) <= set(categories) | {255}
    assert (np.array(Image.open(records[0].image_path)) == example["image"]).all()
