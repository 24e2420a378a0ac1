"""The paper's claims and the verdict of each from this suite's measurements (issue #14).

The claims are data: reported/claims.csv (id, statement as the paper makes it, the paper's
cells that carry it, its table).  How each is tested here is declared in TESTS below: which
measured cells, which statistic, in which direction.  Verdicts are computed from the per-seed
values of the trained tables (tables/table<N>.proxy.csv, column `values`) and from the count
tables, and written to tables/claims.csv (`python run_all.py` at any fidelity rewrites it from
what tables/ holds).

The statistical rules, one per kind of claim, all at the 5 % level:

- difference ("A beats B"): Welch's t interval (95 %) of mean(A) - mean(B) over seeds, and
  its two-sided p-value.  Resolution: the smallest difference the experiment detects with 80 %
  power, (t_0.975,df + t_0.80,df) x SE (about 3.7 SE with 3 + 3 seeds).
- trend ("grows with the span / the size"): Kendall's tau between the factor's level and the
  per-seed values; two-sided permutation p-value (values shuffled over all runs); a bootstrap
  interval of tau (seeds resampled within each level).  Resolution: the smallest |tau| the
  permutation test calls significant.
- equivalence ("A matches B"): two one-sided Welch tests (TOST) against a margin fixed before
  any proxy ran (MARGINS); supported when both reject, contradicted when the 95 % interval of
  the difference lies entirely beyond the margin, inconclusive otherwise.
- frontier ("the best accuracy-cost trade-off"): for each bootstrap resample of seeds, the
  accuracy of each model of the claimed family minus that of each reference family
  interpolated (linear in log cost) at its cost, averaged over the points inside the
  reference's cost range; percentile interval and bootstrap p-value.  Costs are the proxy
  models' own Params / M-Adds.  Resolution: 2.8 bootstrap standard errors.
- scale gain ("the gain grows with the test resolution"): the relative gain of A over B at the
  largest test ratio minus that at ratio 1, bootstrapped over seeds as a frontier is.
- count ("fewer Params and M-Adds"): exact, from the count tables; no noise, no p-value.
- all of several ("outperforms every variant", one claim over PQ, AP and mIoU): supported
  when every part is, contradicted when any part is, inconclusive otherwise; its p-value is
  the largest of the parts' (intersection-union test).

Every claim decided from noisy measurements enters one Holm correction: verdict supported
when its Holm-adjusted p < 0.05 and the effect has the paper's sign, contradicted when
adjusted p < 0.05 with the opposite sign (equivalence: as above, at the adjusted level),
inconclusive otherwise -- noise is never a verdict.  Claims whose measurements are not in
tables/ yet are "not run"; a claim no experiment here can test says so in its note and is
inconclusive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from reproductions import runner

ALPHA = 0.05
POWER = 0.80
BOOTSTRAP = 4000
PERMUTATIONS = 10000
VERDICTS = ("supported", "contradicted", "inconclusive", "not run")
COLUMNS = ["claim", "statement", "tables", "fidelity", "experiment", "verdict", "effect", "interval",
           "resolution", "note"]
CLAIMS_FILE = runner.REPORTED_DIR / "claims.csv"


class NotMeasured(Exception):
    """A cell a claim needs is not in tables/ yet."""


# --- what is measured --------------------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    table: int | str
    row: str
    metric: str

    def __str__(self):
        return f"{self.table}/{self.row}/{self.metric}"


class Measurements:
    """Per-seed values of the trained tables and exact counts, as tables/ holds them (or as
    given, for tests): seeds[(table, row, metric)] = [value per seed], counts[...] = value,
    costs[(table, row, "Params"|"M-Adds")] = the proxy model's own count."""

    def __init__(self, seeds: dict | None = None, counts: dict | None = None, costs: dict | None = None,
                 fidelity: str = "proxy"):
        self.seeds = seeds or {}
        self.counts = counts or {}
        self.costs = costs or {}
        self.fidelity = fidelity

    def values(self, cell: Cell) -> np.ndarray:
        key = (str(cell.table), cell.row, cell.metric)
        if key not in self.seeds:
            raise NotMeasured(str(cell))
        values = np.asarray([v for v in self.seeds[key] if v is not None and not math.isnan(v)], float)
        if len(values) < 2:
            raise NotMeasured(f"{cell} (fewer than 2 seeds)")
        return values

    def count(self, cell: Cell) -> float:
        key = (str(cell.table), cell.row, cell.metric)
        if key not in self.counts:
            raise NotMeasured(str(cell))
        return self.counts[key]

    def cost(self, cell: Cell, metric: str) -> float:
        key = (str(cell.table), cell.row, metric)
        if key not in self.costs:
            raise NotMeasured(f"{cell.table}/{cell.row}/{metric} of the proxy model")
        return self.costs[key]

    @classmethod
    def from_tables(cls, fidelity: str = "proxy") -> "Measurements":
        """What tables/ holds: the trained tables' per-seed values (and, in their provenance,
        the proxy models' own counts) and the count tables' measured values."""
        seeds, counts, costs = {}, {}, {}
        for path in sorted(runner.TABLES_DIR.glob(f"*.{fidelity}.csv")):
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
            for _, r in df.iterrows():
                if r.get("values"):
                    seeds[str(r["table"]), r["row"], r["metric"]] = [float(v) if v else float("nan")
                                                                    for v in r["values"].split(";")]
            provenance = runner.load_provenance(path.with_name(path.name.replace(".csv", ".provenance.json")))
            for row, model_counts in (provenance or {}).get("model_counts", {}).items():
                table = str((provenance or {}).get("table"))
                costs[table, row, "Params"] = model_counts["params"]
                costs[table, row, "M-Adds"] = model_counts["madds"]
        for path in sorted(runner.TABLES_DIR.glob("table[0-9].csv")):
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
            for _, r in df[df["measured"] != ""].iterrows():
                counts[str(r["table"]), r["row"], r["metric"]] = float(r["measured"])
        return cls(seeds, counts, costs, fidelity)


