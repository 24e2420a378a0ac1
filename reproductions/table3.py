"""Tab. 3: COCO test-dev (paper Sec. 4.2).  No count columns.

PQ on test-dev is scored by the COCO evaluation server only (ground truth is not public),
so no fidelity of this suite can measure these cells offline; they are listed as
reported.  The same models' val-set counts are in Tab. 2.
Command: python run_all.py --tables 3
"""

from reproductions.runner import Row, TableSpec, load_reported, other_method

SERVER = ("reported only: test-dev ground truth is private (COCO evaluation server), so no "
          "fidelity here can measure it; the model's counts are in Tab. 2")
OURS = {"axial-deeplab-s", "axial-deeplab-m", "axial-deeplab-l", "axial-deeplab-l-ms"}

SPEC = TableSpec(
    table=3,
    title="COCO test-dev",
    rows=tuple(
        Row(row, reason=SERVER if row in OURS else other_method(label))
        for row, label in load_reported(3)[["row", "label"]].drop_duplicates().itertuples(index=False)
    ),
)

