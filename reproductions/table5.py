"""Tab. 5: Cityscapes val (a) and test (b) sets (paper Sec. 4.4).  No count columns.

Full: the val rows of Axial-DeepLab-L/XL by the Cityscapes recipe (recipes/panoptic.csv); an
-ms row is its single-scale row's training evaluated with Cityscapes' scales 0.5-2.0 + flip.  Test
rows are scored by the Cityscapes server only.  Rows with extra data (MV, COCO, ...) need that
pre-training too.
Commands: python run_all.py --tables 5
          python run_all.py --tables 5 --fidelity full --data-dir DATA [--rows ROW] [--smoke-test]
"""

from reproductions.runner import Row, TableSpec, load_reported, other_method
from training.experiments import panoptic_full

VAL = ("reported only at count fidelity (the table has no count columns): measurable at full "
       "fidelity on Cityscapes val (declared); the model's counts are in Tab. 6")
FULL = {"val-axial-deeplab-l": "axial-deeplab-l-cityscapes", "val-axial-deeplab-xl": "axial-deeplab-xl-cityscapes"}
FULL_MS = {f"{row}-ms": preset for row, preset in FULL.items()}
TEST = "reported only: Cityscapes test labels are private (evaluation server), so no fidelity here can measure it"

SPEC = TableSpec(
    table=5,
    title="Cityscapes val and test sets",
    rows=tuple(
        Row(row, reason=(TEST if row.startswith("test-") else VAL) if "axial-deeplab" in row
            else other_method(label))
        for row, label in load_reported(5)[["row", "label"]].drop_duplicates().itertuples(index=False)
    ),
    full=tuple((row, panoptic_full(preset, "cityscapes")) for row, preset in FULL.items())
    + tuple((row, panoptic_full(preset, "cityscapes", multi_scale=True)) for row, preset in FULL_MS.items()),
)

