"""The training engine: a preset plus a recipe, trained by Keras' own `fit` on TensorFlow or
JAX, with checkpoints, exact resume, per-step logs and a progress bar (paper Sec. 4's recipes).

One engine for both backends: the network is wrapped in a `TaskModel` whose `compute_loss`
is the task's loss (Panoptic-DeepLab's three losses, or the ImageNet cross-entropy), and
`fit` runs the steps.  Data parallelism is `tf.distribute` on TensorFlow (mirrored,
multi-worker, TPU) and `keras.distribution.DataParallel` on JAX; batch norm statistics are
global either way (synchronised BN on TensorFlow, global arrays under JAX).

Exact resume: batches are a pure function of (seed, step) (training/pipeline.py), and a
checkpoint holds the network's weights, the optimiser's variables (slots, iteration count),
the random-generator states of the layers that draw (dropout) and the step, so a run stopped
at any point and restarted from its last checkpoint computes the same losses as an
uninterrupted one.  Every step's record reaches log.jsonl (flushed and fsynced) when the step
ends; a resumed run drops the records after its checkpoint before logging them again.

The task (its loss) comes from the batches: panoptic batches train with the Panoptic-DeepLab
losses, classification batches with cross-entropy (the ImageNet recipe).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import keras
import numpy as np
from keras import ops

from runtime.files import write_atomic
from training import losses
from training.optimizers import RAdamLookahead, WarmupPolyDecay
from training.recipe import PRECISIONS, STRATEGIES, Recipe, TrainingError  # noqa: F401 (re-exported)

CHECKPOINTS_KEPT = 2


# --- where training runs: strategies and precision -------------------------------------------

class Placement:
    """Where the steps run: a TensorFlow strategy, or a JAX distribution (or neither).

    `scope()` is the context that model building, compiling and fitting run in."""

    def __init__(self, name: str, tpu: str = ""):
        if name not in STRATEGIES:
            raise ValueError(f"unknown strategy {name!r}; expected one of {STRATEGIES}")
        self.name = name
        self.backend = keras.backend.backend()
        self.strategy = self.distribution = None
        if self.backend == "tensorflow":
            self.strategy = _tensorflow_strategy(name, tpu)
        elif name != "default":
            self.distribution = _jax_distribution(name)

    @property
    def replicas(self) -> int:
        if self.strategy is not None:
            return self.strategy.num_replicas_in_sync
        if self.distribution is not None:
            return len(self.distribution.device_mesh.devices.flatten())
        return 1

    def scope(self):
        if self.strategy is not None:
            return self.strategy.scope()
        if self.distribution is not None:
            return self.distribution.scope()
        import contextlib

        return contextlib.nullcontext()

    def on_tpu(self) -> bool:
        if self.strategy is not None:
            from runtime import backend

            return isinstance(self.strategy, backend.tensorflow().distribute.TPUStrategy)
        return self.backend == "jax" and _jax_platform() == "tpu"


def _tensorflow_strategy(name: str, tpu: str):
    """The tf.distribute strategy named by --strategy.  multi-worker reads the cluster from
    TF_CONFIG (one local worker without it); tpu connects to the TPU named by `tpu` (empty:
    the TPU VM's own)."""
    from runtime import backend

    tf = backend.tensorflow()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError, RuntimeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TrainingError(f"--strategy tpu: no TPU reachable ({first}); run on a TPU VM or "
                            "name one with --tpu") from None
    return tf.distribute.TPUStrategy(resolver)


def _jax_platform() -> str:
    import jax

    return jax.devices()[0].platform


def _jax_distribution(name: str):
    """keras.distribution's data parallelism over the devices JAX sees: mirrored (this
    machine's devices), multi-worker (every process's, after keras.distribution.initialize()
    reads the JAX coordinator settings), tpu (the TPU cores)."""
    import jax

    if name == "multi-worker":
        keras.distribution.initialize()
    if name == "tpu" and _jax_platform() != "tpu":
        raise TrainingError(f"--strategy tpu: JAX sees no TPU here (its devices: {_jax_platform()})")
    devices = jax.devices() if name != "mirrored" else jax.local_devices()
    return keras.distribution.DataParallel(devices=devices)


def resolve_precision(name: str, placement: Placement) -> str:
    """The Keras dtype policy: `auto` is mixed_bfloat16 on TPUs, mixed_float16 on GPUs with
    tensor cores (compute capability 7.0 or newer), float32 elsewhere (CPUs gain nothing)."""
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; expected one of {PRECISIONS}")
    if name != "auto":
        return name
    if placement.on_tpu():
        return "mixed_bfloat16"
    return "mixed_float16" if _tensor_core_gpu(placement.backend) else "float32"


def _tensor_core_gpu(backend_name: str) -> bool:
    if backend_name == "jax":
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        return any(float(getattr(d, "compute_capability", "0") or 0) >= 7.0 for d in gpus)
    from runtime import backend

    tf = backend.tensorflow()
    return any(tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0)) >= (7, 0)
               for gpu in tf.config.list_physical_devices("GPU"))


