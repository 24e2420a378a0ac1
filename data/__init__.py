"""Data: readers of the paper's datasets, offline proxy data, and Panoptic-DeepLab targets."""

from runtime.backend import quiet_startup

quiet_startup()  # TensorFlow/JAX, when a module loads them, start without notices
