"""What a trained result is, so that it is reused exactly when it would come out the same.

One seed of one experiment (training/experiments.py) takes hours on 2 CPU cores, so a result
is reused, from the cache or from a committed table, whenever running it again would give
the same numbers, and only then.  It is keyed on what determines it (issue #23):

- **the configuration** (`config_key`): the model spec the proxy rule builds, the recipe with
  its seed, the data's description, the dataset folder (full fidelity), the backend and its
  version, and Keras' version.  It names the run's folder under .cache/experiments/.
- **numerical fingerprints** (`fingerprint`): what the code computes on fixed inputs.
  `model`: the network's outputs on a fixed image, its weights set from their names (so that a
  residual branch initialised to zero cannot hide a layer), and its weight layout;
  `path`: the task's loss on fixed targets and outputs, the targets of a fixed mask, the
  post-processing and PQ of a fixed prediction, and the recipe's optimiser on a toy problem;
  `data`: the first training examples as the pipeline reads them.

The source text is not part of the key: an exact refactor of a layer (the span-windowed
attention of issue #24, equal to today's) keeps every result; a change of numbers discards
them.  Fingerprints are compared within TOLERANCE.  Computing one builds the model (seconds
to a minute), so a stored fingerprint records the `source` it was computed or verified under
(the syntax trees of models/, training/, data/, evaluation/): where that is today's source,
the numbers are today's by construction and nothing is computed, which is what lets a clean
clone read the committed tables at once.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SOURCE_FOLDERS = ("models", "training", "data", "evaluation")
# Relative and absolute tolerance of a fingerprint comparison: float32 reorderings of an
# exact refactor move the fixed outputs by about 1e-6 relative; a change of the function
# moves them by far more.
TOLERANCE = (1e-3, 1e-6)
FINGERPRINT_PARTS = ("model", "path", "data")


@functools.lru_cache(maxsize=None)
def source_hash() -> str:
    """The syntax trees (comments and layout do not count) of the code a result depends on,
    and Keras' version: the memo key of the fingerprints, never the result's key."""
    from runtime.machine import library_versions

    digest = hashlib.sha256(f"keras={library_versions('keras')['keras']}".encode())
    for folder in SOURCE_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            digest.update(path.relative_to(ROOT).as_posix().encode())
            digest.update(ast.dump(ast.parse(path.read_text())).encode())
    return digest.hexdigest()[:16]


def backend_version() -> str:
    """"tensorflow=2.21.0" or "jax=0.10.2": results trained on one backend are not served to
    the other (their floating-point paths differ)."""
    import keras

    from runtime.machine import library_versions

    name = keras.backend.backend()
    return f"{name}={library_versions(name)[name]}"


def config_key(experiment, data_dir=None) -> str:
    """The configuration a result depends on, hashed: 20 hex digits."""
    from runtime.machine import library_versions
    from training.experiments import model_spec

    trained = (model_spec(experiment, num_classes=0), experiment.data, experiment.recipe, experiment.proxy_width)
    text = f"{trained!r}|{data_dir}|{backend_version()}|keras={library_versions('keras')['keras']}"
    if experiment.recipe.init_from:  # the weights' content, not only their path
        from training.transfer import digest

        text += f"|init={digest(experiment.recipe.init_from)}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


# --- fingerprints ----------------------------------------------------------------------------

def _summary(array) -> list[float]:
    """A few numbers that move when any part of `array` moves: moments and fixed samples."""
    a = np.asarray(array, np.float64).ravel()
    if a.size == 0:
        return [0.0]
    mean, std = float(a.mean()), float(a.std())
    # Standardised, so that a large constant (a bias) cannot hide how the values vary.
    z = (a - mean) / std if std > 0 else a - mean
    picks = z[np.linspace(0, a.size - 1, 5).astype(int)]
    weights = np.cos(np.arange(a.size) * 0.7)  # a fixed projection: sensitive to position
    return [mean, std, float(np.abs(z).mean()), float(z @ weights / a.size), *map(float, picks)]


def _set_named_weights(model) -> None:
    """Every float weight from a generator seeded by its own path: unit-scale kernels, positive
    scales and variances, small shifts.  The fingerprint then sees every layer (a zero-initialised
    residual gamma would hide its branch) and does not depend on the order weights are made."""
    for variable in model.weights:
        if "float" not in str(variable.dtype):
            continue
        shape = tuple(variable.shape)
        rng = np.random.default_rng(zlib.crc32(variable.path.encode()))
        name = variable.path.rsplit("/", 1)[-1]
        if len(shape) >= 2:
            value = rng.standard_normal(shape) / np.sqrt(max(1, int(np.prod(shape[:-1]))))
        elif name in ("gamma", "moving_variance", "scale") or "variance" in name:
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = 0.1 * rng.standard_normal(shape)
        variable.assign(value.astype(str(variable.dtype)))


def model_fingerprint(experiment) -> list[float]:
    """The network the experiment trains, built at its input size with named weights, on a
    fixed image (inference mode), plus its weight layout."""
    import keras

    from training.experiments import model_spec

    num_classes = 10 if experiment.data.task == "classification" else 7
    keras.utils.set_random_seed(0)
    model = model_spec(experiment, num_classes).build(tuple(experiment.input_size))
    _set_named_weights(model)
    image = np.random.default_rng(0).standard_normal((1, *experiment.input_size, 3)).astype("float32")
    outputs = model(image, training=False)
    outputs = outputs if isinstance(outputs, dict) else {"logits": outputs}
    values = [v for key in sorted(outputs) for v in _summary(keras.ops.convert_to_numpy(outputs[key]))]
    layout = hashlib.sha256(repr(sorted((w.path, tuple(w.shape)) for w in model.weights)).encode()).digest()
    keras.backend.clear_session()
    return values + [float(int.from_bytes(layout[:4], "big"))]


def path_fingerprint(experiment) -> list[float]:
    """Loss, targets, post-processing and metric on fixed inputs, and the optimiser."""
    import keras

    from training.engine import make_optimizer

    rng = np.random.default_rng(0)
    values = []
    if experiment.data.task == "panoptic":
        from data.targets import SegmentInfo, panoptic_targets
        from evaluation.panoptic_quality import PanopticQuality, Segment
        from evaluation.postprocess import PostProcessConfig, panoptic_prediction
        from training.losses import panoptic_loss

        ids = np.ones((33, 33), np.int64)
        ids[4:14, 5:15], ids[18:30, 16:31], ids[:, :3] = 2, 3, 0
        segments = {1: SegmentInfo(0, False), 2: SegmentInfo(1, True), 3: SegmentInfo(1, True)}
        targets = panoptic_targets(ids, segments)
        values += [v for key in sorted(targets) for v in _summary(targets[key])]
        outputs = {"semantic": rng.standard_normal((1, 9, 9, 2)), "center": rng.uniform(0, 1, (1, 9, 9, 1)),
                   "offset": rng.standard_normal((1, 9, 9, 2))}
        batch = {k: np.asarray(v)[None].astype("float32" if v.dtype.kind == "f" else "int32")
                 for k, v in targets.items()}
        parts = panoptic_loss(batch, {k: v.astype("float32") for k, v in outputs.items()})
        values += [float(keras.ops.convert_to_numpy(parts[k])) for k in sorted(parts)]
        semantic = np.where(ids[..., None] == 1, [2.0, -2.0], [-2.0, 2.0])
        center = np.zeros((33, 33, 1))
        center[9, 10], center[24, 23] = 0.9, 0.8
        yy, xx = np.mgrid[:33, :33]
        offset = np.stack([np.where(yy < 16, 9 - yy, 24 - yy), np.where(yy < 16, 10 - xx, 23 - xx)], -1)
        config = PostProcessConfig(thing_classes=(1,), stuff_area=16, nms_kernel=3)
        panoptic = panoptic_prediction(semantic, center[..., 0], offset.astype(np.float32), config)
        quality = PanopticQuality({0: False, 1: True})
        pred = np.where(panoptic // config.label_divisor == config.void_class, 0, panoptic + 1)
        quality.update(ids, {k: Segment(v.category_id) for k, v in segments.items()}, pred,
                       {int(p): Segment(int(p - 1) // config.label_divisor) for p in np.unique(pred) if p})
        values += [float(quality.result()["All"]["pq"] or 0.0)]
    else:
        from training.losses import classification_loss

        logits, labels = rng.standard_normal((4, 10)).astype("float32"), np.array([0, 3, 3, 9])
        parts = classification_loss(labels, logits, experiment.recipe.label_smoothing)
        values += [float(keras.ops.convert_to_numpy(parts["total"]))]
    # The recipe's optimiser and schedule: 5 steps on sum((w - 1)^2).
    weight = keras.Variable(np.zeros(3, "float32"))
    optimizer = make_optimizer(experiment.recipe, "float32")
    for _ in range(5):
        gradient = 2 * (keras.ops.convert_to_numpy(weight) - 1)
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(gradient.astype("float32")), weight)])
    values += [float(v) for v in keras.ops.convert_to_numpy(weight)]
    return values


def data_fingerprint(experiment) -> list[float] | None:
    """The first examples of the proxy data as the suite builds them (None for the paper's
    datasets: their folder is part of the key)."""
    if experiment.data.name == "panoptic-proxy":
        from data import proxy

        image, ids, segments = proxy.render(proxy.sample_scene(np.random.default_rng(0)),
                                            *experiment.data.render_size)
        categories = [float(s["category_id"]) for _, s in sorted(segments.items())]
        return _summary(image) + _summary(ids) + categories + [float(len(proxy.categories()))]
    if experiment.data.name == "fashion-mnist":
        from data import classification_proxy
        from data.coco_panoptic import DatasetError

        try:
            images, labels = classification_proxy.load_split("train")
        except DatasetError:
            return None  # not installed here: the stored fingerprint cannot be checked
        chosen = classification_proxy.balanced_subset(labels, experiment.data.train)
        return _summary(images[chosen[:64]]) + _summary(labels[chosen]) + [float(len(chosen))]
    return None


_COMPUTED: dict[str, dict] = {}


def fingerprint(experiment) -> dict:
    """{"source", "model", "path", "data"} of an experiment (seed-independent), computed once
    per process."""
    plain = dataclasses.replace(experiment, recipe=dataclasses.replace(experiment.recipe, seed=0))
    key = repr(plain)
    if key not in _COMPUTED:
        _COMPUTED[key] = {"source": source_hash(), "model": model_fingerprint(plain),
                          "path": path_fingerprint(plain), "data": data_fingerprint(plain)}
    return _COMPUTED[key]


def _close(stored, current) -> bool:
    if stored is None or current is None:
        return stored is None and current is None
    a, b = np.asarray(stored, np.float64), np.asarray(current, np.float64)
    return a.shape == b.shape and bool(np.all(np.isfinite(a))) and \
        bool(np.allclose(a, b, rtol=TOLERANCE[0], atol=TOLERANCE[1]))


def differences(stored: dict | None, experiment) -> list[str]:
    """The fingerprint parts in which a stored result differs from what the code computes now
    (empty: the result stands).  Nothing is computed when it was stored under today's source."""
    if not isinstance(stored, dict) or not all(part in stored for part in FINGERPRINT_PARTS):
        return ["no fingerprint"]
    if stored.get("source") == source_hash():
        return []
    current = fingerprint(experiment)
    return [part for part in FINGERPRINT_PARTS if not _close(stored[part], current[part])]