# --- the optimiser ---------------------------------------------------------------------------

def learning_rate_schedule(recipe: Recipe):
    if recipe.schedule == "poly":
        return WarmupPolyDecay(recipe.learning_rate, recipe.steps, recipe.warmup_steps)
    return keras.optimizers.schedules.CosineDecay(
        0.0 if recipe.warmup_steps else recipe.learning_rate,
        max(recipe.steps - recipe.warmup_steps, 1),
        warmup_target=recipe.learning_rate if recipe.warmup_steps else None,
        warmup_steps=recipe.warmup_steps)


def make_optimizer(recipe: Recipe, precision: str) -> keras.optimizers.Optimizer:
    schedule = learning_rate_schedule(recipe)
    if recipe.optimizer == "radam-lookahead":
        optimizer = RAdamLookahead(learning_rate=schedule)
    else:
        optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=0.9, nesterov=True)
    if precision == "mixed_float16":
        # float16 gradients underflow without loss scaling; bfloat16 has float32's range.
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


# --- the task: network + loss ---------------------------------------------------------------

def task_loss(task: str, recipe: Recipe):
    if task == "panoptic":
        return losses.panoptic_loss
    if task == "classification":
        return lambda targets, logits: losses.classification_loss(targets["label"], logits,
                                                                  recipe.label_smoothing)
    raise ValueError(f"unknown task {task!r}; expected panoptic or classification")


LOSS_TERMS = {"panoptic": ("total", "semantic", "center", "offset"),
              "classification": ("total", "cross_entropy")}


class LatestValue(keras.metrics.Metric):
    """A metric whose result is the value of the last step (Keras' Mean would average the
    epoch).  Under tf.distribute the replicas' values are averaged: each is its shard's
    per-image mean, so their mean is the batch's."""

    def __init__(self, name: str, **kwargs):
        super().__init__(name=name, **kwargs)
        self.value = self.add_variable(shape=(), initializer="zeros", aggregation="mean", name="value")

    def update_state(self, value):
        self.value.assign(ops.cast(value, self.value.dtype))

    def result(self):
        return ops.convert_to_tensor(self.value)


def per_replica(loss):
    """Under tf.distribute each replica's loss is divided by the replica count, because the
    replicas' gradients are summed; JAX's data parallelism computes one global loss."""
    if keras.backend.backend() != "tensorflow":
        return loss
    from runtime import backend

    replicas = backend.tensorflow().distribute.get_strategy().num_replicas_in_sync
    return loss / replicas if replicas > 1 else loss


