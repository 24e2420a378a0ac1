"""Experiments: "train preset X with recipe Y on data D, evaluate with Z", for the proxy and
full fidelities (paper Sec. 4: ImageNet top-1 for Tab. 1/9, panoptic quality for Tab. 2-8).

A reproduction declares `Experiment`s; `run` prepares the data, trains (resumably, under
.cache/experiments/<key>/seed<k>/), evaluates and caches the metrics, so a second run of
the same experiment on the same code is a file read.

Proxy models follow one rule for every preset (README, "Proxy fidelity"): the preset's
architecture with every width and the number of attention heads multiplied by PROXY_WIDTH
(so each head keeps the paper's depth), a head for the proxy's classes, and batch-norm
moving averages with momentum PROXY_BN_MOMENTUM; depth, spans, strides, stems and decoders
are the preset's own.

Full experiments read the paper's datasets under the directory the user names
(`--data-dir`): imagenet/ (data/imagenet.py's layouts), coco/, cityscapes/, mapillary/
(data/coco_panoptic.py's layouts).  Nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.files import CACHE_ROOT
from training.recipe import Recipe, repr_without_later_defaults

ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = CACHE_ROOT / "experiments"
DATA_CACHE_DIR = CACHE_ROOT / "proxy-data"
PROXY_WIDTH = 0.25
PROXY_SEEDS = (0, 1, 2)
# Keras' 0.99 keeps 37 % of the initial statistics after 100 steps: evaluated with them,
# ResNet-50's 100-step proxy scored at chance level, far below its own batch statistics
# (the figures are in issue #5's closing note).
PROXY_BN_MOMENTUM = 0.9

# The panoptic proxy's pixel-valued settings (issue #25): Panoptic-DeepLab's [18], set for
# Cityscapes' 1025 x 2049 images, scaled to the proxy's image by one rule, for every model:
# with r = sqrt(proxy image area / Cityscapes image area), lengths x r and areas x r^2, and
# no length below MIN_LENGTH = 2 px, half the decoder's output stride of 4: a centre heatmap
# narrower than that cannot be drawn by a head that predicts at output stride 4 (the pilot's
# baseline, at the 65 px scenes' sigma of 0.36 -> 1 px, learnt no centre: issue #25's note).
# NMS kernels are odd, at least 3.  The centre threshold (0.1, a heatmap value) and top-k
# (200, a count) have no unit to scale.
PAPER_IMAGE = (1025, 2049)
PAPER_PIXEL_SETTINGS = {"center_sigma": 8.0, "small_instance_area": 64 * 64, "nms_kernel": 7, "stuff_area": 2048}
MIN_LENGTH = 2.0


@dataclass(frozen=True)
class PixelSettings:
    center_sigma: float         # the centre heatmap's Gaussian (training target)
    small_instance_area: int    # things smaller than this weigh 3x in the semantic loss
    nms_kernel: int             # centre non-maximum suppression (post-processing)
    stuff_area: int             # stuff segments smaller than this become void (post-processing)


def proxy_pixel_settings(size: tuple[int, int]) -> PixelSettings:
    """PAPER_PIXEL_SETTINGS scaled to an image of `size` by the rule above."""
    r = (size[0] * size[1] / (PAPER_IMAGE[0] * PAPER_IMAGE[1])) ** 0.5
    paper = PAPER_PIXEL_SETTINGS
    return PixelSettings(center_sigma=max(MIN_LENGTH, round(paper["center_sigma"] * r, 2)),
                         small_instance_area=max(1, round(paper["small_instance_area"] * r * r)),
                         nms_kernel=max(3, 2 * round((paper["nms_kernel"] * r - 1) / 2) + 1),
                         stuff_area=max(1, round(paper["stuff_area"] * r * r)))

PANOPTIC_DATASETS = ("coco", "cityscapes", "mapillary")
CLASSIFICATION_METRICS = ("Top-1",)
PANOPTIC_METRICS = ("PQ", "PQ_Th", "PQ_St", "mIoU", "AP")


class ExperimentError(RuntimeError):
    """A problem the user must fix (missing data, unsupported model); printed as one line."""


@dataclass(frozen=True)
class Data:
    """Where an experiment's images come from.

    name: fashion-mnist (classification proxy), panoptic-proxy, imagenet, or one of
    PANOPTIC_DATASETS (full).  Proxy sizes: `train` and `val` images (per class for
    fashion-mnist), panoptic scenes rendered at `render_size`."""

    name: str
    train: int = 0
    val: int = 0
    render_size: tuple[int, int] = (0, 0)

    @property
    def task(self) -> str:
        return "classification" if self.name in ("fashion-mnist", "imagenet") else "panoptic"

    @property
    def is_proxy(self) -> bool:
        return self.name in ("fashion-mnist", "panoptic-proxy")

    def describe(self) -> str:
        if self.name == "fashion-mnist":
            return (f"Fashion-MNIST (real pixels; {self.train}/class train, {self.val}/class val, "
                    "from Debian's dataset-fashion-mnist)")
        if self.name == "panoptic-proxy":
            return (f"panoptic proxy ({self.train} train / {self.val} val scenes at "
                    f"{self.render_size[0]}x{self.render_size[1]}: real scikit-image textures and "
                    "MNIST-5k digits, synthetic layout)")
        return self.name


@dataclass(frozen=True)
class Experiment:
    """Train `preset` by `recipe` on `data`, evaluate at `input_size`.

    proxy_width: the width factor of the proxy rule, or None for the paper's own model.
    eval_crop_fraction: central crop before resizing at evaluation (0.875 on ImageNet)."""

    preset: str
    data: Data
    recipe: Recipe
    input_size: tuple[int, int]
    proxy_width: float | None = PROXY_WIDTH
    eval_crop_fraction: float = 1.0
    # Post-processing (panoptic): the stuff area limit and the centre NMS kernel, in pixels of
    # the evaluated image; the panoptic proxy's follow its image size (reproductions/proxies.py).
    stuff_area: int = 2048
    # Scale stress test (Figs. 4/10): also evaluate on the validation scenes rendered at
    # render_size x ratio, the model built at input_size x ratio (panoptic proxy only).
    test_ratios: tuple[float, ...] = ()
    # Changes to the preset's backbone, as (BackboneSpec field, value) pairs: what an ablation
    # varies at proxy scale, e.g. (("span", 5),) for Tab. 7's spans scaled to the proxy's maps.
    backbone_changes: tuple[tuple[str, object], ...] = ()
    metrics: tuple[str, ...] = field(default=(), compare=False)
    # (Added after results were keyed: in the repr only when set; training/recipe.py.)
    nms_kernel: int = field(default=7, metadata={"keyed_when_set": True})
    # The rest of the post-processing (PostProcessConfig) and how an image meets the evaluation
    # input (evaluate_panoptic's `fit`): the full datasets' own (training/full_recipes.py).
    top_k: int = field(default=200, metadata={"keyed_when_set": True})
    center_threshold: float = field(default=0.1, metadata={"keyed_when_set": True})
    label_divisor: int = field(default=1000, metadata={"keyed_when_set": True})
    eval_fit: str = field(default="resize", metadata={"keyed_when_set": True})
    # Images are scaled by this before they meet the evaluation input (a full-fidelity smoke
    # test: the datasets' images at the smoke test's small input; reproductions/trained.py).
    eval_scale: float = field(default=1.0, metadata={"keyed_when_set": True})
    # Multi-scale (+ flip) inference of the paper's -ms rows (the preset's; image_outputs).
    inference_scales: tuple[float, ...] = field(default=(1.0,), metadata={"keyed_when_set": True})
    flip: bool = field(default=False, metadata={"keyed_when_set": True})
    # Full runs: validation PQ / mIoU every this many steps on the first VALIDATION_SCENES
    # validation images (0: at VALIDATION_POINTS, the proxy's).
    validate_every: int = field(default=0, metadata={"keyed_when_set": True})

    def __repr__(self) -> str:
        return repr_without_later_defaults(self)

    def __post_init__(self):
        if not self.metrics:
            object.__setattr__(self, "metrics", CLASSIFICATION_METRICS if self.data.task == "classification"
                               else PANOPTIC_METRICS)

    def postprocess(self) -> dict:
        """PostProcessConfig's settings for this experiment's evaluation."""
        return {"stuff_area": self.stuff_area, "nms_kernel": self.nms_kernel, "top_k": self.top_k,
                "center_threshold": self.center_threshold, "label_divisor": self.label_divisor}

    def describe(self) -> str:
        model = (f"{self.preset} at width x{self.proxy_width:g} (proxy rule)" if self.proxy_width
                 else self.preset)
        if self.backbone_changes:
            model += " with " + ", ".join(f"{k} {v}" for k, v in self.backbone_changes)
        r = self.recipe
        return (f"{model}, {self.data.describe()}, input {self.input_size[0]}x{self.input_size[1]}, "
                f"{r.steps} steps of batch {r.batch_size}, {r.optimizer} lr {r.learning_rate:g}"
                + (f", backbone from ImageNet weights {Path(r.init_from).name}" if r.init_from else ""))


# --- models ----------------------------------------------------------------------------------

def model_spec(experiment: Experiment, num_classes: int):
    """The preset's model spec with the proxy rule applied (if any) and `num_classes` classes."""
    from models import presets

    spec = presets.get(experiment.preset).model
    backbone = dataclasses.replace(spec.backbone, **dict(experiment.backbone_changes))
    if experiment.proxy_width is not None:
        backbone = dataclasses.replace(
            backbone, width_multiplier=backbone.width_multiplier * experiment.proxy_width,
            num_heads=max(1, round(backbone.num_heads * experiment.proxy_width)))
    return dataclasses.replace(spec, backbone=backbone, num_classes=num_classes)


