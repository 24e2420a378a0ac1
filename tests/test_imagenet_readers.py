"""The ImageNet readers (Tab. 1 / Tab. 9) on tiny fixtures in both on-disk layouts: a
class-per-folder tree, and the official ILSVRC2012 archives prepared by tensorflow-datasets
with the network cut off."""

import io
import re
import socket
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from data import imagenet
from data.coco_panoptic import DatasetError


def image_bytes(array, fmt="JPEG"):
    out = io.BytesIO()
    Image.fromarray(array).save(out, fmt)
    return out.getvalue()


def constant(value, shape=(10, 12)):
    return np.full((*shape, 3), value, np.uint8)


def write_tree(root):
    """train: ant (2 JPEGs), bee (1 grayscale PNG), cat (1 JPEG and a stray text file);
    val: one image per class.  Classes are made out of order to check the sorting."""
    files = {
        "train/cat/c0.jpeg": image_bytes(constant(100)),
        "train/cat/notes.txt": b"not an image, not counted",
        "train/ant/a1.JPEG": image_bytes(constant(20)),
        "train/ant/a0.jpg": image_bytes(constant(10)),
        "train/bee/b0.png": image_bytes(np.full((7, 5), 200, np.uint8), "PNG"),
        "val/cat/v2.png": image_bytes(constant(30, (4, 6)), "PNG"),
        "val/ant/v0.png": image_bytes(constant(10, (4, 6)), "PNG"),
        "val/bee/v1.png": image_bytes(constant(20, (4, 6)), "PNG"),
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_folder_layout_yields_rgb_images_and_sorted_labels(tmp_path):
    root = write_tree(tmp_path)
    assert imagenet.detect_layout(root) == "folders"
    records, names = imagenet.class_folder_records(root, "train")
    assert names == ["ant", "bee", "cat"]
    assert [(p.relative_to(root).as_posix(), label) for p, label in records] == [
        ("train/ant/a0.jpg", 0), ("train/ant/a1.JPEG", 0), ("train/bee/b0.png", 1), ("train/cat/c0.jpeg", 2)]

    dataset, names = imagenet.imagenet_dataset(root, "train")
    examples = list(dataset.as_numpy_iterator())
    assert names == ["ant", "bee", "cat"]
    assert [int(label) for _, label in examples] == [0, 0, 1, 2]
    assert [image.shape for image, _ in examples] == [(10, 12, 3), (10, 12, 3), (7, 5, 3), (10, 12, 3)]
    assert all(image.dtype == np.uint8 and label.dtype == np.int64 for image, label in examples)
    means = [float(image.mean()) for image, _ in examples]
    assert means == pytest.approx([10, 20, 200, 100], abs=2)
    assert (examples[2][0] == 200).all()                # grayscale PNG, exact, on all 3 channels


@pytest.mark.parametrize("split", ["val", "validation"])
def test_folder_layout_val_split(tmp_path, split):
    dataset, names = imagenet.imagenet_dataset(write_tree(tmp_path), split)
    examples = list(dataset.as_numpy_iterator())
    assert names == ["ant", "bee", "cat"]
    assert [(int(label), int(image[0, 0, 0]), image.shape) for image, label in examples] == [
        (0, 10, (4, 6, 3)), (1, 20, (4, 6, 3)), (2, 30, (4, 6, 3))]


@pytest.mark.parametrize("mode, pixel, rgb", [
    ("L", 77, (77, 77, 77)),
    ("RGBA", (10, 20, 30, 128), (10, 20, 30)),
    ("P", 3, None),                                      # palette: index 3 of the default palette
])
def test_read_image_converts_to_rgb(tmp_path, mode, pixel, rgb):
    path = tmp_path / "x.png"
    Image.new(mode, (6, 4), pixel).save(path)
    image = imagenet.read_image(path)
    assert image.shape == (4, 6, 3) and image.dtype == np.uint8
    expected = rgb if rgb is not None else Image.new(mode, (1, 1), pixel).convert("RGB").getpixel((0, 0))
    assert (image == np.array(expected, np.uint8)).all()


def test_read_image_converts_cmyk_jpeg(tmp_path):
    # ImageNet holds a few CMYK JPEGs; no ink is white.
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (6, 4), (0, 0, 0, 0)).save(path)
    image = imagenet.read_image(path)
    assert image.shape == (4, 6, 3) and image.dtype == np.uint8 and image.min() >= 250


