"""Tab. 5: Cityscapes val (a) and test (b) sets (paper Sec. 4.4).  No count columns.

Val rows of Axial-DeepLab-L/XL are measurable at full fidelity (Cityscapes on disk) and as
trends at proxy fidelity, neither of which exists yet; test rows are scored by the
Cityscapes server only.  Rows with extra data (MV, COCO, ...) need that pre-training too.
Command: python run_all.py --tables 5
"""

from reproductions.runner import Row, TableSpec, load_reported, other_method

VAL = ("reported only at count fidelity (the table has no count columns): measurable at full "
       "fidelity on Cityscapes val, or as a proxy trend; the model's counts are in Tab. 6")
TEST = "reported only: Cityscapes test labels are private (evaluation server), so no fidelity here can measure it"

SPEC = TableSpec(
    table=5,
    title="Cityscapes val and test sets",
    rows=tuple(
        Row(row, reason=(TEST if row.startswith("test-") else VAL) if "axial-deeplab" in row
            else other_method(label))
        for row, label in load_reported(5)[["row", "label"]].drop_duplicates().itertuples(index=False)
    ),
)