# --- data ------------------------------------------------------------------------------------

def _dataset_dir(data_dir: str | Path | None, name: str) -> Path:
    if data_dir is None:
        raise ExperimentError(f"full fidelity needs --data-dir: a folder holding {name}/")
    path = Path(data_dir) / name
    if not path.is_dir():
        raise ExperimentError(f"dataset folder {path} not found: put the {name} dataset there "
                              "(see README, 'Full fidelity') and run again")
    return path


def prepared_proxy(data: Data) -> Path:
    """The proxy data set on disk, written once under .cache/proxy-data.  The panoptic proxy is
    built in a staging folder named after this process and renamed into place when complete:
    a build that is killed leaves only its staging folder, which the next build removes once that
    process is gone; two processes building at once build their own, and the first to finish
    is used by both."""
    from data import classification_proxy, proxy
    from runtime import files

    if data.name == "fashion-mnist":
        root = DATA_CACHE_DIR / f"fashion-mnist-{data.train}-{data.val}"
        return classification_proxy.write_dataset(root, {"train": data.train, "val": data.val})
    h, w = data.render_size
    # Named by what the renderer draws (data/proxy.py renderer_key): another renderer's folder is
    # never read as this one's.
    root = DATA_CACHE_DIR / f"panoptic-{proxy.renderer_key()}-{data.train}-{data.val}-{h}x{w}"
    if not (root / ".complete").exists():
        import shutil

        files.remove_stale_staging(DATA_CACHE_DIR, ".panoptic-")
        staging = files.staging_folder(DATA_CACHE_DIR, ".panoptic-")
        try:
            # Different seeds for the two splits: validation scenes are new layouts.
            proxy.write_dataset(staging, "train", data.train, (h, w), seed=proxy.SPLIT_SEEDS["train"])
            proxy.write_dataset(staging, "val", data.val, (h, w), seed=proxy.SPLIT_SEEDS["val"])
            (staging / ".complete").write_text("")
            if root.exists() and not (root / ".complete").exists():
                shutil.rmtree(root)  # an incomplete folder: not one of ours, which appear whole
            try:
                staging.rename(root)
            except OSError:
                if not (root / ".complete").exists():
                    raise  # else another process finished the same data first: use its copy
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # gone already once renamed
    return root