def _break(root, how):
    """Breaks the tree; returns (root, split, file or None, text the error must contain)."""
    if how == "missing root":
        return root / "nowhere", "train", None, "ImageNet folder not found"
    if how == "empty root":
        for path in sorted(root.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        return root, "train", None, "ILSVRC2012_img_train.tar"
    if how == "missing split folder":
        for path in sorted((root / "val").rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        (root / "val").rmdir()
        return root, "val", None, f"split folder not found: {root / 'val'}"
    if how == "no class folders":
        (root / "val").rename(root / "old")
        (root / "val").mkdir()
        return root, "val", None, f"no class folders in {root / 'val'}"
    if how == "empty class folder":
        (root / "train/dog").mkdir()
        (root / "train/dog/readme.txt").write_text("no images here")
        return root, "train", None, f"class folder {root / 'train/dog'} has no images"
    if how == "truncated jpeg":
        path = root / "train/ant/a0.jpg"
        path.write_bytes(image_bytes(np.random.RandomState(0).randint(0, 255, (40, 40, 3), np.uint8))[:600])
        return root, "train", path, "truncated"
    if how == "truncated png":
        path = root / "train/bee/b0.png"
        data = image_bytes(np.random.RandomState(0).randint(0, 255, (40, 40, 3), np.uint8), "PNG")
        path.write_bytes(data[:len(data) // 2])
        return root, "train", path, "cannot read image"
    if how == "not an image":
        path = root / "train/cat/c0.jpeg"
        path.write_text("this is a text file with a .jpeg name")
        return root, "train", path, "cannot read image"
    raise ValueError(how)


@pytest.mark.parametrize("how", ["missing root", "empty root", "missing split folder", "no class folders",
                                 "empty class folder", "truncated jpeg", "truncated png", "not an image"])
def test_broken_inputs_give_clear_errors(tmp_path, how):
    import tensorflow as tf

    root, split, bad_file, expected = _break(write_tree(tmp_path / "imagenet"), how)
    if bad_file is None:
        with pytest.raises(DatasetError) as error:
            imagenet.imagenet_dataset(root, split)
    else:
        # Layout checks pass; the file fails when read, directly and through tf.data.
        dataset, _ = imagenet.imagenet_dataset(root, split)
        with pytest.raises(DatasetError) as error:
            imagenet.read_image(bad_file)
        with pytest.raises(tf.errors.OpError, match=re.escape(f"DatasetError: cannot read image {bad_file}")):
            list(dataset.as_numpy_iterator())
        assert str(bad_file) in str(error.value)
        assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    message = str(error.value)
    assert expected in message and "\n" not in message


# ---- tensorflow-datasets layout: the official archives, in miniature ----

TRAIN_CLASSES = ["n01440764", "n01443537"]            # the first two of tfds' sorted 1000 wnids


def _add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_archives(root, train=True, val=True):
    """Train: one tar per class with 2 JPEGs (values 50 and 100); val: 3 JPEGs, value 30 * i
    for ILSVRC2012_val_0000000i.JPEG."""
    root.mkdir(parents=True, exist_ok=True)
    if train:
        with tarfile.open(root / "ILSVRC2012_img_train.tar", "w") as outer:
            for wnid in TRAIN_CLASSES:
                inner_bytes = io.BytesIO()
                with tarfile.open(fileobj=inner_bytes, mode="w") as inner:
                    for i in (1, 2):
                        _add(inner, f"{wnid}_{i}.JPEG", image_bytes(constant(50 * i)))
                _add(outer, f"{wnid}.tar", inner_bytes.getvalue())
    if val:
        with tarfile.open(root / "ILSVRC2012_img_val.tar", "w") as tar:
            for i in (1, 2, 3):
                _add(tar, f"ILSVRC2012_val_{i:08d}.JPEG", image_bytes(constant(30 * i, (8, 9))))
    return root


def _tfds_validation_labels():
    """tfds' bundled wnids of the 50,000 validation images, in file-name order."""
    import tensorflow_datasets

    path = Path(tensorflow_datasets.__file__).parent / "datasets/imagenet2012/validation_labels.txt"
    return path.read_text().split()


@pytest.fixture
def no_network(monkeypatch):
    """Any Python socket use or GCS look-up by tfds fails the test."""
    from tensorflow_datasets.core.utils import gcs_utils

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(gcs_utils, "exists", refuse)


def test_tfds_layout_prepares_the_archives_offline(tmp_path, no_network, monkeypatch):
    root = write_archives(tmp_path / "manual")
    assert imagenet.detect_layout(root) == "tfds"

    train, names = imagenet.imagenet_dataset(root, "train")          # data_dir defaults to <root>/tfds
    assert len(names) == 1000 and names[:2] == TRAIN_CLASSES
    examples = list(train.as_numpy_iterator())
    assert all(image.shape == (10, 12, 3) and image.dtype == np.uint8 and label.dtype == np.int64
               for image, label in examples)
    # tfds stores the examples in its own (hashed) order: compare as a multiset.
    assert sorted((int(label), round(float(image.mean()) / 10) * 10) for image, label in examples) == [
        (0, 50), (0, 100), (1, 50), (1, 100)]
    assert (root / "tfds/imagenet2012").is_dir()

    # Prepared once: a second reader must not run the builder again.
    import tensorflow_datasets as tfds

    def prepare_again(*args, **kwargs):
        raise AssertionError("download_and_prepare called on prepared data")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", prepare_again)
    val, val_names = imagenet.imagenet_dataset(root, "val", data_dir=root / "tfds")
    assert val_names == names
    wnids = _tfds_validation_labels()
    assert len(wnids) == 50000
    examples = list(val.as_numpy_iterator())
    assert len(examples) == 3
    got = {round(float(image.mean()) / 30): int(label) for image, label in examples}   # i -> label
    assert got == {i: names.index(wnids[i - 1]) for i in (1, 2, 3)}
    assert all(image.shape == (8, 9, 3) for image, _ in examples)


def test_tfds_layout_missing_train_archive(tmp_path):
    root = write_archives(tmp_path / "manual", train=False)
    assert imagenet.detect_layout(root) == "tfds"
    with pytest.raises(DatasetError) as error:
        imagenet.imagenet_dataset(root, "val", data_dir=tmp_path / "tfds_data")
    message = str(error.value)
    assert "ILSVRC2012_img_train.tar not found" in message and "image-net.org" in message
    assert "\n" not in message
    assert not (tmp_path / "tfds_data").exists()          # nothing was handed to tfds
