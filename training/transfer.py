"""ImageNet -> panoptic: a panoptic model's backbone initialised from ImageNet weights (issue #26,
part 2).

Sec. 4: Axial-DeepLab starts from "ImageNet-pretrained Axial-ResNets" and Panoptic-DeepLab's
baselines from ImageNet-pretrained backbones.  The ImageNet model of a panoptic model is the
classifier of its own backbone, stem included, at output stride 32 (`imagenet_spec`): the same
variables, since a stride traded for atrous rates changes no weight and an axial layer's
positional embeddings are sized by its span, not by the input.

`--init-from WEIGHTS` names a Keras `.weights.h5` of that classifier (`model.save_weights`) or a
checkpoint of this suite's trainer for it (`ckpt-<step>.weights.h5` of a full ImageNet run).
The weights are read into the classifier, then copied layer by layer, by name, into the panoptic
model; the account says what was loaded, what of the file was skipped (the classifier's head)
and what is newly initialised (decoders and heads).  A file that does not hold this backbone --
another family, width, depth or stem -- is an error: a backbone is never left random silently.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.experiments import ExperimentError

# The classifier is rebuilt only to read the file: its input size changes no weight.
READ_SIZE = (65, 65)
HEAD = "head_fc"


class TransferError(ExperimentError):
    """Weights that cannot initialise the model; one line, naming the file."""


def imagenet_spec(spec):
    """The ImageNet classifier of a panoptic model's backbone (ClassifierSpec)."""
    from models.classifier import ClassifierSpec

    return ClassifierSpec(dataclasses.replace(spec.backbone, output_stride=32))


@dataclass
class Account:
    """What an initialisation did: layer names loaded, skipped (in the file, not the model) and
    newly initialised (in the model, not the file), and the parameters loaded."""

    source: str
    loaded: list[str]
    skipped: list[str]
    initialised: list[str]
    parameters: int

    def describe(self) -> str:
        return (f"--init-from {self.source}: loaded {len(self.loaded)} backbone layers "
                f"({self.parameters / 1e6:.2f} M parameters); skipped {', '.join(self.skipped) or 'nothing'}; "
                f"newly initialised {len(self.initialised)} layers (decoders and heads)")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def digest(path: str | Path) -> str:
    """The file's content, hashed (a run initialised from other weights is another run).  A run's
    key is computed several times per table (plan, run, result file): the hash of a file of
    hundreds of MB is taken once per version of it (path, size, modification time)."""
    stat = Path(path).stat()
    return _digest(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=None)
def _digest(path: str, size: int, modified: int) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:16]


def read_classifier(path: str | Path, spec):
    """The classifier `spec` with the file's weights; TransferError when they do not fit."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise TransferError(f"--init-from {path}: file not found")
    try:
        with h5py.File(path, "r") as handle:
            trainer_checkpoint = "layers/functional" in handle
    except OSError:
        raise TransferError(f"--init-from {path}: not a Keras .weights.h5 file") from None
    network = spec.build(READ_SIZE)
    fresh = {layer.name: [np.array(w) for w in layer.get_weights()] for layer in network.layers if layer.weights}
    target = network
    if trainer_checkpoint:  # the trainer saves the network inside its TaskModel (training/engine.py)
        from training.engine import TaskModel

        target = TaskModel(network, "classification", None)
    try:
        target.load_weights(str(path))
    except (ValueError, KeyError, TypeError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise TransferError(f"--init-from {path} does not hold this model's ImageNet classifier "
                            f"(backbone {spec.backbone.family}, width x{spec.backbone.width_multiplier:g}, "
                            f"stem {spec.backbone.stem}): {first}") from None
    # Keras may load a file of another structure in part and only warn: every backbone layer
    # must have changed from its fresh initialisation.
    unchanged = [name for name, weights in fresh.items()
                 if all(np.array_equal(a, b) for a, b in zip(weights, network.get_layer(name).get_weights()))]
    if unchanged:
        raise TransferError(f"--init-from {path}: {len(unchanged)} of the backbone's {len(fresh)} layers were not "
                            f"in the file (first: {unchanged[0]}); it does not hold this backbone")
    return network


def transfer(target, source, name: str = "") -> Account:
    """Copy every layer of `source` (a classifier) into the layer of the same name in `target`."""
    source_layers = {layer.name: layer for layer in source.layers if layer.weights}
    loaded, initialised, parameters = [], [], 0
    for layer in target.layers:
        if not layer.weights:
            continue
        origin = source_layers.get(layer.name)
        if origin is None:
            initialised.append(layer.name)
            continue
        weights = origin.get_weights()
        if [w.shape for w in weights] != [tuple(w.shape) for w in layer.weights]:
            raise TransferError(f"--init-from {name}: layer {layer.name} has shapes "
                                f"{[w.shape for w in weights]} in the file, "
                                f"{[tuple(w.shape) for w in layer.weights]} in the model")
        layer.set_weights(weights)
        loaded.append(layer.name)
        parameters += sum(int(np.prod(w.shape)) for w in origin.trainable_weights)
    missing = sorted(set(source_layers) - set(loaded) - {HEAD})
    if missing or not loaded:
        raise TransferError(f"--init-from {name}: the model has no layer named {missing[0] if missing else 'as the file'}"
                            "; the file's backbone is not this model's")
    return Account(str(name), loaded, sorted(set(source_layers) - set(loaded)), initialised, parameters)


def initialize(model, spec, path: str | Path, record: Path | None = None) -> Account:
    """Initialise a panoptic `model` (built from `spec`) from the ImageNet weights at `path`;
    print the account, and write it to `record` (the run's init.json) if given."""
    account = transfer(model, read_classifier(path, imagenet_spec(spec)), str(path))
    print(account.describe())
    if record is not None:
        from runtime.files import write_atomic

        write_atomic(record, json.dumps({**account.as_dict(), "digest": digest(path)}, indent=1) + "\n")
    return account
