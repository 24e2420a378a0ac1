"""Run as a script (a fresh process; KERAS_BACKEND picks the backend): the same training steps
on one device and data parallel over two CPU devices -- MirroredStrategy (and
MultiWorkerMirroredStrategy as one local worker: one replica on CPU) on TensorFlow,
keras.distribution.DataParallel on JAX; prints the losses, replica counts and the shape of
each replica's share of the batch as JSON.  (Two workers, and two JAX processes, each feeding its
own share: tests/test_multiprocess.py.)"""

import json
import os
import sys
import tempfile

from runtime import backend

name = backend.choose()
if name == "jax":
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
else:
    tf = backend.tensorflow()
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from data import proxy  # noqa: E402
from tests import fast_graphs  # noqa: E402
from tests.test_training_engine import make_trainer  # noqa: E402
from training.engine import TaskModel  # noqa: E402

# Each replica's share of the batch, printed at run time where the loss is computed.
shard_log = tempfile.mkdtemp() + "/shards.txt"
compute_loss = TaskModel.compute_loss


def recording_compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
    if name == "tensorflow":
        tf.print(tf.shape(x), output_stream=f"file://{shard_log}", summarize=-1)
    return compute_loss(self, x, y, y_pred, sample_weight, training)


TaskModel.compute_loss = recording_compute_loss

fast_graphs.use()
root = proxy.write_dataset(tempfile.mkdtemp(), "train", count=4, size=(48, 64), seed=0)
result = {}
for strategy in ("default", "mirrored") + (("multi-worker",) if name == "tensorflow" else ()):
    open(shard_log, "w").close()
    trainer = make_trainer(root, tempfile.mkdtemp(), strategy=strategy)
    # Two steps: the first tests the forward pass with synchronised BN and the loss, the second
    # the all-reduced gradient and the optimiser's update.  Later steps add no mechanism, and
    # the bootstrapped loss (top 20 % of pixels) amplifies float differences step by step.
    result[strategy] = [r["total"] for r in trainer.train(until=2, progress=False)]
    result[f"{strategy}_replicas"] = trainer.placement.replicas
    if name == "jax" and trainer.placement.distribution is not None:
        # JAX traces the global batch once; its layout puts one slice on each device.
        images, _ = trainer.batches.batch(0)
        layout = trainer.placement.distribution.get_data_layout(images.shape)
        sharded = __import__("jax").device_put(images, layout.backend_layout)
        result[f"{strategy}_shards"] = [list(s.data.shape) for s in sharded.addressable_shards]
    else:  # the first step's lines, one per replica: "[1 33 33 3]"
        lines = open(shard_log).read().split()
        printed = [[int(v.strip("[]")) for v in lines[i:i + 4]] for i in range(0, len(lines), 4)]
        result[f"{strategy}_shards"] = printed[:trainer.placement.replicas]
json.dump(result, sys.stdout)