# --- results -------------------------------------------------------------------------------

@dataclass
class Result:
    """One claim's evidence: `supports` is the sign of the effect (True: the paper's side)."""

    fidelity: str
    effect: float | None = None
    interval: tuple[float, float] | None = None
    resolution: float | None = None
    p_value: float | None = None
    unit: str = ""
    exact: bool | None = None          # count claims: True/False, no p-value
    equivalence: dict | None = None    # TOST results
    parts: list = field(default_factory=list)
    note: str = ""
    untestable: bool = False


# --- statistics ----------------------------------------------------------------------------

def welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(mean(a) - mean(b), its standard error, Welch-Satterthwaite degrees of freedom)."""
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return float(a.mean() - b.mean()), 0.0, float(len(a) + len(b) - 2)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return float(a.mean() - b.mean()), se, float(df)


def difference_test(a: np.ndarray, b: np.ndarray) -> dict:
    from scipy import stats

    diff, se, df = welch(a, b)
    if se == 0:
        p = 0.0 if diff != 0 else 1.0
        return {"effect": diff, "interval": (diff, diff), "p": p, "resolution": 0.0, "se": 0.0, "df": df}
    t = diff / se
    p = float(2 * stats.t.sf(abs(t), df))
    half = float(stats.t.ppf(1 - ALPHA / 2, df)) * se
    resolution = (float(stats.t.ppf(1 - ALPHA / 2, df)) + float(stats.t.ppf(POWER, df))) * se
    return {"effect": diff, "interval": (diff - half, diff + half), "p": p, "resolution": resolution,
            "se": se, "df": df}


def equivalence_test(a: np.ndarray, b: np.ndarray, margin: float) -> dict:
    """TOST: p = the larger of the two one-sided p-values against -margin and +margin."""
    from scipy import stats

    test = difference_test(a, b)
    diff, se, df = test["effect"], test["se"], test["df"]
    if se == 0:
        p_tost = 0.0 if abs(diff) < margin else 1.0
    else:
        p_lower = float(stats.t.sf((diff + margin) / se, df))   # H0: diff <= -margin
        p_upper = float(stats.t.cdf((diff - margin) / se, df))  # H0: diff >= +margin
        p_tost = max(p_lower, p_upper)
    low, high = test["interval"]
    beyond = low > margin or high < -margin
    return {**test, "p_tost": p_tost, "beyond_margin": beyond, "margin": margin}


def kendall_trend(levels: np.ndarray, values: np.ndarray, groups: list[np.ndarray], rng) -> dict:
    """Kendall's tau of values against levels, permutation p (two-sided), bootstrap interval."""
    from scipy.stats import kendalltau

    tau = float(kendalltau(levels, values).statistic)
    permuted = np.empty(PERMUTATIONS)
    for i in range(PERMUTATIONS):
        permuted[i] = kendalltau(levels, rng.permutation(values)).statistic
    permuted = np.nan_to_num(permuted)
    p = float((np.sum(np.abs(permuted) >= abs(tau) - 1e-12) + 1) / (PERMUTATIONS + 1))
    critical = float(np.quantile(np.abs(permuted), 1 - ALPHA))
    boot = np.empty(BOOTSTRAP)
    for i in range(BOOTSTRAP):
        resampled = np.concatenate([rng.choice(g, len(g)) for g in groups])
        boot[i] = kendalltau(levels, resampled).statistic
    boot = np.nan_to_num(boot)
    low, high = np.quantile(boot, [ALPHA / 2, 1 - ALPHA / 2])
    return {"effect": tau, "interval": (float(low), float(high)), "p": p, "resolution": critical}


