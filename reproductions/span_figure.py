"""The span ablation of Tab. 7 as a figure: M-Adds and the paper's accuracy against the span.

Left: M-Adds of Axial-DeepLab-L on Cityscapes per span, paper and measured (count
fidelity).  Right: the paper's PQ / AP / mIoU per span; the proxy's are drawn beside it,
never on these axes (reproductions/proxy_figures.py).
Command: python run_all.py --tables 7 --figures.  Writes figures/span_ablation.png.
"""

from __future__ import annotations

import pandas as pd

from reproductions.runner import load_reported, save_figure

SPANS = {5: "axial-resnet-l-span5", 9: "axial-resnet-l-span9", 17: "axial-resnet-l-span17",
         33: "axial-resnet-l-span33", 65: "axial-resnet-l-span65"}


def main(tables: dict[int, pd.DataFrame]) -> list:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = tables[7].set_index(["row", "metric"])
    reported = load_reported(7).set_index(["row", "metric"])["value"]
    spans = list(SPANS)
    fig, (cost, accuracy) = plt.subplots(1, 2, figsize=(11, 4))
    cost.plot(spans, [float(reported[SPANS[s], "M-Adds"]) for s in spans], "o-", label="paper")
    cost.plot(spans, [float(measured.loc[(SPANS[s], "M-Adds"), "measured"]) for s in spans], "D--",
              mfc="none", label="count (measured)")
    cost.set(xlabel="axial span m", ylabel="M-Adds (B) at 1025x2049: paper, count (measured)",
             title="Cost against span (Tab. 7)")
    for metric in ("PQ", "AP", "mIoU"):
        accuracy.plot(spans, [float(reported[SPANS[s], metric]) for s in spans], "o-", label=f"{metric} (paper)")
    accuracy.set(xlabel="axial span m", ylabel="PQ / AP / mIoU (%), paper",
                 title="Accuracy against span, paper")
    for ax in (cost, accuracy):
        ax.set_xscale("log", base=2)
        ax.set_xticks(spans, [str(s) for s in spans])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return [save_figure(fig, "span_ablation.png")]
