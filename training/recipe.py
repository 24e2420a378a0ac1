"""What to train and where, as plain data: the recipe, and the names of the device options.

Kept free of any numerical library so that command lines can validate their flags (and answer
`--help`) before TensorFlow or JAX is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

STRATEGIES = ("default", "mirrored", "multi-worker", "tpu")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
OPTIMIZERS = ("radam-lookahead", "sgd-nesterov")
SCHEDULES = ("poly", "cosine")


def repr_without_later_defaults(instance) -> str:
    """A dataclass' repr without the fields added after results were keyed on it (metadata
    `keyed_when_set`) while they keep their default: the repr keys runs and tables
    (training/identity.py, reproductions/trained.py), so a field added later leaves the keys of
    every run that does not set it as they were."""
    shown = ", ".join(f"{f.name}={getattr(instance, f.name)!r}" for f in fields(instance)
                      if f.repr and not (f.metadata.get("keyed_when_set") and getattr(instance, f.name) == f.default))
    return f"{type(instance).__name__}({shown})"


class TrainingError(RuntimeError):
    """A problem the user must fix (no TPU, a bad precision for the device); one line."""


@dataclass(frozen=True)
class Recipe:
    """A training recipe.  The paper's panoptic one: RAdam + Lookahead at 0.001 with linear
    warm-up and poly decay (Sec. 4); its ImageNet one follows [65] (see experiments.py)."""

    steps: int
    batch_size: int
    crop_size: tuple[int, int]
    learning_rate: float = 0.001
    warmup_steps: int = 0
    checkpoint_every: int = 100
    seed: int = 0
    optimizer: str = "radam-lookahead"
    schedule: str = "poly"              # poly (Panoptic-DeepLab) or cosine
    label_smoothing: float = 0.0        # classification only
    # Panoptic-DeepLab's targets [18] (panoptic only), in pixels of the training crop: the centre
    # heatmap's Gaussian sigma, and the area below which a thing's semantic loss weighs 3x.
    # Fields added after results were keyed: in the repr (which keys runs) only when set.
    center_sigma: float = field(default=8.0, metadata={"keyed_when_set": True})
    small_instance_area: int = field(default=64 * 64, metadata={"keyed_when_set": True})
    # Panoptic-DeepLab's random scale augmentation (panoptic only): the range of the factor.
    scale_range: tuple[float, float] = field(default=(0.5, 2.0), metadata={"keyed_when_set": True})
    # ImageNet weights the backbone starts from (training/transfer.py; --init-from), or "" for
    # the seed's initialisation.  Out of the repr: the run is keyed on the file's content, not
    # on where it lies (training/identity.py).
    init_from: str = field(default="", repr=False)

    def __repr__(self) -> str:
        return repr_without_later_defaults(self)

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; expected one of {OPTIMIZERS}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; expected one of {SCHEDULES}")
