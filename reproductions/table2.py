"""Tab. 2: COCO val set, bottom-up methods (paper Sec. 4.2).

Fidelity: count (Params, M-Adds at 1025 x 1025; MS rows over every scale and flip run).
Proxy: Axial-DeepLab-S/M/L and Panoptic-DeepLab (X-71) on the panoptic proxy
(reproductions/proxies.py); L and X-71 also at 0.5-4x the training resolution (the scale stress
test of Figs. 4/10, cells PQ@<ratio>).
Full: every modelled row's own model by the COCO recipe (recipes/panoptic.csv); an -ms row is
its single-scale row's training evaluated with multi-scale + flip inference.
Commands: python run_all.py --tables 2 --fidelity count [--check]
          python run_all.py --tables 2 --fidelity proxy
          python run_all.py --tables 2 --fidelity full --data-dir DATA [--rows ROW] [--smoke-test]
Time: about 1 min on 2 CPU cores without cache.  Checks: Params round, M-Adds within 2 %.
"""

from reproductions import proxies
from reproductions.runner import Row, TableSpec, other_method
from training.experiments import panoptic_full

ROWS = (
        Row("deeperlab-x71-ms", reason=other_method("DeeperLab [87]", "the paper prints no counts for it")),
        Row("ssap-r101", reason=other_method("SSAP [27]", "the paper prints no counts for it")),
        Row("panoptic-deeplab-x71", "panoptic-deeplab-x71-coco"),
        Row("panoptic-deeplab-x71-ms", "panoptic-deeplab-x71-coco-ms"),
        Row("axial-deeplab-s", "axial-deeplab-s-coco"),
        Row("axial-deeplab-m", "axial-deeplab-m-coco"),
        Row("axial-deeplab-l", "axial-deeplab-l-coco"),
        Row("axial-deeplab-l-ms", "axial-deeplab-l-coco-ms"),
)

SPEC = TableSpec(
    table=2,
    title="COCO val set (bottom-up)",
    rows=ROWS,
    full=tuple((r.row, panoptic_full(r.preset, "coco")) for r in ROWS if r.preset),
    proxy=(
        ("panoptic-deeplab-x71", proxies.panoptic("panoptic-deeplab-x71-coco",
                                                  test_ratios=proxies.SCALE_STRESS_RATIOS)),
        ("axial-deeplab-s", proxies.panoptic("axial-deeplab-s-coco")),
        ("axial-deeplab-m", proxies.panoptic("axial-deeplab-m-coco")),
        ("axial-deeplab-l", proxies.panoptic("axial-deeplab-l-coco", test_ratios=proxies.SCALE_STRESS_RATIOS)),
    ),
)

