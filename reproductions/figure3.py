"""Fig. 3 (count side): ImageNet Top-1 against Params and against M-Adds.

The paper's points are Tab. 9 and Tab. 1 (Params, M-Adds, Top-1 as printed).  The
measured points put this suite's counts on the x-axis at the paper's Top-1 (Top-1
itself is not measured at count fidelity), joined to their paper point, so the
horizontal gap is the counting gap.
Command:  python run_all.py --tables 1,9 --figures
Writes:   figures/figure3_counts.png, tables/figure3_counts.csv
"""

from __future__ import annotations

import pandas as pd

from reproductions import runner
from reproductions.runner import load_reported, save_figure
from runtime.files import write_if_changed

# Families of Fig. 3: (label, table, row prefix or exact rows).
FAMILIES = (
    ("ResNet-50 [30,63]", 1, ("resnet50",)),
    ("Conv-Stem + Attention [63]", 1, ("conv-stem-attention-sasa",)),
    ("Full Attention [63]", 1, ("full-attention-sasa",)),
    ("LR-Net-50 [36]", 1, ("lr-net-50",)),
    ("Conv-Stem + PS-Attention", 9, ("ps-attention-w050", "ps-attention-w075", "ps-attention-w100",
                                     "ps-attention-w125", "ps-attention-w150")),
    ("Conv-Stem + Axial-Attention", 9, ("axial-conv-stem-w0375", "axial-conv-stem-w050",
                                        "axial-conv-stem-w075", "axial-conv-stem-w100")),
    ("Full Axial-Attention", 9, ("full-axial-w050", "full-axial-w075", "full-axial-w100")),
)


def figure_data(tables: dict[int, pd.DataFrame]) -> pd.DataFrame:
    records = []
    for family, table, rows in FAMILIES:
        reported = load_reported(table)
        measured = tables[table]
        for row in rows:
            cells = reported[reported["row"] == row].set_index("metric")["value"]
            meas = measured[measured["row"] == row].set_index("metric")["measured"]
            records.append({
                "family": family, "table": table, "row": row,
                "top1_reported": float(cells["Top-1"]),
                "params_reported_M": float(cells["Params"]),
                "madds_reported_B": float(cells["M-Adds"]),
                "params_measured_M": float(meas["Params"]) if meas.get("Params") else None,
                "madds_measured_B": float(meas["M-Adds"]) if meas.get("M-Adds") else None,
            })
    return pd.DataFrame(records)


def plot(data: pd.DataFrame):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (what, unit) in zip(axes, (("params", "M"), ("madds", "B"))):
        for i, (family, group) in enumerate(data.groupby("family", sort=False)):
            c = colors[i % len(colors)]
            ax.plot(group[f"{what}_reported_{unit}"], group["top1_reported"], "o-", color=c,
                    label=f"{family} (paper)")
            has = group[f"{what}_measured_{unit}"].notna()
            if has.any():
                g = group[has]
                ax.plot(g[f"{what}_measured_{unit}"], g["top1_reported"], "D", mfc="none", color=c,
                        ms=8, label=f"{family} (measured count)")
                for _, r in g.iterrows():
                    ax.plot([r[f"{what}_reported_{unit}"], r[f"{what}_measured_{unit}"]],
                            [r["top1_reported"]] * 2, ":", color=c, lw=1)
        ax.set_xlabel(f"{'Params (M)' if what == 'params' else 'M-Adds (B)'}: paper (filled), count (measured, hollow)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("ImageNet Top-1 (%), paper")
    axes[0].set_title("Top-1 vs Params")
    axes[1].set_title("Top-1 vs M-Adds")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle("Fig. 3, paper: Top-1 is the paper's at both markers; hollow diamonds put this suite's "
                 "counts at it (the proxy's Top-1 is in figure3_proxy.png)", fontsize=10)
    fig.tight_layout(rect=(0, 0.17, 1, 0.95))
    return save_figure(fig, "figure3_counts.png")


def main(tables: dict[int, pd.DataFrame]) -> list:
    data = figure_data(tables)
    png = plot(data)
    csv_path = runner.TABLES_DIR / "figure3_counts.csv"
    write_if_changed(csv_path, data.to_csv(index=False))
    return [png, csv_path]
