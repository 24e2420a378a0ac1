"""Tab. 6: self-attention variants on Cityscapes val (paper Sec. 4.5).

Fidelity: count (Params, M-Adds at 1025 x 2049).  PQ/AP/mIoU need proxy/full.
Command: python run_all.py --tables 6 --fidelity count [--check]
Time: about 1 min on 2 CPU cores without cache.  Checks: Params round, M-Adds within 2 %.
"""

from reproductions.runner import Row, TableSpec

SPEC = TableSpec(
    table=6,
    title="Self-attention variants, Cityscapes val",
    rows=(
        Row("resnet50", "resnet50-deeplab-cityscapes"),
        Row("resnet50-aspp", "resnet50-deeplab-aspp-cityscapes"),
        Row("attention-sasa", "attention-deeplab-cityscapes"),
        Row("attention-sasa-aspp", "attention-deeplab-aspp-cityscapes"),
        Row("ps-attention", "ps-attention-deeplab-cityscapes"),
        Row("ps-attention-aspp", "ps-attention-deeplab-aspp-cityscapes"),
        Row("axial-deeplab-s", "axial-deeplab-s-cityscapes"),
        Row("axial-deeplab-m", "axial-deeplab-m-cityscapes"),
        Row("axial-deeplab-l", "axial-deeplab-l-cityscapes"),
        Row("axial-deeplab-xl", "axial-deeplab-xl-cityscapes"),
    ),
)

