"""Data: readers of the paper's datasets, offline proxy data, and Panoptic-DeepLab targets."""
