"""Where the multiply-accumulates are: M-Adds by operation for three Cityscapes models (Tab. 6, 8).

Stacked bars of convolutions, depthwise convolutions, qkv projections and attention
products (logits and outputs), measured by models/counting.py.
Command: python run_all.py --tables 6,8 --figures.  Writes figures/madds_breakdown.png.
"""

from __future__ import annotations

import pandas as pd

from reproductions import runner
from reproductions.runner import save_figure

MODELS = {  # label: (table, preset)
    "Axial-DeepLab-L": (6, "axial-deeplab-l-cityscapes"),
    "ResNet-50 + ASPP": (6, "resnet50-deeplab-aspp-cityscapes"),
    "Panoptic-DeepLab X-71": (8, "panoptic-deeplab-x71-cityscapes"),
}
OPS = ("conv", "depthwise_conv", "qkv_projection", "attention_logits", "attention_output", "fc")


def main(tables: dict[int, pd.DataFrame]) -> list:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    breakdowns = {t: pd.read_csv(runner.TABLES_DIR / f"table{t}_breakdown.csv") for t in {t for t, _ in MODELS.values()}}
    fig, ax = plt.subplots(figsize=(9, 4))
    bottoms = [0.0] * len(MODELS)
    for op in OPS:
        values = []
        for table, preset in MODELS.values():
            b = breakdowns[table]
            hit = b[(b["preset"] == preset) & (b["by"] == "op") & (b["quantity"] == "madds") & (b["part"] == op)]
            values.append(float(hit["value"].sum()) / 1e9)
        if any(values):
            ax.barh(list(MODELS), values, left=bottoms, label=op.replace("_", " "))
            bottoms = [b + v for b, v in zip(bottoms, values)]
    ax.set_xlabel("M-Adds (B) at 1025x2049, measured count")
    ax.set_title("Where the cost is: M-Adds by operation")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return [save_figure(fig, "madds_breakdown.png")]
