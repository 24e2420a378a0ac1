"""The proxy side of the paper's figures, and the proxies' learning curves, drawn from tables/.

Each figure sits in the report beside the paper's own (issue #15), never on the same axes as the
paper's accuracy, so a measured proxy number cannot pass for a reproduced paper number:

- Fig. 3 (Sec. 4.1, with Tab. 9): proxy Top-1 of Tab. 9's models against the proxy models' own
  Params and M-Adds (tables/table9.proxy.provenance.json, `model_counts`).
- Tab. 7 as a figure (Sec. 4.5, the span ablation): proxy PQ, AP and mIoU against the span.
- Figs. 4/10 (Sec. 4.2, the scale stress test): proxy PQ of Axial-DeepLab-L and Panoptic-DeepLab
  (X-71) at each test resolution (Tab. 2's proxy cells PQ@<ratio>, and PQ at ratio 1), and L's
  advantage over X-71 in PQ points. The paper draws a relative gain; on the proxy X-71 falls to
  about 1 PQ at 2-4x, where a ratio over it means nothing, so the points difference is drawn.
  F4-scale (reproductions/claims.py) tests its change from 1x to 4x, paired by seed within each
  training, so the claim's interval is not read off these bars.
- Learning curves of every proxy table (`curves` in its provenance): training loss against step,
  one panel per row, a thin line per seed, so a reader sees whether the training loss had
  flattened; on the panoptic proxy (since issue #25) also the validation PQ at four points of
  training (`validation_curves`), so "flattened" can be said of the metric.

Points are means over seeds with their standard deviation; the seeds are dots.  Every axis says
"proxy (measured)".  A figure whose proxy table is absent is not drawn (an old one is removed),
and the report says that proxy is not run.
Written by report.write() (so by every `python run_all.py`): figures/figure3_proxy.png,
span_ablation_proxy.png, scale_stress_proxy.png and table<N>_proxy_curves.png.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd

from reproductions import runner
from reproductions.figure3 import FAMILIES
from reproductions.span_figure import SPANS

PROXY_LABEL = "proxy (measured)"
FIGURE3 = "figure3_proxy.png"
SPAN = "span_ablation_proxy.png"
SCALE_STRESS = "scale_stress_proxy.png"
# The scale stress test's two models: Tab. 2's proxy rows.
SCALE_STRESS_ROWS = {"axial-deeplab-l": "Axial-DeepLab-L", "panoptic-deeplab-x71": "Panoptic-DeepLab (X-71)"}


def curves_name(table: int) -> str:
    return f"table{table}_proxy_curves.png"


def load_proxy(table: int) -> tuple[pd.DataFrame | None, dict]:
    """A table's proxy results and provenance as tables/ holds them; (None, {}) if never run."""
    path = runner.TABLES_DIR / f"table{table}.proxy.csv"
    if not path.exists():
        return None, {}
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    provenance = runner.load_provenance(runner.TABLES_DIR / f"table{table}.proxy.provenance.json") or {}
    return df, provenance


def seed_values(line) -> list[float]:
    """A cell's per-seed values (tables written before the `values` column have none)."""
    return [float(v) for v in str(line.get("values", "")).split(";") if v]


def _cell(df: pd.DataFrame, row: str, metric: str):
    found = df[(df["row"] == row) & (df["metric"] == metric) & (df["measured"] != "")]
    return None if found.empty else found.iloc[0]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _point(ax, x, line, color, label=None, marker="o"):
    """Mean with its standard deviation, and each seed as a small dot at the same x."""
    mean, std = float(line["measured"]), float(line["std"] or 0)
    ax.errorbar([x], [mean], yerr=[std], fmt=marker, color=color, capsize=3, label=label)
    seeds = seed_values(line)
    ax.plot([x] * len(seeds), seeds, ".", color=color, ms=3, alpha=0.5)
    return mean


