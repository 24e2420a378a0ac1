"""Tab. 2: COCO val set, bottom-up methods (paper Sec. 4.2).

Fidelity: count (Params, M-Adds at 1025 x 1025; MS rows over every scale and flip run).
PQ needs proxy/full.  Command: python run_all.py --tables 2 --fidelity count [--check]
Time: about 1 min on 2 CPU cores without cache.  Checks: Params round, M-Adds within 2 %.
"""

from reproductions.runner import Row, TableSpec, other_method

SPEC = TableSpec(
    table=2,
    title="COCO val set (bottom-up)",
    rows=(
        Row("deeperlab-x71-ms", reason=other_method("DeeperLab [87]", "the paper prints no counts for it")),
        Row("ssap-r101", reason=other_method("SSAP [27]", "the paper prints no counts for it")),
        Row("panoptic-deeplab-x71", "panoptic-deeplab-x71-coco"),
        Row("panoptic-deeplab-x71-ms", "panoptic-deeplab-x71-coco-ms"),
        Row("axial-deeplab-s", "axial-deeplab-s-coco"),
        Row("axial-deeplab-m", "axial-deeplab-m-coco"),
        Row("axial-deeplab-l", "axial-deeplab-l-coco"),
        Row("axial-deeplab-l-ms", "axial-deeplab-l-coco-ms"),
    ),
)

