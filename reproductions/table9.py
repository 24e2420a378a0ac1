"""Tab. 9 (Appendix C): ImageNet results across width multipliers; the raw data of Fig. 3.

Fidelity: count (Params, M-Adds at 224 x 224); proxy (Top-1 on the Fashion-MNIST proxy at 64 px,
          reproductions/proxies.py: the Fig. 3 frontier claims).
Command:  python run_all.py --tables 9 --fidelity count [--check]
          python run_all.py --tables 9 --fidelity proxy
Time:     about 30 s on 2 CPU cores without cache, under a second with it.
Checks:   Params round to the printed value; M-Adds within 2 % (runner.MADDS_TOLERANCE).
"""

from reproductions import proxies
from reproductions.runner import Row, TableSpec

ROWS = (
        Row("ps-attention-w050", "ps-attention-resnet50-w0.5"),
        Row("ps-attention-w075", "ps-attention-resnet50-w0.75"),
        Row("ps-attention-w100", "ps-attention-resnet50-w1"),
        Row("ps-attention-w125", "ps-attention-resnet50-w1.25"),
        Row("ps-attention-w150", "ps-attention-resnet50-w1.5"),
        Row("axial-conv-stem-w0375", "axial-resnet-conv-stem-w0.375"),
        Row("axial-conv-stem-w050", "axial-resnet-conv-stem-w0.5"),
        Row("axial-conv-stem-w075", "axial-resnet-conv-stem-w0.75"),
        Row("axial-conv-stem-w100", "axial-resnet-conv-stem-w1"),
        Row("full-axial-w050", "full-axial-resnet-w0.5"),
        Row("full-axial-w075", "full-axial-resnet-w0.75"),
        Row("full-axial-w100", "full-axial-resnet-w1"),
)

SPEC = TableSpec(
    table=9,
    title="ImageNet validation set across widths (raw data of Fig. 3)",
    rows=ROWS,
    proxy=tuple((r.row, proxies.classification(r.preset)) for r in ROWS),
)