def bootstrap_test(samples: list[np.ndarray], statistic, rng) -> dict:
    """A statistic of several models' seed samples: estimate, percentile interval, two-sided
    bootstrap p-value (how often the resampled statistic crosses zero), 2.8 bootstrap SE."""
    estimate = float(statistic([s.mean() for s in samples]))
    boot = np.empty(BOOTSTRAP)
    for i in range(BOOTSTRAP):
        boot[i] = statistic([rng.choice(s, len(s)).mean() for s in samples])
    low, high = np.quantile(boot, [ALPHA / 2, 1 - ALPHA / 2])
    crossing = np.mean(boot <= 0) if estimate > 0 else np.mean(boot >= 0)
    p = float(min(1.0, 2 * max(crossing, 1 / BOOTSTRAP)))
    return {"effect": estimate, "interval": (float(low), float(high)), "p": p,
            "resolution": float(2.8 * boot.std(ddof=1))}


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjustment of a family of p-values."""
    order = sorted(p_values, key=p_values.get)
    adjusted, running = {}, 0.0
    for i, key in enumerate(order):
        running = max(running, min(1.0, (len(order) - i) * p_values[key]))
        adjusted[key] = running
    return adjusted


# --- the kinds of test ---------------------------------------------------------------------

@dataclass(frozen=True)
class Difference:
    """`better` is higher than `worse` (the paper's claim)."""

    better: Cell
    worse: Cell
    caveat: str = ""

    def cells(self):
        return [self.better, self.worse]

    def evaluate(self, m: Measurements, rng) -> Result:
        t = difference_test(m.values(self.better), m.values(self.worse))
        return Result(m.fidelity, t["effect"], t["interval"], t["resolution"], t["p"], unit=self.better.metric,
                      note=f"{self.better.row} - {self.worse.row} {self.better.metric}, Welch t" + (f"; {self.caveat}" if self.caveat else ""))


@dataclass(frozen=True)
class Equivalence:
    """`a` matches `b` within `margin` (in the metric's units, fixed before the run)."""

    a: Cell
    b: Cell
    margin: float

    def cells(self):
        return [self.a, self.b]

    def evaluate(self, m: Measurements, rng) -> Result:
        t = equivalence_test(m.values(self.a), m.values(self.b), self.margin)
        return Result(m.fidelity, t["effect"], t["interval"], t["resolution"], t["p_tost"], unit=self.a.metric,
                      equivalence=t, note=f"{self.a.row} - {self.b.row}, TOST with margin +-{self.margin:g}")


@dataclass(frozen=True)
class Trend:
    """The metric grows with `levels` over `rows` (e.g. spans 5..65, widths S..L)."""

    cells_: tuple[Cell, ...]
    levels: tuple[float, ...]

    def cells(self):
        return list(self.cells_)

    def evaluate(self, m: Measurements, rng) -> Result:
        groups = [m.values(c) for c in self.cells_]
        levels = np.concatenate([[lv] * len(g) for lv, g in zip(self.levels, groups)])
        t = kendall_trend(levels, np.concatenate(groups), groups, rng)
        return Result(m.fidelity, t["effect"], t["interval"], t["resolution"], t["p"], unit="Kendall tau",
                      note=f"{self.cells_[0].metric} against {', '.join(f'{lv:g}' for lv in self.levels)}, "
                           "permutation p")


@dataclass(frozen=True)
class Frontier:
    """`family` is more accurate than each reference family at equal `cost` (Params/M-Adds)."""

    family: tuple[Cell, ...]
    references: tuple[tuple[Cell, ...], ...]
    cost: str

    def cells(self):
        return list(self.family) + [c for ref in self.references for c in ref]

    def evaluate(self, m: Measurements, rng) -> Result:
        models = list(self.family) + [c for ref in self.references for c in ref]
        samples = [m.values(c) for c in models]
        costs = np.log([m.cost(c, self.cost) for c in models])
        n = len(self.family)
        spans, start = [], n
        for ref in self.references:
            spans.append((start, start + len(ref)))
            start += len(ref)

        def advantage(means):
            gaps = []
            for lo, hi in spans:
                order = np.argsort(costs[lo:hi])
                x, y = costs[lo:hi][order], np.asarray(means[lo:hi])[order]
                for i in range(n):
                    if x[0] <= costs[i] <= x[-1]:
                        gaps.append(means[i] - np.interp(costs[i], x, y))
            return float(np.mean(gaps)) if gaps else float("nan")

        if math.isnan(advantage([s.mean() for s in samples])):
            return Result(m.fidelity, note=f"no model of the family lies inside a reference family's {self.cost} "
                                           "range: nothing to compare at equal cost", untestable=True)
        t = bootstrap_test(samples, advantage, rng)
        return Result(m.fidelity, t["effect"], t["interval"], t["resolution"], t["p"], unit=self.family[0].metric,
                      note=f"mean advantage at equal {self.cost} (log-linear interpolation), bootstrap over seeds")


@dataclass(frozen=True)
class ScaleGain:
    """A's relative gain over B at the largest test ratio exceeds that at the training ratio:
    cells are (A at ratio r, B at ratio r) for r = 1 and the largest."""

    a_at_one: Cell
    b_at_one: Cell
    a_at_largest: Cell
    b_at_largest: Cell

    def cells(self):
        return [self.a_at_one, self.b_at_one, self.a_at_largest, self.b_at_largest]

    def evaluate(self, m: Measurements, rng) -> Result:
        samples = [m.values(c) for c in self.cells()]

        def growth(means):
            a1, b1, an, bn = means
            return (an - bn) / max(abs(bn), 1e-9) - (a1 - b1) / max(abs(b1), 1e-9)

        t = bootstrap_test(samples, growth, rng)
        return Result(m.fidelity, t["effect"], t["interval"], t["resolution"], t["p"], unit="relative gain",
                      note="relative gain at the largest test ratio minus at the training ratio, bootstrap over seeds")


@dataclass(frozen=True)
class Fewer:
    """Exact counts: `smaller` has fewer of each metric than `larger` (by `factor` if given)."""

    smaller: str
    larger: str
    table: int
    metrics: tuple[str, ...] = ("Params", "M-Adds")

    def cells(self):
        return [Cell(self.table, r, mt) for r in (self.smaller, self.larger) for mt in self.metrics]

    def evaluate(self, m: Measurements, rng) -> Result:
        ratios = {mt: m.count(Cell(self.table, self.larger, mt)) / m.count(Cell(self.table, self.smaller, mt))
                  for mt in self.metrics}
        note = "; ".join(f"{mt}: {self.larger} / {self.smaller} = {r:.2f}x" for mt, r in ratios.items())
        return Result("count", effect=min(ratios.values()),
                      exact=all(r > 1 for r in ratios.values()), note=note)


@dataclass(frozen=True)
class AllOf:
    """Every part holds (intersection-union): the largest part p-value."""

    parts: tuple

    def cells(self):
        return [c for part in self.parts for c in part.cells()]

    def evaluate(self, m: Measurements, rng) -> Result:
        results = [part.evaluate(m, rng) for part in self.parts]
        weakest = min(results, key=lambda r: r.effect / r.resolution if r.resolution else r.effect)
        return Result(m.fidelity, weakest.effect, weakest.interval, weakest.resolution,
                      max(r.p_value for r in results), unit=weakest.unit, parts=results,
                      note="every part must hold; shown: the weakest part (" + weakest.note + "); parts: "
                           + "; ".join(f"{r.note}: {r.effect:+.2f} [{r.interval[0]:+.2f}, {r.interval[1]:+.2f}]"
                                       for r in results))


@dataclass(frozen=True)
class Untestable:
    why: str

    def cells(self):
        return []

    def evaluate(self, m: Measurements, rng) -> Result:
        return Result(m.fidelity, note=self.why, untestable=True)


# --- the claims' tests -----------------------------------------------------------------------

def _c(table, row, metric):
    return Cell(table, row, metric)


def _beats(table, better, worse, metric="PQ"):
    return Difference(_c(table, better, metric), _c(table, worse, metric))


# Equivalence margins, fixed before any proxy of these claims ran (metric points of the proxy):
# one point, about the seed standard deviation of the earlier Tab. 1 proxy's steadiest rows.
MARGINS = {"Top-1": 1.0, "PQ": 1.0}
SPANS = (5, 9, 17, 33, 65)

TESTS = {
    "T1-bn": Difference(_c(1, "conv-stem-attention-bn", "Top-1"), _c(1, "conv-stem-attention-sasa", "Top-1")),
    "T1-ps": Difference(_c(1, "conv-stem-ps-attention", "Top-1"), _c(1, "conv-stem-attention-bn", "Top-1")),
    "T1-axial-on-par": Equivalence(_c(1, "conv-stem-axial-attention", "Top-1"),
                                   _c(1, "conv-stem-attention-sasa", "Top-1"), MARGINS["Top-1"]),
    "T1-axial-cost": Fewer("conv-stem-axial-attention", "conv-stem-attention-sasa", 1),
    "T1-full-best": Untestable(
        "no experiment here can test it: the compared stand-alone model, Full Attention [63] with its "
        "spatially-aware stem, is another paper's and is not built (its Tab. 1 row is reported only)"),
    "F3-params": Frontier(tuple(_c(9, f"full-axial-w{w}", "Top-1") for w in ("050", "075", "100")),
                          (tuple(_c(9, f"ps-attention-w{w}", "Top-1") for w in ("050", "075", "100", "125", "150")),
                           tuple(_c(9, f"axial-conv-stem-w{w}", "Top-1") for w in ("0375", "050", "075", "100"))),
                          "Params"),
    "F3-madds": Frontier(tuple(_c(9, f"full-axial-w{w}", "Top-1") for w in ("050", "075", "100")),
                         (tuple(_c(9, f"ps-attention-w{w}", "Top-1") for w in ("050", "075", "100", "125", "150")),
                          tuple(_c(9, f"axial-conv-stem-w{w}", "Top-1") for w in ("0375", "050", "075", "100"))),
                         "M-Adds"),
    "T2-size": Trend(tuple(_c(2, f"axial-deeplab-{s}", "PQ") for s in "sml"), (0.5, 0.75, 1.0)),
    "T2-s-vs-x71": _beats(2, "axial-deeplab-s", "panoptic-deeplab-x71"),
    "T2-s-cost": Fewer("axial-deeplab-s", "panoptic-deeplab-x71-ms", 2),
    "T2-l-vs-x71": _beats(2, "axial-deeplab-l", "panoptic-deeplab-x71"),
    "T4-l-vs-x71": Difference(_c(4, "axial-deeplab-l", "PQ"), _c(4, "panoptic-deeplab-x71", "PQ"),
                              "the proxy has one data set: the same trainings as T2-l-vs-x71, not independent "
                              "evidence for Mapillary"),
    "T6-attention-beats-resnet": AllOf((_beats(6, "attention-sasa", "resnet50"), _beats(6, "ps-attention", "resnet50"))),
    "T6-ps": _beats(6, "ps-attention", "attention-sasa"),
    "T6-axial": AllOf(tuple(_beats(6, "axial-deeplab-s", "ps-attention", mt) for mt in ("PQ", "AP", "mIoU"))),
    "T6-axial-cost": Fewer("axial-deeplab-s", "ps-attention", 6),
    "T6-aspp": AllOf(tuple(_beats(6, f"{r}-aspp", r) for r in ("resnet50", "attention-sasa", "ps-attention"))),
    "T6-no-aspp-best": AllOf(tuple(_beats(6, "axial-deeplab-s", f"{r}-aspp")
                                   for r in ("resnet50", "attention-sasa", "ps-attention"))),
    "T7-span": AllOf(tuple(Trend(tuple(_c(7, f"axial-resnet-l-span{s}", mt) for s in SPANS), SPANS)
                           for mt in ("PQ", "AP", "mIoU"))),
    "T7-vs-resnet101": _beats(7, "axial-resnet-l-span65", "resnet101"),
    "T8-output-stride": Equivalence(_c(8, "axial-resnet-l-os32", "PQ"), _c(8, "axial-resnet-l-os16", "PQ"),
                                    MARGINS["PQ"]),
    "T8-output-stride-cost": Fewer("axial-resnet-l-os32", "axial-resnet-l-os16", 8, ("M-Adds",)),
    "T8-axial-decoder": Equivalence(_c(8, "axial-resnet-l-os16-ad", "PQ"), _c(8, "axial-resnet-l-os16", "PQ"),
                                    MARGINS["PQ"]),
    # Tab. 2's proxy evaluates its trained L and X-71 at other test resolutions (PQ@<ratio>).
    "F4-scale": ScaleGain(_c(2, "axial-deeplab-l", "PQ"), _c(2, "panoptic-deeplab-x71", "PQ"),
                          _c(2, "axial-deeplab-l", "PQ@4"), _c(2, "panoptic-deeplab-x71", "PQ@4")),
}


# --- verdicts ------------------------------------------------------------------------------

def load_claims() -> pd.DataFrame:
    return pd.read_csv(CLAIMS_FILE, dtype=str, keep_default_na=False)


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:+.3g}" + (f" {unit}" if unit else "")


