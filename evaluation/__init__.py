"""Evaluation of the paper's accuracy columns: PQ (Sec. 4, [44]), mIoU, AP, top-1, and
Panoptic-DeepLab post-processing [18].  Tests check agreement with the official scripts."""
