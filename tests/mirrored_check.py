"""Run as a script (a fresh process): the same training steps on one device, under
MirroredStrategy over two logical CPU devices, and under MultiWorkerMirroredStrategy as a
single local worker (no TF_CONFIG: one replica on CPU); prints the loss lists as JSON."""

import json
import sys
import tempfile

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from data import proxy  # noqa: E402
from tests.test_training_engine import make_trainer  # noqa: E402

root = proxy.write_dataset(tempfile.mkdtemp(), "train", count=4, size=(48, 64), seed=0)
result = {}
for strategy in ("default", "mirrored", "multi-worker"):
    trainer = make_trainer(root, tempfile.mkdtemp(), strategy=strategy)
    result[strategy] = [r["total"] for r in trainer.train(until=3, progress=False)]
    result[f"{strategy}_replicas"] = trainer.strategy.num_replicas_in_sync
    images, _ = trainer.batches.batch(0)
    shards = trainer.strategy.experimental_local_results(trainer._distribute(images))
    result[f"{strategy}_shards"] = [list(s.shape) for s in shards]
json.dump(result, sys.stdout)
