"""Training: losses, optimiser, and the training engine (paper Sec. 4 recipes)."""

from runtime.backend import quiet_startup

quiet_startup()  # TensorFlow/JAX, when a module loads them, start without notices
