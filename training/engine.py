"""The training engine: a preset plus a recipe, trained by Keras' own `fit` on TensorFlow or
JAX, with checkpoints, exact resume, per-step logs and a progress bar (paper Sec. 4's recipes).

One engine for both backends: the network is wrapped in a `TaskModel` whose `compute_loss`
is the task's loss (Panoptic-DeepLab's three losses, or the ImageNet cross-entropy), and
`fit` runs the steps.  Data parallelism is `tf.distribute` on TensorFlow (mirrored,
multi-worker, TPU) and `keras.distribution.DataParallel` on JAX; batch norm statistics are
global either way (synchronised BN on TensorFlow, global arrays under JAX).

Several processes (--strategy multi-worker: TensorFlow's workers of TF_CONFIG, or JAX's
processes of `jax.distributed`) run the same program: each builds only its own share of every
global batch (process p of P: examples [p B/P, (p+1) B/P) of batch(step)), the steps are the
one-process run's on the global batch, and only the chief (process 0; TensorFlow: the chief of
TF_CONFIG, else worker 0) writes the run's files -- checkpoints, log.jsonl, recipe.json --
while the others compute and write nothing.  Every process starts from the chief's last
checkpoint, read from the run's folder, which must be on storage they all see.

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

import inspect
import json
import os
import sys
import tempfile
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
    """Where the steps run: a TensorFlow strategy, or a JAX distribution (or neither), and
    which process of a multi-process run this is (`process_index` of `process_count`;
    `is_chief`: the one that writes files).

    `scope()` is the context that model building, compiling and fitting run in."""

    def __init__(self, name: str, tpu: str = ""):
        if name not in STRATEGIES:
            raise ValueError(f"unknown strategy {name!r}; expected one of {STRATEGIES}")
        self.name = name
        self.backend = keras.backend.backend()
        self.strategy = self.distribution = None
        self.process_index, self.process_count, self.is_chief = 0, 1, True
        if self.backend == "tensorflow":
            self.strategy = _tensorflow_strategy(name, tpu)
            if name == "multi-worker":
                self.process_index, self.process_count = _tensorflow_worker(self.strategy)
                self.is_chief = bool(self.strategy.extended.should_checkpoint)
        else:
            if tpu:
                raise TrainingError(f"--tpu {tpu}: naming a TPU is TensorFlow's (a Cloud TPU it connects to); "
                                    "JAX uses the TPU of the machine it runs on: leave --tpu out")
            if name != "default":
                self.distribution = _jax_distribution(name)
            if name in ("multi-worker", "tpu"):  # a TPU pod's hosts are processes of one run too
                import jax

                self.process_index, self.process_count = jax.process_index(), jax.process_count()
                self.is_chief = self.process_index == 0

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

    def slots(self, batch_size: int) -> range:
        """This process's examples of every global batch: all of them in one process; of
        several, the block its devices hold (process p of P: [p B/P, (p+1) B/P))."""
        if self.process_count == 1:
            return range(batch_size)
        if self.distribution is None:
            share = batch_size // self.process_count
            return range(self.process_index * share, (self.process_index + 1) * share)
        sharding = self.distribution.get_data_layout((batch_size,)).backend_layout
        blocks = sorted({(index[0].start or 0, batch_size if index[0].stop is None else index[0].stop)
                         for index in sharding.addressable_devices_indices_map((batch_size,)).values()})
        start, stop = blocks[0][0], blocks[-1][1]
        if sum(b - a for a, b in blocks) != stop - start:
            raise TrainingError(f"process {self.process_index}'s devices hold rows {blocks} of the batch, "
                                "not one block")
        return range(start, stop)

    def from_chief(self, value: int) -> int:
        """The chief's `value` (an integer >= 0), on every process: one collective, which is
        also a barrier (the chief has finished whatever came before)."""
        if self.process_count == 1:
            return value
        if self.distribution is not None:
            from jax.experimental import multihost_utils

            return int(multihost_utils.broadcast_one_to_all(np.int64(value)))
        from runtime import backend

        tf = backend.tensorflow()
        # A sum over the replicas, the chief's each adding the value (float64: exact).
        mine = float(value) if self.is_chief else 0.0
        per_worker = self.strategy.num_replicas_in_sync // self.process_count

        def share():
            return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM,
                                                                   tf.constant(mine, tf.float64))

        shared = tf.function(lambda: self.strategy.run(share))()
        return round(float(self.strategy.experimental_local_results(shared)[0].numpy()) / per_worker)

    def on_tpu(self) -> bool:
        if self.strategy is not None:
            from runtime import backend

            return isinstance(self.strategy, backend.tensorflow().distribute.TPUStrategy)
        return self.backend == "jax" and _jax_platform() == "tpu"


# The process's multi-worker and TPU strategies: each configures process-wide state (the
# collectives of TF_CONFIG's cluster, the TPU system) when created, so it is created once and
# every Trainer of the process (one per seed) uses it.
_PROCESS_STRATEGIES: dict = {}


def _tensorflow_strategy(name: str, tpu: str):
    """The tf.distribute strategy named by --strategy.  multi-worker reads the cluster from
    TF_CONFIG (one local worker without it); tpu connects to the TPU named by `tpu` (run_all's
    --tpu), else by $TPU_NAME, else to the TPU VM's own."""
    from runtime import backend

    tf = backend.tensorflow()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        if name not in _PROCESS_STRATEGIES:
            try:
                _PROCESS_STRATEGIES[name] = tf.distribute.MultiWorkerMirroredStrategy()
            except RuntimeError as error:  # "Collective ops must be configured at program startup"
                raise TrainingError(f"--strategy multi-worker: {str(error).strip()} (create the strategy with "
                                    "training.engine.start_processes before TensorFlow's first operation)") from None
        return _PROCESS_STRATEGIES[name]
    tpu = tpu or os.environ.get("TPU_NAME") or "local"
    if ("tpu", tpu) in _PROCESS_STRATEGIES:
        return _PROCESS_STRATEGIES["tpu", tpu]
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except Exception as error:  # ValueError, OpError, OSError (a name that resolves nowhere), ...
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        first = first.split(". ")[0][:160]  # TensorFlow's can run to a kernel's attributes
        where = "on this machine" if tpu == "local" else f"named {tpu!r}"
        raise TrainingError(f"--strategy tpu: no TPU reachable {where} ({first}); run on a TPU VM, or name "
                            "a Cloud TPU with --tpu NAME") from None
    _PROCESS_STRATEGIES["tpu", tpu] = tf.distribute.TPUStrategy(resolver)
    return _PROCESS_STRATEGIES["tpu", tpu]


