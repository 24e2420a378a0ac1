"""The training engine: a preset plus a recipe, trained under a tf.distribute strategy, with
checkpoints, exact resume, per-step logs and a progress bar (paper Sec. 4's recipes).

Exact resume: batches are a pure function of (seed, step) (training/pipeline.py), and the
checkpoint holds the model, the optimiser (its slots and iteration count) and the step, so
a run stopped after any checkpoint and restarted from it computes the same losses as an
uninterrupted run.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from training import losses
from training.optimizers import RAdamLookahead, WarmupPolyDecay

STRATEGIES = ("default", "mirrored")


@dataclass(frozen=True)
class Recipe:
    """A training recipe; the paper's panoptic one uses RAdam + Lookahead at 0.001 (Sec. 4)."""

    steps: int
    batch_size: int
    crop_size: tuple[int, int]
    learning_rate: float = 0.001
    warmup_steps: int = 0
    checkpoint_every: int = 100
    seed: int = 0


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}; expected one of {STRATEGIES}")


class Trainer:
    def __init__(self, build_model, batches, recipe: Recipe, workdir: str | Path, strategy: str = "default"):
        self.recipe = recipe
        self.batches = batches
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        keras.utils.set_random_seed(recipe.seed)
        self.strategy = make_strategy(strategy)
        with self.strategy.scope():
            self.model = build_model()
            schedule = WarmupPolyDecay(recipe.learning_rate, recipe.steps, recipe.warmup_steps)
            self.optimizer = RAdamLookahead(learning_rate=schedule)
            self.optimizer.build(self.model.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
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
                loss = losses.panoptic_loss(targets, outputs)
                scaled = loss["total"] / self.strategy.num_replicas_in_sync
            grads = tape.gradient(scaled, self.model.trainable_variables)
            self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
            return loss

        per_replica = self.strategy.run(replica_step, args=(images, targets))
        return {k: self.strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
                for k, v in per_replica.items()}

    def _distribute(self, array: np.ndarray):
        """One equal slice of the batch per replica (plain tensors would reach every replica whole)."""
        replicas = self.strategy.num_replicas_in_sync
        if replicas == 1:
            return tf.constant(array)
        if len(array) % replicas:
            raise ValueError(f"batch size {len(array)} is not divisible by the {replicas} replicas")
        per = len(array) // replicas
        return self.strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(array[ctx.replica_id_in_sync_group * per:(ctx.replica_id_in_sync_group + 1) * per]))

    def train(self, until: int | None = None, progress: bool = True) -> list[dict]:
        """Trains from the current step to `until` (default: the recipe's steps); returns the logs."""
        from tqdm import tqdm

        until = self.recipe.steps if until is None else min(until, self.recipe.steps)
        logs = []
        start = int(self.step.numpy())
        bar = tqdm(range(start, until), initial=start, total=until, desc="training", unit="step",
                   file=sys.stderr, disable=None if progress else True)
        with (self.workdir / "log.jsonl").open("a") as log:
            for step in bar:
                began = time.perf_counter()
                images, targets = self.batches.batch(step)
                result = self._train_step(self._distribute(images),
                                          {k: self._distribute(v) for k, v in targets.items()})
                self.step.assign(step + 1)
                record = {"step": step, **{k: float(v) for k, v in result.items()},
                          "images_per_second": len(images) / (time.perf_counter() - began)}
                logs.append(record)
                log.write(json.dumps(record) + "\n")
                bar.set_postfix(loss=f"{record['total']:.4f}", img_s=f"{record['images_per_second']:.1f}")
                if (step + 1) % self.recipe.checkpoint_every == 0 or step + 1 == until:
                    self.manager.save(checkpoint_number=step + 1)
        return logs
