"""Tab. 8: output stride and the Axial-Decoder on Cityscapes val (paper Sec. 4.5, App. B).

Fidelity: count (Params, M-Adds at 1025 x 2049).  The Axial-Decoder's widths are not
published; models/decoders.py documents the design assumed.
Proxy: Axial-DeepLab-L at output stride 16 and 32 and with the Axial-Decoder on the panoptic
proxy (reproductions/proxies.py): the rows the claims need.
Full: every row's own model by the Cityscapes recipe (recipes/panoptic.csv).
Commands: python run_all.py --tables 8 --fidelity count [--check]
          python run_all.py --tables 8 --fidelity proxy
          python run_all.py --tables 8 --fidelity full --data-dir DATA [--rows ROW] [--smoke-test]
"""

from reproductions import proxies
from reproductions.runner import Row, TableSpec
from training.experiments import panoptic_full

ROWS = (
        Row("xception71-aspp-os16", "panoptic-deeplab-x71-cityscapes"),
        Row("axial-resnet-l-os16", "axial-deeplab-l-cityscapes"),
        Row("axial-resnet-l-os32", "axial-deeplab-l-os32-cityscapes"),
        Row("axial-resnet-l-os16-ad", "axial-deeplab-l-ad-cityscapes"),
        Row("axial-resnet-l-os32-ad", "axial-deeplab-l-os32-ad-cityscapes"),
)

SPEC = TableSpec(
    table=8,
    title="Output stride and Axial-Decoder, Cityscapes val",
    rows=ROWS,
    full=tuple((r.row, panoptic_full(r.preset, "cityscapes")) for r in ROWS),
    proxy=tuple((row, proxies.panoptic(preset)) for row, preset in (
        ("axial-resnet-l-os16", "axial-deeplab-l-cityscapes"),
        ("axial-resnet-l-os32", "axial-deeplab-l-os32-cityscapes"),
        ("axial-resnet-l-os16-ad", "axial-deeplab-l-ad-cityscapes"),
    )),
)

