"""Tab. 7: the axial-attention span ablation on Cityscapes val (paper Sec. 4.5).

Fidelity: count (Params, M-Adds at 1025 x 2049).  Span changes M-Adds, never Params.
Proxy: the panoptic proxy, the paper's spans scaled with the feature maps (reproductions/proxies.py):
1, 1, 1, 3, 5 at the small scale (65 px scenes), 1, 3, 5, 9, 17 at the large one (257 px), and
ResNet-101.
Full: every row's own model (the paper's spans) by the Cityscapes recipe (recipes/panoptic.csv).
Commands: python run_all.py --tables 7 --fidelity count [--check]
          python run_all.py --tables 7 --fidelity proxy
          python run_all.py --tables 7 --fidelity full --data-dir DATA [--rows ROW] [--smoke-test]
Time: about 1 min on 2 CPU cores without cache.
"""

from reproductions import proxies
from reproductions.runner import Row, TableSpec
from training.experiments import panoptic_full

ROWS = (
    Row("resnet101", "resnet101-deeplab-cityscapes"),
    Row("axial-resnet-l-span5", "axial-deeplab-l-span5-cityscapes"),
    Row("axial-resnet-l-span9", "axial-deeplab-l-span9-cityscapes"),
    Row("axial-resnet-l-span17", "axial-deeplab-l-span17-cityscapes"),
    Row("axial-resnet-l-span33", "axial-deeplab-l-span33-cityscapes"),
    Row("axial-resnet-l-span65", "axial-deeplab-l-cityscapes"),
)

SPEC = TableSpec(
    table=7,
    title="Axial-attention span, Cityscapes val",
    rows=ROWS,
    proxy=tuple((r.row, proxies.panoptic(r.preset)) for r in ROWS),
    full=tuple((r.row, panoptic_full(r.preset, "cityscapes")) for r in ROWS),
)