def _tensorflow_worker(strategy) -> tuple[int, int]:
    """(this worker's index, the number of workers) of a multi-worker strategy's cluster:
    TF_CONFIG's chief first, then its workers; (0, 1) without TF_CONFIG."""
    resolver = strategy.cluster_resolver
    jobs = resolver.cluster_spec().as_dict() if resolver is not None else {}
    tasks = [("chief", i) for i in range(len(jobs.get("chief", [])))] + \
            [("worker", i) for i in range(len(jobs.get("worker", [])))]
    if len(tasks) < 2:
        return 0, 1
    return tasks.index((resolver.task_type, resolver.task_id)), len(tasks)


def _jax_platform() -> str:
    import jax

    return jax.devices()[0].platform


def _jax_distribution(name: str):
    """keras.distribution's data parallelism over the devices JAX sees: mirrored (this
    machine's devices), multi-worker (every process's, after `start_processes`), tpu (the TPU
    cores).  The mesh lists the devices process by process, so process p's devices hold
    rows [p B/P, (p+1) B/P) of a global batch of B, and each process feeds just those
    (auto_shard_dataset=False: Keras assembles the global array from the processes' shares
    with jax.make_array_from_process_local_data)."""
    import jax

    if name == "multi-worker":
        _initialize_jax_processes()
    if name == "tpu" and _jax_platform() != "tpu":
        raise TrainingError(f"--strategy tpu: JAX sees no TPU here (its devices: {_jax_platform()})")
    devices = jax.devices() if name != "mirrored" else jax.local_devices()
    devices = sorted(devices, key=lambda d: (d.process_index, d.id))
    return keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)


