"""Tab. 6: self-attention variants on Cityscapes val (paper Sec. 4.5).

Fidelity: count (Params, M-Adds at 1025 x 2049); proxy (PQ/AP/mIoU on the panoptic proxy,
reproductions/proxies.py: every row the claims need; Axial-DeepLab-M/L/XL are counted only).
Full: every row's own model by the Cityscapes recipe (recipes/panoptic.csv).
Commands: python run_all.py --tables 6 --fidelity count [--check]
          python run_all.py --tables 6 --fidelity proxy
          python run_all.py --tables 6 --fidelity full --data-dir DATA [--rows ROW] [--smoke-test]
Time: about 1 min on 2 CPU cores without cache.  Checks: Params round, M-Adds within 2 %.
"""

from reproductions import proxies
from reproductions.runner import Row, TableSpec
from training.experiments import panoptic_full

PROXY_ROWS = (
    ("resnet50", "resnet50-deeplab-cityscapes"),
    ("resnet50-aspp", "resnet50-deeplab-aspp-cityscapes"),
    ("attention-sasa", "attention-deeplab-cityscapes"),
    ("attention-sasa-aspp", "attention-deeplab-aspp-cityscapes"),
    ("ps-attention", "ps-attention-deeplab-cityscapes"),
    ("ps-attention-aspp", "ps-attention-deeplab-aspp-cityscapes"),
    ("axial-deeplab-s", "axial-deeplab-s-cityscapes"),
)

ROWS = (
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
)

SPEC = TableSpec(
    table=6,
    title="Self-attention variants, Cityscapes val",
    rows=ROWS,
    proxy=tuple((row, proxies.panoptic(preset)) for row, preset in PROXY_ROWS),
    full=tuple((r.row, panoptic_full(r.preset, "cityscapes")) for r in ROWS),
)