def decide(measurements: Measurements, seed: int = 0) -> pd.DataFrame:
    """tables/claims.csv's frame: one line per claim of reported/claims.csv."""
    rng = np.random.default_rng(seed)
    claims = load_claims()
    results: dict[str, Result | str] = {}
    for _, claim in claims.iterrows():
        test = TESTS.get(claim["id"])
        if test is None:
            results[claim["id"]] = "no test is declared for this claim (reproductions/claims.py TESTS)"
            continue
        try:
            results[claim["id"]] = test.evaluate(measurements, rng)
        except NotMeasured as missing:
            results[claim["id"]] = f"not measured yet: {missing}"
    noisy = {k: r.p_value for k, r in results.items() if isinstance(r, Result) and r.p_value is not None}
    adjusted = holm(noisy)
    lines = []
    for _, claim in claims.iterrows():
        result = results[claim["id"]]
        line = {"claim": claim["id"], "statement": claim["statement"], "tables": claim["table"],
                "experiment": _experiment(claim["id"]), "effect": "", "interval": "", "resolution": ""}
        if isinstance(result, str):
            line.update(fidelity="", verdict="not run", note=result)
            lines.append(line)
            continue
        line["fidelity"] = "" if result.untestable else result.fidelity
        line["verdict"], reason = _verdict(result, adjusted.get(claim["id"]), len(noisy))
        line["effect"] = (f"{result.effect:.2f}x fewer" if result.exact is not None
                          else _fmt(result.effect, result.unit))
        if result.interval:
            line["interval"] = f"[{result.interval[0]:+.3g}, {result.interval[1]:+.3g}]"
        line["resolution"] = "" if result.resolution is None else f"{result.resolution:.3g}"
        line["note"] = "; ".join(n for n in (reason, result.note) if n)
        lines.append(line)
    return pd.DataFrame(lines, columns=COLUMNS)


