"""Keras models of Axial-DeepLab (ECCV 2020): layers -> blocks -> backbones -> meta-architectures -> presets."""

from runtime.backend import quiet_startup

# Keep the numerical libraries' start-up notices off the terminal, however the models are reached.
quiet_startup()