def _classification_splits(experiment: Experiment, data_dir):
    """(train records, val records, load, class names) for the classification data."""
    from data import imagenet

    root = prepared_proxy(experiment.data) if experiment.data.is_proxy else _dataset_dir(data_dir, "imagenet")
    if imagenet.detect_layout(root) != "folders":
        raise ExperimentError(
            f"{root}: training reads the class-per-folder layout (exact resume needs random access "
            "to examples); extract the ImageNet archives into train/<wnid>/ and val/<wnid>/ folders")
    train, classes = imagenet.class_folder_records(root, "train")
    val, val_classes = imagenet.class_folder_records(root, "val")
    if val_classes != classes:
        raise ExperimentError(f"{root}: train and val have different class folders")
    return train, val, imagenet.read_image, classes


def _panoptic_root(experiment: Experiment, data_dir) -> tuple[Path, str]:
    if experiment.data.is_proxy:
        return prepared_proxy(experiment.data), "coco"
    if experiment.data.name not in PANOPTIC_DATASETS:
        raise ExperimentError(f"unknown dataset {experiment.data.name!r}")
    return _dataset_dir(data_dir, experiment.data.name), experiment.data.name


# --- running ---------------------------------------------------------------------------------

def workdir(experiment: Experiment, seed: int, data_dir=None) -> Path:
    """The training run's folder (checkpoints, log), keyed by its configuration
    (training/identity.py): the model it builds (not the preset's name: rows of different
    tables that train the same model by the same recipe on the same data share one run, e.g.
    Axial-DeepLab-L in Tab. 2, 4, 6, 7 and 8), the recipe, the data, and the backend with its
    version (a result trained under JAX is not served to a TensorFlow run, nor the reverse).
    The code is checked by the run's numerical fingerprint (identity.json), not by its text.
    How it is evaluated is not part of the key: each evaluation is a metrics file in this
    folder (`evaluation_key`)."""
    from training import identity

    return CACHE_DIR / f"{experiment.data.name}-{identity.config_key(experiment, data_dir)}" / f"seed{seed}"


def evaluation_key(experiment: Experiment, max_eval: int | None) -> str:
    settings = (experiment.input_size, experiment.eval_crop_fraction, experiment.stuff_area,
                experiment.test_ratios, experiment.metrics, max_eval)
    # Added later: keys only the evaluations that set them.
    settings += tuple((f.name, getattr(experiment, f.name)) for f in dataclasses.fields(experiment)
                      if f.metadata.get("keyed_when_set") and getattr(experiment, f.name) != f.default)
    if experiment.test_ratios and experiment.data.name == "panoptic-proxy":  # each ratio's own post-processing
        settings += (tuple(proxy_pixel_settings(_scaled(experiment.input_size, r)) for r in experiment.test_ratios),)
    return hashlib.sha256(repr(settings).encode()).hexdigest()[:12]


def run(experiment: Experiment, seed: int, data_dir=None, progress: bool = True, strategy: str = "default",
        precision: str = "auto", max_steps: int | None = None, max_eval: int | None = None,
        fresh: bool = False, resume_changed: bool = False) -> dict:
    """Metrics of one seed of `experiment`: cached, or trained (resuming; a finished training
    is reused by every evaluation of it) and evaluated.

    max_steps caps training and max_eval the evaluation images (a smoke test of the path);
    the result says so.  fresh: train from scratch, whatever is stored (--retrain).
    resume_changed: resume a full run whose checkpoints today's code did not write
    (--resume-changed; claim_workdir).
    Of several processes (--strategy multi-worker) only the chief writes or removes files;
    the others read the same folder (and with `fresh` read no stored result, which the chief
    may be removing), so every process trains, or not, alike."""
    import time

    from runtime import machine
    from runtime.files import write_atomic
    from training.engine import is_chief

    chief = is_chief(strategy)

    recipe = dataclasses.replace(experiment.recipe, seed=seed)
    if max_steps is not None and max_steps < recipe.steps:
        recipe = dataclasses.replace(recipe, steps=max_steps, checkpoint_every=max_steps)
    experiment = dataclasses.replace(experiment, recipe=recipe)
    directory = workdir(experiment, seed, data_dir)
    result_file = directory / f"metrics-{evaluation_key(experiment, max_eval)}.json"
    verify = max_steps is None and max_eval is None  # a smoke test checks the path, not results
    if fresh and directory.exists() and chief:
        shutil.rmtree(directory)
    if result_file.exists() and not (fresh and not chief):
        cached = read_result(result_file)
        if cached is None:
            print(f"cached result {result_file} is damaged: evaluating the run again", file=sys.stderr)
            if chief:
                result_file.unlink(missing_ok=True)
        elif not verify or not stale_reason(cached.get("identity"), experiment):
            return cached
    if verify and chief:
        claim_workdir(directory, experiment, resume_changed)
    elif verify and not experiment.data.is_proxy:
        refuse_changed(directory, experiment, resume_changed)  # the other processes stop alike
    began = time.perf_counter()
    run_task = _run_classification if experiment.data.task == "classification" else _run_panoptic
    metrics, timing, model, validation = run_task(experiment, directory, data_dir, progress, strategy, precision,
                                                  max_eval)
    result = {"metrics": metrics, "seed": seed, "steps": recipe.steps,
              "experiment": experiment.describe(),
              "capped": recipe.steps < experiment.recipe.steps or max_steps is not None or max_eval is not None,
              # Seconds of this session only (a resumed run's earlier sessions are in its log.jsonl).
              "seconds": round(time.perf_counter() - began, 1), **timing,
              "model": model, "machine": machine.describe(), "curve": learning_curve(directory / "log.jsonl"),
              "run": directory.parent.name}
    if experiment.data.task == "panoptic":  # the losses apart, and the metric as training went on
        result["loss_components"] = learning_curve(directory / "log.jsonl", keys=("semantic", "center", "offset"))
        result["validation"] = validation
    if verify:
        from training import identity

        result["identity"] = identity.fingerprint(experiment)
    if chief:
        write_atomic(result_file, json.dumps(result, indent=1) + "\n")
    return result