def _verdict(result: Result, adjusted_p: float | None, family: int) -> tuple[str, str]:
    if result.untestable:
        return "inconclusive", ""
    if result.exact is not None:
        return ("supported" if result.exact else "contradicted"), "exact counts"
    p_text = f"p = {result.p_value:.3g}, Holm-adjusted {adjusted_p:.3g} over {family} claims"
    if result.equivalence is not None:
        if adjusted_p < ALPHA:
            return "supported", f"equivalent within the margin ({p_text})"
        low, high = result.interval
        margin = result.equivalence["margin"]
        if low > margin or high < -margin:
            return "contradicted", f"the 95 % interval lies beyond the margin +-{margin:g}"
        return "inconclusive", f"neither equivalence nor a difference beyond the margin ({p_text})"
    if adjusted_p < ALPHA:
        return ("supported" if result.effect > 0 else "contradicted"), p_text
    return "inconclusive", p_text


def _experiment(claim_id: str) -> str:
    test = TESTS.get(claim_id)
    if test is None or isinstance(test, Untestable):
        return ""
    tables = sorted({str(c.table) for c in test.cells()})
    kind = "count" if isinstance(test, Fewer) else "proxy"
    return ", ".join(f"{'Figs. 4/10 scale stress' if t == 'F4' else f'Tab. {t}'} {kind}" for t in tables)