def _ratio_axis(ax, ticks, labels=None):
    """A log2 x-axis labelled at the given values (spans, test resolution ratios)."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks, labels or [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.grid(alpha=0.3)


def figure3(df: pd.DataFrame, provenance: dict):
    """Tab. 9's proxy Top-1 against the proxy models' own Params and M-Adds, per family."""
    plt = _pyplot()
    counts = provenance.get("model_counts", {})
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (family, table, rows) in enumerate(FAMILIES):
        if table != 9:
            continue
        for ax, what, scale in ((axes[0], "params", 1e6), (axes[1], "madds", 1e6)):
            xs, ys = [], []
            for row in rows:
                line = _cell(df, row, "Top-1")
                if line is None or row not in counts:
                    continue
                xs.append(counts[row][what] / scale)
                ys.append(_point(ax, xs[-1], line, colors[i % len(colors)],
                                 label=family if not xs[:-1] else None))
            ax.plot(xs, ys, "-", color=colors[i % len(colors)], lw=1)
    axes[0].set(xlabel=f"Params (M) of the proxy model, {PROXY_LABEL}", ylabel=f"Top-1 (%), {PROXY_LABEL}")
    axes[1].set(xlabel=f"M-Adds (M) of the proxy model, {PROXY_LABEL}")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Fig. 3, proxy (measured): Tab. 9's models trained on the proxy; mean ± std, dots = seeds",
                 fontsize=9)
    fig.tight_layout()
    return fig


def proxy_spans(scale: str) -> dict[int, int]:
    """{the paper's span: the span the proxy trained at `scale`} for Tab. 7's rows."""
    from reproductions import table7, trained

    declared = dict(trained.declared(table7.SPEC, "proxy", scale))
    return {s: dict(declared[row].backbone_changes).get("span", s) for s, row in SPANS.items() if row in declared}


def span(df: pd.DataFrame, scale: str = "small"):
    """Tab. 7's proxy PQ / AP / mIoU against the paper's span, each tick naming the span the
    proxy trained (scaled with its feature maps); ResNet-101's proxy as a dashed line."""
    plt = _pyplot()
    trained_spans = proxy_spans(scale)
    metrics = [m for m in ("PQ", "AP", "mIoU") if (df["metric"] == m).any()]
    fig, axes = plt.subplots(1, max(1, len(metrics)), figsize=(9, 3.2), squeeze=False)
    spans = list(SPANS)
    for ax, metric in zip(axes[0], metrics):
        xs, ys = [], []
        for s in spans:
            line = _cell(df, SPANS[s], metric)
            if line is not None:
                xs.append(s)
                ys.append(_point(ax, s, line, "C0", label="Axial-DeepLab-L" if len(xs) == 1 else None))
        ax.plot(xs, ys, "-", color="C0", lw=1)
        baseline = _cell(df, "resnet101", metric)
        if baseline is not None:
            ax.axhline(float(baseline["measured"]), color="C3", ls="--", lw=1, label="ResNet-101")
        ax.set(xlabel="axial span m: the paper's (the proxy's)",
               ylabel=f"{metric} (%), {PROXY_LABEL}")
        _ratio_axis(ax, spans, [f"{s}\n({trained_spans[s]})" if s in trained_spans else f"{s}" for s in spans])
        ax.legend(fontsize=7)
    fig.suptitle(f"Tab. 7 span ablation, proxy (measured, {scale} scale): mean ± std, dots = seeds\n"
                 "the span scaled with the proxy's feature maps; equal proxy spans are one training", fontsize=9)
    fig.tight_layout()
    return fig


def scale_stress_ratios(df: pd.DataFrame, row: str, metric: str = "PQ") -> dict[float, object]:
    """{test ratio: cell} of one row: the PQ@<ratio> cells, and PQ itself at ratio 1."""
    out = {}
    for _, line in df[(df["row"] == row) & (df["measured"] != "")].iterrows():
        name, _, ratio = line["metric"].partition("@")
        if name == metric:
            out[float(ratio) if ratio else 1.0] = line
    return dict(sorted(out.items()))


def advantage(a, b) -> tuple[float, float]:
    """Mean of cell a minus mean of cell b, with the standard error of that difference (the two
    rows are separate trainings: Welch's sqrt(s_a^2 / n_a + s_b^2 / n_b)); n from the seeds'
    values, or from the seeds column in tables written before the values were kept; nan below 2."""
    sizes = [len(seed_values(line)) or len([s for s in str(line.get("seeds", "")).split(",") if s])
             for line in (a, b)]
    difference = float(a["measured"]) - float(b["measured"])
    if min(sizes) < 2:  # one seed has no spread to speak of: no bar rather than a bar of 0
        return difference, float("nan")
    se = sum(float(line["std"] or 0) ** 2 / n for line, n in zip((a, b), sizes)) ** 0.5
    return difference, se


def scale_stress(df: pd.DataFrame):
    """PQ against the test resolution for the two models of Figs. 4/10, and L's advantage over
    X-71 in PQ points at each resolution (± its standard error)."""
    plt = _pyplot()
    fig, (pq, gain) = plt.subplots(1, 2, figsize=(9, 3.2))
    cells = {}
    for i, (row, label) in enumerate(SCALE_STRESS_ROWS.items()):
        cells[row] = scale_stress_ratios(df, row)
        means = [_point(pq, r, line, f"C{i}", label=label if r == min(cells[row]) else None)
                 for r, line in cells[row].items()]
        pq.plot(list(cells[row]), means, "-", color=f"C{i}", lw=1)
    a, b = cells.values()
    shared = [r for r in a if r in b]
    differences = [advantage(a[r], b[r]) for r in shared]
    gain.errorbar(shared, [d for d, _ in differences], yerr=[se for _, se in differences], fmt="o-", color="C2",
                  capsize=3)
    gain.axhline(0, color="k", lw=0.8)
    pq.set(ylabel=f"PQ (%), {PROXY_LABEL}")
    gain.set(ylabel=f"PQ of L minus PQ of X-71 (points,\n± s.e.), {PROXY_LABEL}")
    for ax in (pq, gain):
        ax.set_xlabel("test resolution ratio (1 = the proxy's training resolution)")
        _ratio_axis(ax, sorted(set(a) | set(b)) or [1.0])
    pq.legend(fontsize=7)
    fig.suptitle("Scale stress test (Figs. 4/10), proxy (measured): trained once, tested at each resolution; "
                 "left: mean ± std, dots = seeds; right: difference of means ± its standard error", fontsize=9)
    fig.tight_layout()
    return fig


def learning_curves(provenance: dict, labels: dict[str, str]):
    """Training loss against step: one panel per row, a thin line per seed; with the
    validation PQ during training on a right axis (orange) where the provenance has it
    (`validation_curves`, the panoptic proxy since issue #25); None if no curves."""
    curves = {row: seeds for row, seeds in provenance.get("curves", {}).items() if any(seeds.values())}
    validation = provenance.get("validation_curves") or {}
    if not curves:
        return None
    plt = _pyplot()
    columns = min(8, len(curves))
    rows = -(-len(curves) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(0.5 + 1.6 * columns, 0.25 + 1.05 * rows), sharex=True,
                             sharey=True, squeeze=False)
    for ax, (row, seeds) in zip(axes.flat, curves.items()):
        for points in seeds.values():
            if points:
                steps, losses = zip(*points)
                ax.plot(steps, losses, "-", color="C0", lw=0.8, alpha=0.8)
        points_by_seed = [p for p in (validation.get(row) or {}).values() if p]
        if points_by_seed:
            metric_ax = ax.twinx()
            for points in points_by_seed:
                metric_ax.plot([p[0] for p in points], [p[1] for p in points], "o-", color="C1", lw=0.8, ms=2)
            metric_ax.set_ylim(0, 100)
            metric_ax.tick_params(labelsize=5, colors="C1")
            if ax in axes[:, -1] or row == list(curves)[-1]:
                metric_ax.set_ylabel("validation PQ", fontsize=6, color="C1")
        ax.set_title(textwrap.fill(labels.get(row, row), 26), fontsize=7)  # a panel is 1.6 in wide
        ax.tick_params(labelsize=6)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(curves):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"training loss,\n{PROXY_LABEL}", fontsize=6)
    for ax in axes[-1]:
        ax.set_xlabel("step", fontsize=6)
    fig.tight_layout(pad=0.4)
    return fig


