"""Evaluation of the paper's accuracy columns: PQ (Sec. 4, [44]), mIoU, AP, top-1, and
Panoptic-DeepLab post-processing [18].  Tests check agreement with the official scripts."""

from runtime.backend import quiet_startup

quiet_startup()  # TensorFlow/JAX, when a module loads them, start without notices
