"""The Fashion-MNIST classification proxy: IDX reading, the balanced subset, the class-per-folder
tree it writes (read back by the ImageNet folder reader), and the missing-package error."""

import gzip

import numpy as np
import pytest

from data import classification_proxy, imagenet
from data.coco_panoptic import DatasetError


def write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_fake_fashion_mnist(directory):
    """Six images per class with known pixels, in both splits: image i is filled with value i
    and has label i % 10."""
    labels = np.tile(np.arange(10), 6)
    images = np.arange(60, dtype=np.uint8)[:, None, None] * np.ones((1, 28, 28), np.uint8)
    for image_file, label_file in classification_proxy.FILES.values():
        write_idx(directory / image_file, images)
        write_idx(directory / label_file, labels)
    return images, labels


@pytest.fixture
def fake_fashion_mnist(tmp_path, monkeypatch):
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path))
    return write_fake_fashion_mnist(tmp_path)


def test_read_idx_round_trips(fake_fashion_mnist):
    images, labels = classification_proxy.load_split("train")
    assert images.shape == (60, 28, 28) and images.dtype == np.uint8
    assert (images[:, 0, 0] == np.arange(60)).all()
    assert (labels == np.tile(np.arange(10), 6)).all()


def test_balanced_subset_takes_the_first_of_each_class_in_file_order():
    labels = np.array([3, 1, 3, 3, 1, 0, 2])
    assert classification_proxy.balanced_subset(labels, 2).tolist() == [0, 1, 2, 4, 5, 6]


def test_written_tree_is_read_by_the_imagenet_folder_reader(fake_fashion_mnist, tmp_path):
    root = classification_proxy.write_dataset(tmp_path / "proxy", {"train": 4, "val": 2})
    assert imagenet.detect_layout(root) == "folders"
    train, classes = imagenet.class_folder_records(root, "train")
    val, _ = imagenet.class_folder_records(root, "val")
    assert classes == sorted(classification_proxy.CLASSES)
    assert len(train) == 40 and len(val) == 20
    for path, label in train:
        index = int(path.stem)                       # file name = index in the IDX file
        assert classes[label] == classification_proxy.CLASSES[index % 10]
        assert (imagenet.read_image(path) == index).all()   # grey pixels, read as RGB
    # A finished split is not rewritten.
    marker = root / "train" / ".complete"
    before = marker.stat().st_mtime_ns
    classification_proxy.write_dataset(root, {"train": 4, "val": 2})
    assert marker.stat().st_mtime_ns == before


def test_missing_package_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError, match="apt install dataset-fashion-mnist"):
        classification_proxy.load_split("train")


def test_corrupt_idx_is_a_clear_error(tmp_path, monkeypatch):
    for image_file, label_file in classification_proxy.FILES.values():
        (tmp_path / image_file).write_bytes(b"not gzip")
        (tmp_path / label_file).write_bytes(b"not gzip")
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(DatasetError, match="not a readable gzipped IDX file"):
        classification_proxy.load_split("val")


@pytest.mark.skipif(not (classification_proxy.Path(classification_proxy.DEFAULT_DIR)).exists(),
                    reason="Debian's dataset-fashion-mnist is not installed (.ci/run installs it)")
def test_debian_package_has_the_real_splits(monkeypatch):
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    images, labels = classification_proxy.load_split("val")
    assert images.shape == (10000, 28, 28)
    assert np.bincount(labels).tolist() == [1000] * 10