def panel_titles(paper_rows: pd.DataFrame, drawn) -> dict[str, str]:
    """The drawn rows' names in the paper, or the row id where the paper gives several drawn rows
    one name (Tab. 7's spans, Tab. 8's output strides). Rows not drawn do not count: X-71 shares
    its name with its multi-scale row, which the proxy does not train."""
    paper_rows = paper_rows.drop_duplicates("row")
    paper_rows = paper_rows[paper_rows["row"].isin(list(drawn))]
    repeated = paper_rows["label"].duplicated(keep=False)
    return {r.row: r.row if again else r.label for r, again in zip(paper_rows.itertuples(), repeated)}


def _save_or_remove(fig, name: str) -> Path | None:
    """Save a drawn figure; without one, remove the file an earlier run left (its table is gone)."""
    if fig is not None:
        return runner.save_figure(fig, name)
    (runner.FIGURES_DIR / name).unlink(missing_ok=True)
    return None


def draw_all() -> list[Path]:
    """Every proxy figure that tables/ has data for (report.write() calls it before rendering)."""
    written = []
    proxies = {table: load_proxy(table) for table in range(1, 10)}  # read once: Tab. 2's provenance is large
    for table, (df, provenance) in proxies.items():
        labels = panel_titles(runner.load_reported(table), provenance.get("curves", {}))
        written.append(_save_or_remove(learning_curves(provenance, labels) if df is not None else None,
                                       curves_name(table)))
    t9, p9 = proxies[9]
    written.append(_save_or_remove(figure3(t9, p9) if t9 is not None and p9.get("model_counts") else None,
                                   FIGURE3))
    t7, p7 = proxies[7]
    written.append(_save_or_remove(span(t7, p7.get("proxy_scale") or "small") if t7 is not None else None, SPAN))
    t2, _ = proxies[2]
    has_ratios = t2 is not None and any(len(scale_stress_ratios(t2, row)) > 1 for row in SCALE_STRESS_ROWS)
    written.append(_save_or_remove(scale_stress(t2) if has_ratios else None, SCALE_STRESS))
    return [path for path in written if path]
