"""The COCO-panoptic reader on tiny fixtures in each dataset's on-disk layout."""

import json

import numpy as np
import pytest
from PIL import Image

from data import coco_panoptic
from data.coco_panoptic import DatasetError

CATEGORIES = [{"id": 1, "name": "person", "isthing": 1}, {"id": 7, "name": "road", "isthing": 0}]


def write_fixture(root, dataset="coco", split="val", images=2, scale=1):
    """`images` 12 x 16 scenes (x `scale` per side) of road, two people and a crowd, in the
    dataset's on-disk layout under `root`."""
    folder = coco_panoptic.SPLIT_FOLDERS.get(dataset, {}).get(split, split)
    json_rel, png_rel, image_rel = (p.format(split=folder) for p in coco_panoptic.LAYOUTS[dataset])
    (root / png_rel).mkdir(parents=True)
    (root / image_rel).mkdir(parents=True, exist_ok=True)
    anns, imgs = [], []
    for i in range(images):
        ids = np.full((12, 16), 100, np.int64)          # road
        ids[2:6, 2:6] = 201                             # person instance
        ids[7:11, 9:14] = 202                           # person instance
        ids[0, :] = 0                                   # void row
        ids[8:12, 0:3] = 300                            # crowd of person
        ids = np.kron(ids, np.ones((scale, scale), np.int64))
        rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
        stem = f"city_{i:06d}_000019" if dataset == "cityscapes" else f"{i:012d}"
        name = f"{stem}_leftImg8bit.png" if dataset == "cityscapes" else f"{stem}.jpg"
        Image.fromarray(rgb).save(root / png_rel / f"{stem}.png")
        image_dir = root / image_rel / ("city" if dataset == "cityscapes" else "")
        image_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((12 * scale, 16 * scale, 3), 40 * i, np.uint8)).save(image_dir / name)
        imgs.append({"id": stem, "file_name": name, "height": 12 * scale, "width": 16 * scale})
        anns.append({"image_id": stem, "file_name": f"{stem}.png", "segments_info": [
            {"id": 100, "category_id": 7, "iscrowd": 0}, {"id": 201, "category_id": 1, "iscrowd": 0},
            {"id": 202, "category_id": 1, "iscrowd": 0}, {"id": 300, "category_id": 1, "iscrowd": 1}]})
    (root / json_rel).parent.mkdir(parents=True, exist_ok=True)
    (root / json_rel).write_text(json.dumps({"images": imgs, "annotations": anns, "categories": CATEGORIES}))
    return root


def write_cityscapes(root, split="val", images=2, scale=1):
    """Cityscapes as distributed (gtFine/<split>/<city>/*_instanceIds.png, leftImg8bit/...),
    turned into the panoptic layout by cityscapesScripts' own csCreatePanopticImgs: road (label
    id 7), two cars (26 * 1000 + k), a crowd of people (24, no instance id), void (0)."""
    from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic

    for i in range(images):
        ids = np.full((12, 16), 7, np.uint16)  # 16-bit PNGs, as Cityscapes ships them
        ids[2:6, 2:6] = 26000
        ids[7:11, 9:14] = 26001
        ids[8:12, 0:3] = 24
        ids[0, :] = 0
        ids = np.kron(ids, np.ones((scale, scale), np.uint16))
        stem = f"city_{i:06d}_000019"
        for folder, name, array in (("gtFine", f"{stem}_gtFine_instanceIds.png", ids),
                                    ("leftImg8bit", f"{stem}_leftImg8bit.png",
                                     np.full((*ids.shape, 3), 40 * i + 20, np.uint8))):
            (root / folder / split / "city").mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(root / folder / split / "city" / name)
    convert2panoptic(str(root / "gtFine"), str(root / "gtFine"), setNames=[split])
    return root


def test_the_official_cityscapes_converter_output_reads_as_written(tmp_path, capsys):
    root = write_cityscapes(tmp_path, "val", images=2, scale=2)
    records, categories = coco_panoptic.records(root, "cityscapes", "val")
    assert len(records) == 2 and len(categories) == 19 and categories[26]["isthing"] and not categories[7]["isthing"]
    example = coco_panoptic.load_example(records[1])
    assert (example["image"] == 60).all() and example["image"].shape == (24, 32, 3)
    assert example["semantic"][5, 5] == 26 and example["semantic"][10, 30] == 7 and example["semantic"][0, 0] == 255
    assert sorted(np.unique(example["instance"]).tolist()) == [0, 1, 2] and example["semantic"][20, 1] == 24
    assert example["instance"][20, 1] == 0  # people without instance ids: a crowd region


@pytest.mark.parametrize("dataset", ["coco", "cityscapes", "mapillary"])
def test_reader_yields_images_classes_and_instances(tmp_path, dataset):
    root = write_fixture(tmp_path, dataset)
    examples = list(coco_panoptic.panoptic_dataset(root, dataset, "val").as_numpy_iterator())
    assert len(examples) == 2
    image, semantic, instance, crowd = examples[1]
    assert image.shape == (12, 16, 3) and (image == 40).all()
    assert semantic[3, 3] == 1 and semantic[5, 15] == 7 and semantic[0, 5] == 255
    assert sorted(np.unique(instance).tolist()) == [0, 1, 2]
    assert instance[3, 3] != instance[8, 10] and instance[5, 15] == 0
    assert crowd[9, 1] and not crowd[3, 3] and instance[9, 1] == 0


def _break(root, how):
    png = next((root / "annotations/panoptic_val2017").glob("*.png"))
    if how == "missing folder":
        return root / "nowhere", "dataset folder not found"
    if how == "missing png":
        png.unlink()
        return root, png.name
    if how == "wrong segment ids":
        ids = np.full((12, 16), 999, np.int64)
        Image.fromarray(np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)).save(png)
        return root, "segment ids [999]"
    if how == "truncated image":
        jpg = next((root / "val2017").glob("*.jpg"))
        jpg.write_bytes(jpg.read_bytes()[:30])
        return root, jpg.name
    if how == "missing json":
        (root / "annotations/panoptic_val2017.json").unlink()
        return root, "expected the layout annotations/panoptic_val2017.json"
    raise ValueError(how)


@pytest.mark.parametrize("how", ["missing folder", "missing png", "wrong segment ids", "truncated image",
                                 "missing json"])
def test_broken_inputs_give_clear_errors(tmp_path, how):
    root, expected = _break(write_fixture(tmp_path), how)
    with pytest.raises(DatasetError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        for record in coco_panoptic.records(root, "coco", "val")[0]:
            coco_panoptic.load_example(record)


@pytest.mark.parametrize("annotations,message", [
    (["not an object", 3], "'annotations' must be a list of objects"),
    ({"a": 1}, "'annotations' must be a list of objects"),
    ([], "lists no annotations: the val split has no images to read"),
    ([{"image_id": "x", "file_name": "x.png", "segments_info": ["not an object"]}],
     "annotation of image 'x' is malformed"),
])
def test_malformed_or_empty_annotations_are_dataset_errors(tmp_path, annotations, message):
    # Issue #10, item 8: non-objects raised AttributeError; an empty list passed silently.
    write_fixture(tmp_path)
    json_path = tmp_path / coco_panoptic.LAYOUTS["coco"][0].format(split="val")
    data = json.loads(json_path.read_text())
    data["annotations"] = annotations
    json_path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=message):
        coco_panoptic.records(tmp_path, "coco", "val")