def read_result(path: Path) -> dict | None:
    """A stored seed's result, or None when the file is damaged (cut short, not JSON, or not a
    result: metrics that are not finite numbers, no seed)."""
    try:
        result = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return result if valid_result(result) else None


def valid_result(result) -> bool:
    if not isinstance(result, dict) or not isinstance(result.get("metrics"), dict) \
            or not isinstance(result.get("seed"), int) or not result["metrics"]:
        return False
    return all(isinstance(k, str) and (v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)
                                                        and np.isfinite(v)))
               for k, v in result["metrics"].items())


def stale_reason(stored_identity, experiment) -> str:
    """Why a stored result or checkpoint no longer stands for `experiment` ("" if it does):
    the fingerprint parts in which today's code computes other numbers."""
    from training import identity

    parts = identity.differences(stored_identity, experiment)
    return "" if not parts else f"the code now computes other numbers ({', '.join(parts)})"


def claim_workdir(directory: Path, experiment: Experiment, resume_changed: bool = False) -> None:
    """Make `directory` this experiment's, and record in identity.json the fingerprint of the
    code that trains.  Checkpoints left by code that computes other numbers: a proxy run's are
    discarded, with one line (minutes of training; resuming would mix two trainings); a full
    run's (days of accelerators) stop the run with one line that says what changed, and are
    resumed only when the user says so (`resume_changed`, --resume-changed), which
    identity.json then records."""
    from runtime.files import write_atomic
    from training import identity

    record = directory / "identity.json"
    stored, reason = _stored_identity(directory, experiment)
    history = (stored or {}).get("resumed_across", [])  # kept by every later resume
    if reason and experiment.data.is_proxy:
        print(f"discarding the run in {directory}: {reason}", file=sys.stderr)
        shutil.rmtree(directory)
        history = []
    elif reason:
        refuse_changed(directory, experiment, resume_changed, reason)
        print(f"resuming the run in {directory} across a code change ({reason}), as --resume-changed asks",
              file=sys.stderr)
        history = history + [{"reason": reason, "stored": stored}]
    write_atomic(record, json.dumps({**identity.fingerprint(experiment),
                                     **({"resumed_across": history} if history else {})}, indent=1) + "\n")