def _initialize_jax_processes() -> None:
    """Joins this process to the others of a multi-process JAX run (once; before JAX's first
    computation): keras.distribution.initialize() reads KERAS_DISTRIBUTION_JOB_ADDRESSES (the
    coordinator's host:port), KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID,
    or without them lets jax.distributed find the cluster (Cloud TPU, SLURM, Open MPI, ...).
    CPUs exchange through gloo (jax_cpu_collectives_implementation: jax 0.10's default, set in
    case a configuration turned it off)."""
    import jax

    if jax.distributed.is_initialized():
        return
    if getattr(jax.config, "jax_cpu_collectives_implementation", "gloo") is None:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        keras.distribution.initialize()
    except (RuntimeError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TrainingError(f"--strategy multi-worker under JAX: the processes cannot join ({first}); set "
                            "KERAS_DISTRIBUTION_JOB_ADDRESSES, KERAS_DISTRIBUTION_NUM_PROCESSES and "
                            "KERAS_DISTRIBUTION_PROCESS_ID (README, 'Full fidelity')") from None
    if jax.process_index() != 0:  # the others write nothing, compiled programs included
        jax.config.update("jax_enable_compilation_cache", False)


def start_processes(strategy: str) -> None:
    """Joins a multi-process run before anything computes (JAX must join before its first
    computation, TensorFlow's multi-worker strategy be created before its first operation, and
    a run computes fingerprints before it trains); nothing for one process."""
    if strategy != "multi-worker":
        return
    if keras.backend.backend() == "jax":
        _initialize_jax_processes()
    else:
        _tensorflow_strategy(strategy, "")


def is_chief(strategy: str = "default") -> bool:
    """Whether this process writes the files of a run under `strategy` (checkpoints, logs,
    results, tables): every single-process run does; of several processes, only the chief
    (JAX: process 0; TensorFlow: TF_CONFIG's chief, else worker 0)."""
    if strategy not in ("multi-worker", "tpu"):
        return True
    if keras.backend.backend() == "tensorflow":
        return strategy == "tpu" or bool(_tensorflow_strategy(strategy, "").extended.should_checkpoint)
    import jax

    start_processes(strategy)
    return jax.process_index() == 0


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

    # Set by the Trainer under a TensorFlow strategy of several workers, where Keras' trainer
    # averages each step's logs over the workers along axis 0 (strategy.reduce("MEAN", v,
    # axis=0)), which a scalar does not have: there the logs are vectors of one value.
    vector_logs = False

    def get_metrics_result(self):
        result = super().get_metrics_result()
        if self.vector_logs:
            return {name: ops.reshape(value, (1,)) for name, value in result.items()}
        return result

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Keras' TensorFlow trainer takes a batch from the data before fitting, to build an
        unbuilt model from its shapes.  This one is built (network, optimiser; no compiled
        loss or metrics), so that would only build a batch for nothing, and under a strategy
        of several workers it fails (it averages the nested per-replica batch with
        strategy.reduce, which takes single tensors only)."""
        if all(layer.built for layer in self._flatten_layers()) and self.optimizer.built \
                and self._compile_metrics is None and self._compile_loss is None:
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)


# --- data, logs, checkpoints, progress -------------------------------------------------------

def batch_part(batches, step: int, slots: range | None = None):
    """Batch `step` of `batches`, or only its examples at `slots`: built alone where the
    pipeline can (training/pipeline.py's batch(step, slots)), else cut from the whole batch."""
    if slots is None:
        return batches.batch(step)
    if "slots" in inspect.signature(batches.batch).parameters:
        return batches.batch(step, slots=slots)
    return keras.tree.map_structure(lambda a: a[slots.start:slots.stop], batches.batch(step))


class StepBatches(keras.utils.PyDataset):
    """Steps start..stop-1 of a run as a Keras dataset: item i is batches.batch(start + i), or
    its examples at `slots` (this process's share of it).  `workers` > 1 builds the coming
    batches in parallel (Keras' own ordered enqueuer, threads, or processes with
    `use_multiprocessing`): each batch is a function of its step alone, so the order, the
    numbers and exact resume stay those of one worker."""

    def __init__(self, batches, start: int, stop: int, slots: range | None = None, workers: int = 1,
                 use_multiprocessing: bool = False):
        super().__init__(workers=workers, use_multiprocessing=use_multiprocessing,
                         max_queue_size=max(2, workers + 1))  # full-size batches are large
        self.batches, self.start, self.stop, self.slots = batches, start, stop, slots

    def __len__(self):
        return self.stop - self.start

    def __getitem__(self, index):
        return batch_part(self.batches, self.start + index, self.slots)


def worker_dataset(batches, start: int, stop: int, batch_size: int, strategy):
    """Steps start..stop-1 for a multi-worker tf.distribute strategy: each worker's input
    pipeline builds only its replicas' shares of every global batch (its r-th element of a
    step, for the r-th of its R replicas, holds examples [(w R + r) b, (w R + r + 1) b) of
    batch(step), w the pipeline's index and b the per-replica batch; tf.distribute hands a
    worker's elements to its replicas in turn), so nothing is built twice and nothing is
    re-batched.  (Keras' own path, a PyDataset given to a multi-worker strategy, gives every
    worker the right half too, but builds the whole batch on each and drops the rest.)"""
    from runtime import backend

    tf = backend.tensorflow()
    share = batch_size // strategy.num_replicas_in_sync

    def dataset(context):
        local = context.num_replicas_in_sync // context.num_input_pipelines
        first = context.input_pipeline_id * local
        own = [(step, range(replica * share, (replica + 1) * share))
               for step in range(start, stop) for replica in range(first, first + local)]
        head = batch_part(batches, *own[0])  # the first share also gives the element's signature
        signature = keras.tree.map_structure(
            lambda a: tf.TensorSpec((None, *a.shape[1:]), tf.as_dtype(a.dtype)), head)

        def elements():
            yield head
            for step, slots in own[1:]:
                yield batch_part(batches, step, slots)

        return tf.data.Dataset.from_generator(elements, output_signature=signature).prefetch(2)

    return strategy.distribute_datasets_from_function(dataset)


class StepLog:
    """The per-step JSONL log of a run: one record per finished step, on disk when the step ends.

    Each record is flushed and fsynced as it is written, so a run killed at any moment keeps
    every step it finished.  A resumed run restarts at its last checkpoint, so the records of
    steps after it (computed again now) are dropped first: each step is logged once."""

    def __init__(self, path: Path | None, start: int):
        """path None: a process that writes no log (not the chief of several)."""
        self.path = path
        self.file = None
        if path is None:
            return
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

    def __enter__(self):
        if self.path is not None:
            self.file = self.path.open("a")
        return self

    def write(self, record: dict) -> None:
        if self.file is None:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def __exit__(self, *exc):
        if self.file is not None:
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


class ScratchCheckpoints(Checkpoints):
    """The saves of a process that is not the chief of several: Keras' saving holds
    collectives (under JAX it creates a variable of the distribution, which every process must
    join), so every process saves, the others into a temporary folder removed at once."""

    def __init__(self):
        super().__init__(Path(tempfile.gettempdir()))

    def save(self, model: TaskModel, step: int) -> None:
        with tempfile.TemporaryDirectory(prefix="axial-deeplab-scratch-") as folder:
            self.directory = Path(folder)
            super().save(model, step)


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


def tensorboard_callbacks(folder, start: int) -> list:
    """Keras' TensorBoard callback writing every TENSORBOARD_EVERY-th step's losses into `folder`
    at the run's own step; none without a folder, or without TensorFlow (whose summary writer
    Keras' callback uses: the JAX-only install has none), which is said once."""
    import importlib.util

    if folder is None:
        return []
    if importlib.util.find_spec("tensorflow") is None:
        if not _SAID["tensorboard"]:
            print("TensorBoard logs need TensorFlow installed: not written (log.jsonl has every step)",
                  file=sys.stderr)
            _SAID["tensorboard"] = True
        return []

    class StepTensorBoard(keras.callbacks.TensorBoard):
        """Keras counts batches from 0 at every fit; a resumed or validated (segmented) run
        would draw over itself, so the count starts at the run's step."""

        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            self._global_train_batch = start

        def on_epoch_end(self, epoch, logs=None):
            pass  # one "epoch" per segment, all at epoch 0: the step summaries say it all

    return [StepTensorBoard(str(folder), update_freq=TENSORBOARD_EVERY, write_graph=False, profile_batch=0)]


TENSORBOARD_EVERY = 10
_SAID = {"tensorboard": False}


# --- the trainer -----------------------------------------------------------------------------

class Trainer:
    """Trains `build_model()` on `batches` (anything with .task and .batch(step)) by `recipe`.

    `strategy` and `precision` are device choices, not part of the recipe: a run resumed
    under another strategy continues the same optimisation.  `tpu` names the TPU of
    --strategy tpu (TensorFlow; empty: $TPU_NAME, else the TPU VM's own).  `model` is the
    network, with the weights of the last finished step.  Of several processes, only the
    chief (`chief`) writes into `workdir`; the others read the chief's checkpoint from it;
    and after `train` `model` is a copy of the network on this process alone, so that each
    evaluates by itself (under a multi-worker strategy Keras would take every worker's batch
    for a share of one global batch, and under JAX the weights are arrays of every process)."""

    def __init__(self, build_model, batches, recipe: Recipe, workdir: str | Path,
                 strategy: str = "default", precision: str = "float32", tpu: str = "",
                 jit_compile: bool | str = "auto", initialize=None, tensorboard: str | Path | None = None,
                 input_workers: int = 1):
        """initialize(network): called once on a run that starts from step 0 (e.g. ImageNet
        weights into the backbone, training/transfer.py); a resumed run restores its checkpoint.
        tensorboard: a folder for Keras' TensorBoard logs of the losses (the chief's).
        input_workers: threads building the coming batches while the model trains on this one
        (StepBatches; the batches are the same whatever the number).  TensorFlow's multi-worker
        strategies read theirs through tf.data, one generator per worker."""
        self.input_workers = input_workers
        self.recipe = recipe
        self.tensorboard = tensorboard
        self.batches = batches
        self.build_model = build_model
        self.workdir = Path(workdir)
        keras.utils.set_random_seed(recipe.seed)
        self.placement = Placement(strategy, tpu)
        self.chief = self.placement.is_chief
        if self.chief:
            self.workdir.mkdir(parents=True, exist_ok=True)
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
                self.task_model.vector_logs = self.placement.strategy is not None and self.placement.process_count > 1
                self.task_model.compile(optimizer=make_optimizer(recipe, self.precision),
                                        jit_compile=self._jit(jit_compile))
                self.task_model.optimizer.build(self.task_model.trainable_variables)
        finally:
            keras.config.set_dtype_policy(previous_policy)
        self.checkpoints = Checkpoints(self.workdir / "checkpoints")
        # Every process starts where the chief's last checkpoint is (after the chief has
        # finished with the folder: from_chief is a barrier).
        self.step = self.placement.from_chief(self.checkpoints.latest())
        if self.step:
            if not (self.checkpoints.directory / f"ckpt-{self.step}.weights.h5").exists():
                raise TrainingError(f"process {self.placement.process_index} does not see the chief's checkpoint "
                                    f"of step {self.step} in {self.checkpoints.directory}: the processes of a "
                                    "run need its folder on storage they all see")
            self.checkpoints.restore(self.task_model, self.step)
        elif initialize is not None:
            initialize(self.model)
        if self.chief:
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
            self._localise()
            return records
        bar = tqdm(total=until, initial=self.step, desc=desc, unit="step", file=sys.stderr,
                   disable=None if progress and self.chief else True)
        try:
            with StepLog(self.workdir / "log.jsonl" if self.chief else None, self.step) as log, \
                    self.placement.scope():
                callback = StepCallback(self.step, until, self.recipe, log,
                                        self.checkpoints if self.chief else ScratchCheckpoints(), bar, records)
                # (steps_per_epoch: a worker's dataset has no length, and would be read past its end.)
                callbacks = [callback] + tensorboard_callbacks(self.tensorboard if self.chief else None, self.step)
                self.task_model.fit(self._steps(self.step, until), epochs=1, verbose=0, callbacks=callbacks,
                                    shuffle=False, steps_per_epoch=until - self.step)
        finally:
            bar.close()
        self.step = until
        self._localise()
        return records

    def _localise(self) -> None:
        """Of several processes: `model` becomes the trained weights in a network of this
        process alone (built outside the strategy, in the run's precision)."""
        if self.placement.process_count == 1:
            return
        previous_policy = keras.config.dtype_policy()
        keras.config.set_dtype_policy(self.precision)
        try:
            local = self.build_model()
        finally:
            keras.config.set_dtype_policy(previous_policy)
        local.set_weights(self.task_model.network.get_weights())
        self.model = local

    def _steps(self, start: int, stop: int):
        """The batches of steps start..stop-1 as this process feeds them: the whole batch in
        one process; of several, its own share (TensorFlow's workers through their input
        pipelines, JAX's processes as the local part of the global array)."""
        if self.placement.process_count == 1:
            return StepBatches(self.batches, start, stop, workers=self.input_workers)
        if self.placement.strategy is not None:
            return worker_dataset(self.batches, start, stop, self.recipe.batch_size, self.placement.strategy)
        return StepBatches(self.batches, start, stop, self.placement.slots(self.recipe.batch_size),
                           workers=self.input_workers)
