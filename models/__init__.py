"""Keras models of Axial-DeepLab (ECCV 2020): layers -> blocks -> backbones -> meta-architectures -> presets."""

import os

# Quiet TensorFlow's C++ start-up logging for every entry point that imports the models.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