def _stored_identity(directory: Path, experiment) -> tuple[dict | None, str]:
    """(the run folder's identity.json, why it no longer stands for `experiment` or "")."""
    if not directory.exists():
        return None, ""
    try:
        stored = json.loads((directory / "identity.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None, "its identity.json is missing or damaged" if any(directory.iterdir()) else ""
    return stored, stale_reason(stored, experiment)


def refuse_changed(directory: Path, experiment, resume_changed: bool, reason: str | None = None) -> None:
    """A full run trained by other code: ExperimentError unless the user asked to resume it.
    (Every process of a multi-process run asks, so that all stop alike.)"""
    if reason is None:
        reason = _stored_identity(directory, experiment)[1]
    if reason and not resume_changed:
        raise ExperimentError(f"the run in {directory} was trained by other code: {reason}; resume it with "
                              "today's code (--resume-changed) or train it again (--retrain)")


def learning_curve(log: Path, points: int = 25, keys: tuple[str, ...] = ("total",)) -> list[list[float]]:
    """[step, mean of each of `keys`] over about `points` equal windows of the run's log.jsonl
    (by default the training loss: whether it had flattened when training stopped)."""
    if not log.exists():
        return []
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    records = [r for r in records if all(k in r for k in keys)]
    if not records:
        return []
    window = max(1, len(records) // points)
    return [[records[min(i + window, len(records)) - 1]["step"],
             *(round(float(np.mean([r[k] for r in records[i:i + window]])), 5) for k in keys)]
            for i in range(0, len(records), window)]


def set_batch_norm_momentum(model, momentum: float):
    """Every batch norm of `model`, including those inside attention layers."""
    import keras

    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum
    return model


def _builder(experiment: Experiment, spec, size):
    if experiment.proxy_width is None:
        return lambda: spec.build(size)
    return lambda: set_batch_norm_momentum(spec.build(size), PROXY_BN_MOMENTUM)


INPUT_WORKERS_VARIABLE = "AXIAL_DEEPLAB_INPUT_WORKERS"


def full_input_workers() -> int:
    """Threads that build a full run's coming batches: $AXIAL_DEEPLAB_INPUT_WORKERS, else this
    process's cores, at most 8.  A full-size example takes about 0.4-0.5 s (Cityscapes) on one core here
    (benchmarks/input_pipeline.py), and each thread holds a batch in memory (Cityscapes: about
    84 MB an example).  The proxy's in-memory scenes take milliseconds: it builds them in the
    training thread."""
    chosen = os.environ.get(INPUT_WORKERS_VARIABLE, "")
    if chosen:
        if not chosen.isdigit() or int(chosen) < 1:
            raise ExperimentError(f"${INPUT_WORKERS_VARIABLE} must be a whole number of threads >= 1, not {chosen!r}")
        return int(chosen)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(8, cores))


def _train(experiment, spec, batches, directory, progress, strategy, precision, validate=None,
           validated=frozenset(), every: int = 0, tensorboard=None):
    """(trained network, training seconds): trains, or resumes, or (finished) loads the weights.

    validate(step, network): called at each of VALIDATION_POINTS of training not in `validated`
    (the steps validated before: a resumed run keeps them), between the segments that training
    is cut into.  A point is validated when training stands at its step: a run killed while
    validating resumes at that step's checkpoint and validates it then; a point whose step a
    resumed run has passed without validating it stays missing.  `every`: validate at every
    multiple of it instead of at VALIDATION_POINTS.  `tensorboard`: Keras' TensorBoard logs there."""
    import time

    from training.engine import Trainer

    began = time.perf_counter()
    size = experiment.recipe.crop_size
    initialize = None
    if experiment.recipe.init_from:
        from training import transfer
        from training.engine import is_chief

        record = directory / "init.json" if is_chief(strategy) else None
        def initialize(network):
            transfer.initialize(network, spec, experiment.recipe.init_from, record)
    trainer = Trainer(_builder(experiment, spec, size), batches, experiment.recipe, directory,
                      strategy=strategy, precision=precision, initialize=initialize, tensorboard=tensorboard,
                      input_workers=1 if experiment.data.is_proxy else full_input_workers())
    steps = experiment.recipe.steps
    stops = [steps]
    if validate:
        points = (range(every, steps, every) if every else
                  [max(1, round(steps * f)) for f in VALIDATION_POINTS])
        stops = sorted(set(points) | {steps})
    for stop in stops:
        if stop > trainer.step or stop == steps:
            trainer.train(until=stop, progress=progress, desc=f"{experiment.preset} seed {experiment.recipe.seed}")
        if validate and stop == trainer.step and stop not in validated:
            validate(stop, trainer.model)
    return trainer.model, round(time.perf_counter() - began, 1)


# Learning you can see (issue #25): the panoptic proxy's validation metrics at these fractions
# of training, on the first VALIDATION_SCENES validation scenes (the same for every model).
VALIDATION_POINTS = (0.25, 0.5, 0.75, 1.0)
VALIDATION_SCENES = 100


def write_scalars(folder: Path, step: int, values: dict) -> None:
    """TensorBoard scalars at `step` (validation metrics), where TensorFlow is installed."""
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        return
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(folder))
    with writer.as_default():
        for name, value in values.items():
            if value is not None:
                tf.summary.scalar(name, value, step=step)
    writer.close()


class ValidationLog:
    """A panoptic run's validation curve, kept in its folder (validation.jsonl) so that a resumed
    run keeps the points it validated before: {step: metrics}."""

    NAMES = ("PQ", "PQ_Th", "PQ_St", "mIoU")

    def __init__(self, directory: Path, write: bool):
        self.path, self.write = directory / "validation.jsonl", write
        self.points: dict[int, dict] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    record = json.loads(line)
                    self.points[int(record["step"])] = {k: record.get(k) for k in self.NAMES}
                except (ValueError, KeyError, TypeError):
                    continue  # a damaged line: that point is missing (validated again if training stands there)

    def add(self, step: int, metrics: dict) -> None:
        self.points[step] = {k: metrics.get(k) for k in self.NAMES}
        if self.write:
            from runtime.files import write_atomic

            lines = (json.dumps({"step": step, **values}) + "\n" for step, values in sorted(self.points.items()))
            write_atomic(self.path, "".join(lines))

    def curve(self) -> list[list]:
        """[[step, PQ, PQ_Th, PQ_St, mIoU], ...] in step order."""
        return [[step] + [None if v.get(k) is None else round(v[k], 2) for k in self.NAMES]
                for step, v in sorted(self.points.items())]


def _model_facts(spec, size, num_classes) -> dict:
    """The evaluated model's own Params and M-Adds (the proxy rule's, at the evaluation size)."""
    from models import counting

    counts = counting.count_model(spec, size)
    return {"params": counts.params, "madds": counts.madds, "num_classes": num_classes,
            "input_size": list(size)}


def _run_classification(experiment, directory, data_dir, progress, strategy, precision, max_eval):
    import time

    from evaluation.classification import TopKAccuracy
    from training.pipeline import ClassificationBatches, center_crop_resize, normalize

    train, val, load, classes = _classification_splits(experiment, data_dir)
    val = val[:max_eval] if max_eval else val
    spec = model_spec(experiment, len(classes))
    recipe = experiment.recipe
    # The proxy's short training is too short for random crops to help: flips only.
    area_range = (1.0, 1.0) if experiment.data.is_proxy else (0.08, 1.0)
    batches = ClassificationBatches(train, load, recipe.batch_size, recipe.crop_size, seed=recipe.seed,
                                    area_range=area_range)
    model, train_seconds = _train(experiment, spec, batches, directory, progress, strategy, precision)
    began = time.perf_counter()
    accuracy = TopKAccuracy(1)
    for start in range(0, len(val), 64):
        chunk = val[start:start + 64]
        images = np.stack([normalize(center_crop_resize(load(p), experiment.input_size,
                                                        experiment.eval_crop_fraction)) for p, _ in chunk])
        logits = np.asarray(model.predict_on_batch(images), np.float32)
        accuracy.update(np.array([label for _, label in chunk]), logits)
    timing = {"train_seconds": train_seconds, "eval_seconds": round(time.perf_counter() - began, 1)}
    return ({"Top-1": 100 * accuracy.result()}, timing,
            _model_facts(spec, experiment.input_size, len(classes)), [])


def _run_panoptic(experiment, directory, data_dir, progress, strategy, precision, max_eval):
    import time

    from data import coco_panoptic
    from training.pipeline import PanopticBatches

    root, dataset = _panoptic_root(experiment, data_dir)
    val, categories = coco_panoptic.records(root, dataset, "val")
    val = val[:max_eval] if max_eval else val
    class_of = {cat: index for index, cat in enumerate(sorted(categories))}
    spec = model_spec(experiment, len(class_of))
    recipe = experiment.recipe
    batches = PanopticBatches(root, dataset, "train", recipe.batch_size, recipe.crop_size, seed=recipe.seed,
                              class_of=class_of, center_sigma=recipe.center_sigma,
                              small_instance_area=recipe.small_instance_area, scale_range=recipe.scale_range,
                              in_memory=experiment.data.is_proxy, resize_window_only=not experiment.data.is_proxy)
    from training.engine import is_chief

    validation = ValidationLog(directory, write=is_chief(strategy))
    subset = val[:VALIDATION_SCENES]
    full = not experiment.data.is_proxy
    tensorboard = directory / "tensorboard" if full else None

    # Validation at one scale: an -ms row shares its training (and this curve) with its
    # single-scale row.
    single_scale = dataclasses.replace(experiment, inference_scales=(1.0,), flip=False)

    def validate(step, network):
        metrics = _evaluate_at(spec, network, subset, categories, single_scale)
        validation.add(step, metrics)
        if full:
            print(f"{experiment.preset} step {step}: validation on {len(subset)} images: "
                  + ", ".join(f"{k} {metrics[k]:.2f}" for k in ValidationLog.NAMES if metrics.get(k) is not None),
                  file=sys.stderr)
            if is_chief(strategy):
                write_scalars(tensorboard / "validation", step, {k: metrics.get(k) for k in ValidationLog.NAMES})

    # The proxy validates at fractions of training (not in a smoke test); a full run every
    # validate_every steps (a smoke test too: it checks that path).
    validating = (experiment.data.is_proxy and not max_eval) or (full and experiment.validate_every > 0)
    model, train_seconds = _train(experiment, spec, batches, directory, progress, strategy, precision,
                                  validate if validating else None, frozenset(validation.points),
                                  every=experiment.validate_every if full else 0, tensorboard=tensorboard)
    began = time.perf_counter()
    # Evaluation at input_size: the images are resized to the size the model is built for
    # (proxy scenes are rendered at it), and predictions resized back to the ground truth.
    metrics = _evaluate_at(spec, model, val, categories, experiment)
    for ratio in experiment.test_ratios:
        # The same validation scenes rendered at another size (exact ground truth at any size),
        # post-processed with the pixel settings of that size.
        scaled = dataclasses.replace(experiment.data, train=0, render_size=_scaled(experiment.data.render_size, ratio))
        records, _ = coco_panoptic.records(prepared_proxy(scaled), "coco", "val")
        records = records[:max_eval] if max_eval else records
        size = _scaled(experiment.input_size, ratio)
        settings = proxy_pixel_settings(size)
        at_ratio = _evaluate_at(spec, model, records, categories, dataclasses.replace(
            experiment, input_size=size, stuff_area=settings.stuff_area, nms_kernel=settings.nms_kernel))
        metrics.update({f"{name}@{ratio:g}": value for name, value in at_ratio.items() if "[" not in name})
    timing = {"train_seconds": train_seconds, "eval_seconds": round(time.perf_counter() - began, 1)}
    return metrics, timing, _model_facts(spec, experiment.input_size, len(class_of)), validation.curve()


def _scaled(size: tuple[int, int], ratio: float) -> tuple[int, int]:
    """size x ratio, kept of the form 16k + 1 (Panoptic-DeepLab's crops; corners align)."""
    return tuple(max(17, int(round((n - 1) * ratio / 16)) * 16 + 1) for n in size)


def _evaluate_at(spec, model, records, categories, experiment) -> dict:
    """The trained weights in a model built at the experiment's input size, evaluated on `records`
    with its post-processing and fit."""
    weights = model.get_weights()

    def build(size):
        built = spec.build(tuple(size))
        built.set_weights(weights)
        return built

    return evaluate_panoptic(build(experiment.input_size), records, categories, experiment.input_size,
                             fit=experiment.eval_fit, scale=experiment.eval_scale, scales=experiment.inference_scales,
                             flip=experiment.flip, build=build, **experiment.postprocess())


def evaluate_panoptic(model, records, categories, input_size, fit: str = "resize", scale: float = 1.0,
                      scales: tuple[float, ...] = (1.0,), flip: bool = False, build=None, **postprocess) -> dict:
    """PQ, PQ_Th, PQ_St, mIoU, AP and each class' PQ ("PQ[<name>]"; None for a class with
    neither ground truth nor predictions), in percent, of a panoptic `model` built at `input_size` on
    the `records` of data/coco_panoptic.py, whose `categories` give the classes (sorted ids) and
    things.  AP is Cityscapes' instance AP (Tab. 5-8's), of the post-processed instances scored
    as Panoptic-DeepLab scores them (center heat times mean class probability).  `postprocess` overrides PostProcessConfig's settings (stuff_area, center_threshold,
    nms_kernel, top_k, label_divisor).

    fit="resize": each image is resized to input_size and the outputs back to the ground truth.
    fit="pad": deeplab2's Cityscapes evaluation (and the model zoo's): the image is padded at the
    bottom and right to input_size with the mean pixel, the outputs are post-processed at that
    size and the prediction cropped back to the ground truth.
    fit="longest-pad": deeplab2's COCO evaluation: the image resized (aspect kept) so that it
    just fits input_size, then padded as above; the outputs are cropped to the resized image,
    resized back to the ground truth and post-processed there.
    `scale` (pad only) first resizes the image by that factor; outputs go back to the ground
    truth as with longest-pad (a smoke test's small input on the datasets' images).
    `scales` and `flip`: multi-scale (+ flip) inference (image_outputs), with `build(size)` giving
    the model at another scale's input size."""
    from data import coco_panoptic
    from evaluation.cityscapes_ap import CityscapesInstanceAP
    from evaluation.panoptic_quality import PanopticQuality, Segment
    from evaluation.postprocess import PostProcessConfig, instance_predictions, panoptic_prediction
    from evaluation.semantic import MeanIoU

    class_of = {cat: index for index, cat in enumerate(sorted(categories))}
    category_of = {index: cat for cat, index in class_of.items()}
    thing_classes = tuple(class_of[c] for c, info in categories.items() if info.get("isthing"))
    postprocess = {"label_divisor": 1000, "void_class": 255, **postprocess}
    config = PostProcessConfig(thing_classes=thing_classes, **postprocess)
    quality = PanopticQuality({c: bool(info.get("isthing")) for c, info in categories.items()})
    miou = MeanIoU(len(class_of), ignore_label=255)
    # Cityscapes AP's label ids: class index + 1 (0 is void); thing instances label * 1000 + k.
    instance_ap = CityscapesInstanceAP({class_of[c] + 1: str(info.get("name", c)) for c, info in categories.items()
                                        if info.get("isthing")}, void_labels=[0])
    built = {tuple(input_size): model}

    def models(size):
        if size not in built:
            if build is None:
                raise ValueError("multi-scale evaluation needs `build` (a model at each scale's size)")
            built[size] = build(size)
        return built[size]

    for record in records:
        example = coco_panoptic.load_example(record)
        outputs = image_outputs(models, example["image"], input_size, fit, scale, scales, flip, record)
        panoptic = panoptic_prediction(outputs["semantic"], outputs["center"], outputs["offset"], config)
        pred_segments = {}
        for pid in np.unique(panoptic):
            cls = int(pid) // config.label_divisor
            if cls != config.void_class:
                pred_segments[int(pid) + 1] = Segment(category_of[cls])
        pred_ids = np.where(panoptic // config.label_divisor == config.void_class, 0, panoptic + 1)
        gt_segments = {k: Segment(v.category_id, v.iscrowd) for k, v in record.segments.items()}
        quality.update(example["ids"], gt_segments, pred_ids, pred_segments)
        semantic_gt = np.vectorize(lambda c: class_of.get(int(c), 255))(example["semantic"])
        miou.update(semantic_gt, outputs["semantic"].argmax(-1))
        instances = instance_predictions(panoptic, outputs["semantic"], outputs["center"], config)
        instance_ap.update(_cityscapes_instance_ids(example["ids"], record.segments, class_of),
                           [mask for mask, _, _ in instances], [cls + 1 for _, cls, _ in instances],
                           [score for _, _, score in instances])
    pq = quality.result()
    per_class = {f"PQ[{info.get('name', c)}]": _percent(pq["per_class"][c]["pq"]) if c in pq["per_class"] else None
                 for c, info in sorted(categories.items())}
    return {"PQ": _percent(pq["All"]["pq"]), "PQ_Th": _percent(pq["Things"]["pq"]),
            "PQ_St": _percent(pq["Stuff"]["pq"]), "mIoU": _percent(miou.result()["miou"]),
            "AP": _percent(instance_ap.result()["ap"]), **per_class}


def _fitted_outputs(model, image, input_size, fit: str, scale: float, record) -> dict:
    """One image's heads at the image's own size: the fit's preprocessing, the model, and back
    (evaluate_panoptic's `fit` and `scale`)."""
    from data.image_ops import resize_bilinear
    from evaluation.postprocess import upsample_heads
    from training.pipeline import normalize

    h, w = image.shape[:2]
    if fit == "pad" and scale == 1.0:
        padded = _pad(image.astype(np.float32), input_size, record)
        heads = {k: v[0] for k, v in model.predict_on_batch(normalize(padded)[None]).items()}
        return {k: v[:h, :w] for k, v in upsample_heads(heads, tuple(input_size)).items()}
    if fit in ("pad", "longest-pad"):
        factor = scale if fit == "pad" else min(input_size[0] / h, input_size[1] / w)
        size = (max(1, round(h * factor)), max(1, round(w * factor)))
        padded = _pad(resize_bilinear(image, size).astype(np.float32), input_size, record)
        heads = {k: v[0] for k, v in model.predict_on_batch(normalize(padded)[None]).items()}
        fitted = {k: v[:size[0], :size[1]] for k, v in upsample_heads(heads, tuple(input_size)).items()}
        return upsample_heads(fitted, (h, w))
    if fit == "resize":
        resized = resize_bilinear(image, input_size)
        heads = {k: v[0] for k, v in model.predict_on_batch(normalize(resized)[None]).items()}
        return upsample_heads(heads, (h, w))
    raise ValueError(f"unknown evaluation fit {fit!r}; expected resize, pad or longest-pad")


def image_outputs(models, image, input_size, fit: str, scale: float = 1.0, scales: tuple[float, ...] = (1.0,),
                  flip: bool = False, record=None) -> dict:
    """One image's heads at its own size, from the model at one scale, or averaged over
    multi-scale (+ flip) inference as Panoptic-DeepLab's reference does it [18]: at each scale s
    the input is (n - 1) s + 1 per side (the image scaled with it), each pass's semantic softmax,
    centre heatmap and offsets are brought back to the image (offsets rescaled; a flipped pass
    flipped back, its x offsets negated) and averaged; the semantic output is the log of the mean
    probability, so that post-processing's softmax gives that mean.  models(size): the model
    built at `size`."""
    from evaluation.postprocess import softmax

    if tuple(scales) == (1.0,) and not flip:
        return _fitted_outputs(models(tuple(input_size)), image, input_size, fit, scale, record)
    total, passes = {}, 0
    for s in scales:
        size = tuple(int((n - 1) * s + 1) for n in input_size)
        for flipped in (False, True) if flip else (False,):
            out = _fitted_outputs(models(size), image[:, ::-1] if flipped else image, size, fit,
                                  scale * s if fit == "pad" else scale, record)
            out = {"semantic": softmax(out["semantic"]), "center": out["center"], "offset": out["offset"]}
            if flipped:
                out = {k: v[:, ::-1] for k, v in out.items()}
                out["offset"] = out["offset"] * np.array([1.0, -1.0], np.float32)
            total = {k: total.get(k, 0) + v for k, v in out.items()}
            passes += 1
    mean = {k: v / passes for k, v in total.items()}
    mean["semantic"] = np.log(np.maximum(mean["semantic"], 1e-12))
    return mean


def _cityscapes_instance_ids(ids: np.ndarray, segments: dict, class_of: dict) -> np.ndarray:
    """Ground truth in Cityscapes' instance-id encoding: void 0, stuff and crowd regions their
    label (class index + 1), thing instances label * 1000 + k."""
    out = np.zeros(ids.shape, np.int64)
    for k, (segment_id, info) in enumerate(sorted(segments.items()), 1):
        label = class_of[info.category_id] + 1
        out[ids == segment_id] = label * 1000 + k if info.is_thing and not info.iscrowd else label
    return out


def _pad(image: np.ndarray, size, record) -> np.ndarray:
    """Bottom/right padding to `size` with the mean pixel 127.5 (0 after normalisation), as
    deeplab2's evaluation input (data/preprocessing/input_preprocessing.py)."""
    h, w = image.shape[:2]
    if h > size[0] or w > size[1]:
        raise ExperimentError(f"{record.image_path} is {h}x{w}, larger than the evaluation input "
                              f"{size[0]}x{size[1]}")
    return np.pad(image, ((0, size[0] - h), (0, size[1] - w), (0, 0)), constant_values=127.5)


def _percent(value) -> float | None:
    return None if value is None else 100 * float(value)


def summarize(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1) over seeds."""
    array = np.asarray(values, float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


# --- the suite's recipes, declared once for every table ------------------------------------

# Classification proxy (Tab. 1 / 9): Fashion-MNIST at its own scale (28 px, resized to 32).
# One recipe for every proxy model: the paper's own optimiser (RAdam + Lookahead, linear
# warm-up, poly decay, Sec. 4), which trains every architecture without per-model tuning;
# the ImageNet recipe of [65] (SGD for 90+ epochs at batch 1024) is not a few-minute CPU run.
# Its learning rate, 0.004 (the paper's 0.001 x 4), was chosen on ResNet-50's proxy alone,
# before any attention model's proxy ran, so that 100 steps learn (at 0.001 they barely
# did; 300 steps at 0.001 did too, at three times the cost; figures in issue #5's note).
CLASSIFICATION_PROXY_DATA = Data("fashion-mnist", train=500, val=100)
CLASSIFICATION_PROXY_RECIPE = Recipe(steps=100, batch_size=32, crop_size=(32, 32), learning_rate=0.004,
                                     warmup_steps=10, checkpoint_every=25)

IMAGENET_TRAIN_IMAGES = 1_281_167


def classification_proxy(preset: str) -> Experiment:
    return Experiment(preset, CLASSIFICATION_PROXY_DATA, CLASSIFICATION_PROXY_RECIPE, (32, 32))


def panoptic_full(preset: str, dataset: str, backbone_changes: tuple = (), multi_scale: bool = False) -> Experiment:
    """The paper's panoptic recipe on `dataset` (recipes/panoptic.csv, training/full_recipes.py)
    for the preset's own model (no proxy rule): training crop, batch, steps and augmentation,
    the dataset's evaluation input and post-processing, and the preset's inference (an -ms
    row's scales and flip: the same training as its single-scale row, evaluated otherwise;
    `multi_scale` asks for the dataset's, models/presets.py, for a row whose preset has none)."""
    from training import full_recipes

    from models import presets

    evaluation = full_recipes.evaluation(dataset)
    inference = presets.get(preset)
    if multi_scale:
        inference = dataclasses.replace(inference, inference_scales=presets.DATASETS[dataset].ms_scales, flip=True)
    return Experiment(preset, Data(dataset), full_recipes.recipe(dataset), evaluation["eval_size"], proxy_width=None,
                      inference_scales=inference.inference_scales, flip=inference.flip,
                      stuff_area=evaluation["stuff_area"], nms_kernel=evaluation["nms_kernel"],
                      top_k=evaluation["top_k"], center_threshold=evaluation["center_threshold"],
                      label_divisor=evaluation["label_divisor"], eval_fit=evaluation["eval_fit"],
                      validate_every=evaluation["validate_every"], backbone_changes=backbone_changes)


def imagenet_full(preset: str) -> Experiment:
    """The paper's ImageNet recipe: [65]'s protocol with batch 1024 (512 for Full
    Axial-ResNets) and the learning rate scaled linearly with it (Sec. 4).  [65]'s protocol
    is not in the material here; assumed from it: SGD with Nesterov momentum 0.9, cosine
    decay, label smoothing 0.1, base lr 0.1 per 256 images, 90 epochs, 224 px Inception
    crops, evaluation on a 0.875 central crop."""
    from models import presets

    batch = 512 if presets.get(preset).backbone.stem == "axial" else 1024
    steps = 90 * IMAGENET_TRAIN_IMAGES // batch
    recipe = Recipe(steps=steps, batch_size=batch, crop_size=(224, 224), learning_rate=0.1 * batch / 256,
                    warmup_steps=5 * IMAGENET_TRAIN_IMAGES // batch, checkpoint_every=5000,
                    optimizer="sgd-nesterov", schedule="cosine", label_smoothing=0.1)
    return Experiment(preset, Data("imagenet"), recipe, (224, 224), proxy_width=None, eval_crop_fraction=0.875)
