"""Tab. 4: Mapillary Vistas val set (paper Sec. 4.3).

Fidelity: count (Params, M-Adds at 2177 x 2177, in T; MS rows over every scale and flip).
Proxy: Axial-DeepLab-L against Panoptic-DeepLab (X-71) on the panoptic proxy; the proxy has one
data set, so these are the same trainings as Tab. 2's (not independent evidence for Mapillary).
Full: every modelled row's own model by the Mapillary recipe (recipes/panoptic.csv); an -ms row is
its single-scale row's training evaluated with multi-scale + flip inference.
Commands: python run_all.py --tables 4 --fidelity count [--check]
          python run_all.py --tables 4 --fidelity proxy
          python run_all.py --tables 4 --fidelity full --data-dir DATA [--rows ROW] [--smoke-test]
Time: about 2 min on 2 CPU cores without cache (the MS rows run 14 passes each).
"""

from reproductions import proxies
from reproductions.runner import Row, TableSpec, load_reported, other_method
from training.experiments import panoptic_full

MODELLED = {
    "panoptic-deeplab-x71": "panoptic-deeplab-x71-mapillary",
    "panoptic-deeplab-x71-ms": "panoptic-deeplab-x71-mapillary-ms",
    "axial-deeplab-l": "axial-deeplab-l-mapillary",
    "axial-deeplab-l-ms": "axial-deeplab-l-mapillary-ms",
}
NOT_BUILT = {
    "panoptic-deeplab-hrnet-w48-ms": "reported only: HRNet-W48 [81] is defined only in a PyTorch "
    "re-implementation outside the material this suite is built from; not re-implemented here",
    "panoptic-deeplab-auto-xl-plus-plus-ms": "reported only: Auto-DeepLab-XL++ [55] is a searched "
    "architecture whose XL++ configuration is not published in the material available here",
}

SPEC = TableSpec(
    table=4,
    title="Mapillary Vistas val set",
    rows=tuple(
        Row(row, MODELLED[row]) if row in MODELLED
        else Row(row, reason=NOT_BUILT.get(row) or other_method(label))
        for row, label in load_reported(4)[["row", "label"]].drop_duplicates().itertuples(index=False)
    ),
    proxy=tuple((row, proxies.panoptic(MODELLED[row])) for row in ("panoptic-deeplab-x71", "axial-deeplab-l")),
    full=tuple((row, panoptic_full(preset, "mapillary")) for row, preset in MODELLED.items()),
)