class TaskModel(keras.Model):
    """The network with its task's loss, for Keras' `fit`: `compute_loss` returns the recipe's
    total loss (computed in float32 whatever the compute dtype) and records every term."""

    def __init__(self, network: keras.Model, task: str, loss_fn, **kwargs):
        super().__init__(name="task_model", **kwargs)
        self.network = network
        self.loss_fn = loss_fn
        self.terms = [LatestValue(term) for term in LOSS_TERMS[task]]
        self.built = network.built  # the network's weights exist: nothing more to build

    def call(self, inputs, training=False):
        return self.network(inputs, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        y_pred = keras.tree.map_structure(lambda t: ops.cast(t, "float32"), y_pred)
        parts = self.loss_fn(y, y_pred)
        for term in self.terms:
            term.update_state(parts[term.name])
        return per_replica(parts["total"])

    @property
    def metrics(self):
        return list(self.terms)


# --- data, logs, checkpoints, progress -------------------------------------------------------

class StepBatches(keras.utils.PyDataset):
    """Steps start..stop-1 of a run as a Keras dataset: item i is batches.batch(start + i)."""

    def __init__(self, batches, start: int, stop: int):
        super().__init__(workers=1, use_multiprocessing=False, max_queue_size=2)
        self.batches, self.start, self.stop = batches, start, stop

    def __len__(self):
        return self.stop - self.start

    def __getitem__(self, index):
        return self.batches.batch(self.start + index)


class StepLog:
    """The per-step JSONL log of a run: one record per finished step, on disk when the step ends.

    Each record is flushed and fsynced as it is written, so a run killed at any moment keeps
    every step it finished.  A resumed run restarts at its last checkpoint, so the records of
    steps after it (computed again now) are dropped first: each step is logged once."""

    def __init__(self, path: Path, start: int):
        self.path = path
        kept = []
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a kill
                if record.get("step", start) < start:
                    kept.append(line)
        write_atomic(path, "".join(line + "\n" for line in kept))
        self.file = None

    def __enter__(self):
        self.file = self.path.open("a")
        return self

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def __exit__(self, *exc):
        self.file.close()


class Checkpoints:
    """ckpt-<step>.weights.h5 (network and optimiser, Keras' own format), ckpt-<step>.rng.npz
    (the layers' random-generator states, which .weights.h5 leaves out) and checkpoint.json
    naming the latest; the last CHECKPOINTS_KEPT are kept.  Each file is written whole or not
    at all, and checkpoint.json only after the files it names."""

    def __init__(self, directory: Path):
        self.directory = directory

    def latest(self) -> int:
        index = self.directory / "checkpoint.json"
        return json.loads(index.read_text())["step"] if index.exists() else 0

    @staticmethod
    def _generator_states(model) -> list:
        return [v for v in model.variables if "seed_generator_state" in v.path]

    def save(self, model: TaskModel, step: int) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        weights = self.directory / f"ckpt-{step}.weights.h5"
        partial = self.directory / f".partial-ckpt-{step}.weights.h5"
        model.save_weights(partial)
        os.replace(partial, weights)
        rng = self.directory / f"ckpt-{step}.rng.npz"
        with open(rng.with_suffix(".partial"), "wb") as f:
            np.savez(f, *[np.asarray(v) for v in self._generator_states(model)])
        os.replace(rng.with_suffix(".partial"), rng)
        write_atomic(self.directory / "checkpoint.json", json.dumps({"step": step, "weights": weights.name}) + "\n")
        saved = sorted(int(p.name[len("ckpt-"):-len(".weights.h5")]) for p in self.directory.glob("ckpt-*.weights.h5"))
        for old in saved[:-CHECKPOINTS_KEPT]:
            (self.directory / f"ckpt-{old}.weights.h5").unlink(missing_ok=True)
            (self.directory / f"ckpt-{old}.rng.npz").unlink(missing_ok=True)

    def restore(self, model: TaskModel, step: int) -> None:
        model.load_weights(self.directory / f"ckpt-{step}.weights.h5")
        with np.load(self.directory / f"ckpt-{step}.rng.npz") as stored:
            for variable, key in zip(self._generator_states(model), sorted(stored.files, key=lambda k: int(k[4:]))):
                variable.assign(stored[key])


class StepCallback(keras.callbacks.Callback):
    """Per finished step: the log record, the progress bar, and the checkpoint when due.

    (It touches `self.model` only to save: under JAX that attaches the step's state to the
    model, which would slow every step down.)"""

    def __init__(self, start: int, until: int, recipe: Recipe, log: StepLog, checkpoints: Checkpoints,
                 bar, records: list):
        super().__init__()
        self.start, self.until, self.recipe = start, until, recipe
        self.log, self.checkpoints, self.bar, self.records = log, checkpoints, bar, records
        self.began = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        self.began = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        step = self.start + batch
        record = {"step": step, **{k: float(v) for k, v in (logs or {}).items()},
                  "images_per_second": self.recipe.batch_size / (time.perf_counter() - self.began)}
        self.records.append(record)
        self.log.write(record)
        self.bar.update()
        self.bar.set_postfix(loss=f"{record['total']:.4f}", img_s=f"{record['images_per_second']:.1f}")
        if (step + 1) % self.recipe.checkpoint_every == 0 or step + 1 == self.until:
            self.checkpoints.save(self.model, step + 1)


# --- the trainer -----------------------------------------------------------------------------

class Trainer:
    """Trains `build_model()` on `batches` (anything with .task and .batch(step)) by `recipe`.

    `strategy` and `precision` are device choices, not part of the recipe: a run resumed
    under another strategy continues the same optimisation.  `model` is the network, with
    the weights of the last finished step."""

    def __init__(self, build_model, batches, recipe: Recipe, workdir: str | Path,
                 strategy: str = "default", precision: str = "float32", tpu: str = "",
                 jit_compile: bool | str = "auto"):
        self.recipe = recipe
        self.batches = batches
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        keras.utils.set_random_seed(recipe.seed)
        self.placement = Placement(strategy, tpu)
        self.precision = resolve_precision(precision, self.placement)
        if recipe.batch_size % self.placement.replicas:
            raise TrainingError(f"batch size {recipe.batch_size} is not divisible by the "
                                f"{self.placement.replicas} replicas of --strategy {strategy}")
        previous_policy = keras.config.dtype_policy()
        keras.config.set_dtype_policy(self.precision)
        try:
            with self.placement.scope():
                self.model = build_model()
                self.task_model = TaskModel(self.model, batches.task, task_loss(batches.task, recipe))
                self.task_model.compile(optimizer=make_optimizer(recipe, self.precision),
                                        jit_compile=self._jit(jit_compile))
                self.task_model.optimizer.build(self.task_model.trainable_variables)
        finally:
            keras.config.set_dtype_policy(previous_policy)
        self.checkpoints = Checkpoints(self.workdir / "checkpoints")
        self.step = self.checkpoints.latest()
        if self.step:
            self.checkpoints.restore(self.task_model, self.step)
        write_atomic(self.workdir / "recipe.json", json.dumps(asdict(self.recipe), indent=1))

    def _jit(self, jit_compile):
        """JAX always compiles with XLA; on TensorFlow, graph mode without XLA unless asked
        (XLA's first step takes long and it sped up some shapes here and slowed others)."""
        if jit_compile != "auto":
            return jit_compile
        return self.placement.backend == "jax"

    def train(self, until: int | None = None, progress: bool = True, desc: str = "training") -> list[dict]:
        """Trains from the current step to `until` (default: the recipe's steps); returns the logs."""
        from tqdm import tqdm

        until = self.recipe.steps if until is None else min(until, self.recipe.steps)
        records: list[dict] = []
        if until <= self.step:
            return records
        bar = tqdm(total=until, initial=self.step, desc=desc, unit="step", file=sys.stderr,
                   disable=None if progress else True)
        try:
            with StepLog(self.workdir / "log.jsonl", self.step) as log, self.placement.scope():
                callback = StepCallback(self.step, until, self.recipe, log, self.checkpoints, bar, records)
                self.task_model.fit(StepBatches(self.batches, self.step, until), epochs=1, verbose=0,
                                    callbacks=[callback], shuffle=False)
        finally:
            bar.close()
        self.step = until
        return records