def files(df: pd.DataFrame) -> dict:
    """tables/claims.csv and claims.md with their contents."""
    lines = ["# The paper's claims: verdicts", "",
             "Generated by `python run_all.py` from tables/ (reproductions/claims.py states the rules); do not edit.",
             "", "| claim | verdict | effect | 95 % interval | resolution | fidelity | note |",
             "|---|---|---|---|---|---|---|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(str(r[c]).replace("|", "\\|") for c in
                                        ("claim", "verdict", "effect", "interval", "resolution", "fidelity", "note"))
                     + " |")
    return {runner.TABLES_DIR / "claims.csv": df.to_csv(index=False),
            runner.TABLES_DIR / "claims.md": "\n".join(lines) + "\n"}


def write(measurements: Measurements | None = None) -> pd.DataFrame:
    """Decide every claim from tables/ and write tables/claims.csv and claims.md (if changed)."""
    df = decide(measurements or Measurements.from_tables())
    for path, text in files(df).items():
        runner.write_if_changed(path, text)
    return df


def stale() -> list[str]:
    """The claims files on disk that differ from what tables/ gives now (for --check)."""
    return [runner.shown(path) for path, text in files(decide(Measurements.from_tables())).items()
            if not path.is_file() or path.read_text() != text]


def summary(df: pd.DataFrame) -> str:
    counts = df["verdict"].value_counts()
    return ", ".join(f"{verdict} {counts[verdict]}" for verdict in VERDICTS if verdict in counts)
