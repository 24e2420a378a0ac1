"""Tab. 7: the axial-attention span ablation on Cityscapes val (paper Sec. 4.5).

Fidelity: count (Params, M-Adds at 1025 x 2049).  Span changes M-Adds, never Params.
Proxy: the panoptic proxy at 257 x 257 (17 x 17 features at output stride 16), the paper's
spans 5, 9, 17, 33, 65 scaled to 1, 3, 5, 9, 17 (reproductions/proxies.py), and ResNet-101.
Commands: python run_all.py --tables 7 --fidelity count [--check]
          python run_all.py --tables 7 --fidelity proxy
Time: about 1 min on 2 CPU cores without cache.
"""

from reproductions import proxies
from reproductions.runner import Row, TableSpec

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
    proxy=tuple((r.row, proxies.panoptic(r.preset, size=proxies.SPAN_ABLATION_SIZE)) for r in ROWS),
)
