"""The training engine: a preset plus a recipe, trained under a tf.distribute strategy, with
checkpoints, exact resume, per-step logs and a progress bar (paper Sec. 4's recipes).

Exact resume: batches are a pure function of (seed, step) (training/pipeline.py), and the
checkpoint holds the model, the optimiser (its slots and iteration count) and the step, so
a run stopped after any checkpoint and restarted from it computes the same losses as an
uninterrupted run.

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
import tensorflow as tf

from training import losses
from training.optimizers import RAdamLookahead, WarmupPolyDecay
from training.recipe import PRECISIONS, STRATEGIES, Recipe, TrainingError  # noqa: F401 (re-exported)


def make_strategy(name: str, tpu: str = "") -> tf.distribute.Strategy:
    """The strategy named by the --strategy flag.

    multi-worker reads the cluster from TF_CONFIG (one local worker without it); tpu connects
    to the TPU named by `tpu` (empty: the TPU VM's own)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError, RuntimeError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise TrainingError(f"--strategy tpu: no TPU reachable ({first}); run on a TPU VM or "
                                "name one with --tpu") from None
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"unknown strategy {name!r}; expected one of {STRATEGIES}")


def resolve_precision(name: str, strategy: tf.distribute.Strategy) -> str:
    """The Keras dtype policy: `auto` is mixed_bfloat16 on TPUs, mixed_float16 on GPUs with
    tensor cores (compute capability 7.0 or newer), float32 elsewhere (CPUs gain nothing)."""
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; expected one of {PRECISIONS}")
    if name != "auto":
        return name
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "mixed_bfloat16"
    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0))
        if capability >= (7, 0):
            return "mixed_float16"
    return "float32"


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


def task_loss(task: str, recipe: Recipe):
    if task == "panoptic":
        return losses.panoptic_loss
    if task == "classification":
        return lambda targets, logits: losses.classification_loss(targets["label"], logits,
                                                                  recipe.label_smoothing)
    raise ValueError(f"unknown task {task!r}; expected panoptic or classification")


class Trainer:
    """Trains `build_model()` on `batches` (anything with .task and .batch(step)) by `recipe`.

    `strategy` and `precision` are device choices, not part of the recipe: a run resumed
    under another strategy continues the same optimisation."""

    def __init__(self, build_model, batches, recipe: Recipe, workdir: str | Path,
                 strategy: str = "default", precision: str = "float32", tpu: str = ""):
        self.recipe = recipe
        self.batches = batches
        self.loss = task_loss(batches.task, recipe)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        keras.utils.set_random_seed(recipe.seed)
        self.strategy = make_strategy(strategy, tpu)
        self.precision = resolve_precision(precision, self.strategy)
        previous_policy = keras.config.dtype_policy()
        keras.config.set_dtype_policy(self.precision)
        try:
            with self.strategy.scope():
                self.model = build_model()
                self.optimizer = make_optimizer(recipe, self.precision)
                self.optimizer.build(self.model.trainable_variables)
                self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        finally:
            keras.config.set_dtype_policy(previous_policy)
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, step=self.step)
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.workdir / "checkpoints", max_to_keep=2)
        if self.manager.latest_checkpoint:
            self.checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
        (self.workdir / "recipe.json").write_text(json.dumps(asdict(recipe), indent=1))

    @tf.function
    def _train_step(self, images, targets):
        def replica_step(images, targets):
            with tf.GradientTape() as tape:
                outputs = self.model(images, training=True)
                # Losses in float32 whatever the compute dtype (mixed precision).
                outputs = tf.nest.map_structure(lambda t: tf.cast(t, tf.float32), outputs)
                loss = self.loss(targets, outputs)
                scaled = loss["total"] / self.strategy.num_replicas_in_sync
                if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
                    scaled = self.optimizer.scale_loss(scaled)
            grads = tape.gradient(scaled, self.model.trainable_variables)
            self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
            return loss

        per_replica = self.strategy.run(replica_step, args=(images, targets))
        return {k: self.strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
                for k, v in per_replica.items()}

    def _distribute(self, array: np.ndarray):
        """One equal slice of the batch per replica (plain tensors would reach every replica whole).

        Every worker builds the same global batch (it is a function of seed and step) and
        keeps the slices of its own replicas, found by their global replica ids."""
        replicas = self.strategy.num_replicas_in_sync
        if replicas == 1:
            return tf.constant(array)
        if len(array) % replicas:
            raise ValueError(f"batch size {len(array)} is not divisible by the {replicas} replicas")
        per = len(array) // replicas
        return self.strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(array[ctx.replica_id_in_sync_group * per:(ctx.replica_id_in_sync_group + 1) * per]))

    def train(self, until: int | None = None, progress: bool = True, desc: str = "training") -> list[dict]:
        """Trains from the current step to `until` (default: the recipe's steps); returns the logs."""
        from tqdm import tqdm

        until = self.recipe.steps if until is None else min(until, self.recipe.steps)
        logs = []
        start = int(self.step.numpy())
        bar = tqdm(range(start, until), initial=start, total=until, desc=desc, unit="step",
                   file=sys.stderr, disable=None if progress else True)
        with StepLog(self.workdir / "log.jsonl", start) as log:
            for step in bar:
                began = time.perf_counter()
                images, targets = self.batches.batch(step)
                result = self._train_step(self._distribute(images),
                                          {k: self._distribute(v) for k, v in targets.items()})
                self.step.assign(step + 1)
                record = {"step": step, **{k: float(v) for k, v in result.items()},
                          "images_per_second": len(images) / (time.perf_counter() - began)}
                logs.append(record)
                log.write(record)
                bar.set_postfix(loss=f"{record['total']:.4f}", img_s=f"{record['images_per_second']:.1f}")
                if (step + 1) % self.recipe.checkpoint_every == 0 or step + 1 == until:
                    self.manager.save(checkpoint_number=step + 1)
        return logs


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
        from runtime.files import write_atomic

        write_atomic(path, "".join(line + "\n" for line in kept))

    def __enter__(self):
        self.file = self.path.open("a")
        return self

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def __exit__(self, *exc):
        self.file.close()
