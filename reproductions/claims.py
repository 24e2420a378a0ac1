"""The paper's claims and the verdict of each from this suite's measurements (issues #14, #25).

The claims are data: reported/claims.csv (id, statement as the paper makes it, the paper's
cells that carry it, its table).  How each is tested here is declared in TESTS below: which
measured cells, which statistic, in which direction.  Verdicts are computed from the per-seed
values of the trained tables (tables/table<N>.proxy.csv, column `values`) and from the count
tables, and written to tables/claims.csv (`python run_all.py` at any fidelity rewrites it from
what tables/ holds).  This docstring is the one statement of the rules; tests/test_claims.py
checks each on constructed values.

What is compared.  A claim's cells are rows' per-seed values.  Rows whose provenance
(`seed_runs`) gives the same run id for every seed are one training, not several.  Where a
table has no provenance its rows are taken as distinct trainings, and the claim's note says so.
Seeds are not paired across models: batches are a function of (seed, step), but the
initialisations differ, blocking by seed was not declared before the runs, and with 3 seeds a
paired test has 2 degrees of freedom against Welch's up to 4.  Two evaluations of one training
(the scale stress test's test ratios) are paired by seed.

Not measurable.  A comparison in which no compared row varies over its seeds has measured no
noise, so it decides nothing: it is "not measurable" (verdict inconclusive, said in the note),
never significant.  A comparison whose metric is exactly 0 on every seed of every compared row
(a metric the proxy does not learn) is not measurable for that reason, and so is one whose
interval is not finite.

The kinds of claim, all at the 5 % level:

- difference ("A beats B"): Welch's t interval (95 %) of mean(A) - mean(B) over seeds, and
  its two-sided p-value.  Resolution: the smallest difference the experiment detects with 80 %
  power, (t_0.975,df + t_0.80,df) x SE (about 3.7 SE with 3 + 3 seeds).
- equivalence ("A matches B"), against a margin fixed before any proxy ran (MARGINS), from
  Welch's t as above.  The claim has one p: the level at which the two-sided interval of the
  difference first lies wholly inside the margin (2 x the TOST p) or wholly beyond it (2 x the
  smaller one-sided p of |A - B| > margin), whichever is smaller; which of the two it is gives
  the direction: inside is the paper's side (supported), beyond the other (contradicted).  So
  "supported" needs the 95 % interval inside the margin (a TOST at 2.5 % per side), and the
  claim's one test, both directions together, keeps the 5 % level.
- trend ("grows with the span / the size"): Kendall's tau-b between the factor's level and the
  per-seed values, over distinct trainings only: rows that are one training enter once, at
  the smallest of their levels (the note names them).  Two-sided permutation p-value (values
  shuffled over all runs); a bootstrap interval of tau (seeds resampled within each training).
  Resolution: the smallest |tau| the permutation test calls significant.
- frontier ("the best accuracy-cost trade-off"): for each bootstrap resample of seeds, the
  accuracy of each model of the claimed family minus that of each reference family
  interpolated (linear in log cost) at its cost, averaged over the points inside the
  reference's cost range; percentile interval and bootstrap p-value (twice the share of
  resamples on the other side of 0, at least 2/4000).  Costs are the proxy models' own
  Params / M-Adds.  Resolution: 2.8 bootstrap standard errors.
- scale gain (F4, "the gain over X-71 grows from the training resolution to the largest"),
  in PQ points, never as a ratio: per seed, each model's PQ at the largest test ratio minus
  its PQ at ratio 1 (one training evaluated twice, paired by seed); Axial-DeepLab-L's change
  minus X-71's, by Welch's t as a difference.  This equals L's PQ advantage over X-71 at the
  largest ratio minus that at ratio 1.  (The paper's relative gain divides by X-71's PQ, which
  is about 0 at 4x on the proxy: a quotient with no finite interval.)
- count ("fewer Params and M-Adds"): exact, from the count tables; no noise, no p-value.
- all of several ("outperforms every variant", one claim over PQ, AP and mIoU): each part is
  tested by its own kind.  Supported: every part measurable with its effect on the paper's
  side, p = the largest part p (intersection-union test).  Contradicted: some part on the
  other side, p = k x the smallest such part's p (Bonferroni over the k measurable parts).
  The claim's p is the smaller of the two, and the side it comes from gives the direction.  A
  part that is not measurable decides nothing: the claim can then not be supported (it can
  still be contradicted by another part), and it is not measurable when no part is.  The part
  shown is the weakest measurable one (smallest effect / resolution), or the contradicting
  one; never a part that is not measurable.

The bootstrap's small-sample bias.  Resampling n seeds gives a mean a standard error of
sqrt((n - 1) / n) x s / sqrt(n), too small by sqrt(2/3) with 3 seeds.  Every bootstrap here
(frontier; the trend's interval) resamples each row's residuals inflated by sqrt(n / (n - 1)),
x_mean + sqrt(n / (n - 1)) x (x_i - x_mean), so that the bootstrap standard error of each
row's mean is s / sqrt(n).  (Its tails stay those of a bootstrap, narrower than Student's t
with n - 1 degrees of freedom.)

Random numbers.  Each claim draws from its own generator, seeded by zlib.crc32 of its id (with
decide's seed, 0 by default), so its numbers do not depend on which other claims or tables
exist.

The design.  The panoptic proxy tables (2, 4, 6, 7, 8 and the scale stress test on Tab. 2's
trainings) run the seeds that reproductions/pilot.py declared from a pilot of the baseline alone,
before any compared model ran (tables/proxy_design.json).  Two things of it are read here.  A
metric the pilot found the proxy does not learn (its `not_measurable`: thing PQ, AP) is not
measurable in every claim or part on those tables, whatever the runs give.  The resolution
column of a PQ comparison between two rows of those tables is the design's: the smallest PQ
difference its seeds resolve with 80 % power at Holm's strictest level; the resolution the runs
achieved is in the note.  Other claims (trends in Kendall's tau, mIoU parts, the scale gain,
Tab. 1 and 9) show the resolution their runs achieved.

One family.  Every claim decided from noisy measurements enters one Holm correction, once.
The family is declared with the tests (`family()`: every claim with a noisy test, 18): a
member that has no p-value yet (not run, not measurable) enters it with p = 1, so a verdict
never changes because another table was filled in or emptied.  A claim is
supported when its Holm-adjusted p < 0.05 and its effect is on the paper's side, contradicted
when adjusted p < 0.05 on the other side, inconclusive otherwise -- every kind, equivalence
included, supported and contradicted alike; noise is never a verdict.  A claim that is the same
test on the same trainings as another (TESTS' SameAs: T4-l-vs-x71, since Tab. 4's proxy is
Tab. 2's trainings) is marked not independent: it does not enter the family, and its verdict
is the other claim's, said in its note.  Where provenance gives both claims' run ids they are
checked: if they differ, the claim is decided on its own in the family.  Holm's correction
holds under any dependence, so claims that share a row without being one test (T7-vs-resnet101's
span 65 is Tab. 2's L) each enter once.  Claims whose measurements are not in tables/ yet are
"not run"; a claim no experiment here can test says so in its note and is inconclusive.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from reproductions import runner, trained

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
    costs[(table, row, "Params"|"M-Adds")] = the proxy model's own count,
    seed_ids[(table, row, metric)] = [the seed of each value] (positional 0, 1, ... if absent),
    runs[(table, row)] = {seed: run id} (the provenance's seed_runs; absent: unknown),
    design = the panoptic proxy's design (tables/proxy_design.json; absent: none declared)."""

    def __init__(self, seeds: dict | None = None, counts: dict | None = None, costs: dict | None = None,
                 fidelity: str = "proxy", runs: dict | None = None, seed_ids: dict | None = None,
                 design: dict | None = None):
        self.seeds = seeds or {}
        self.counts = counts or {}
        self.costs = costs or {}
        self.fidelity = fidelity
        self.runs = runs or {}
        self.seed_ids = seed_ids or {}
        self.design = design or {}

    def _designed(self, cell: Cell) -> dict | None:
        """The design's entry for the cell's table, where the design covers it (proxy only)."""
        if self.fidelity != "proxy":
            return None
        return (self.design.get("tables") or {}).get(str(cell.table))

    def declared_not_measurable(self, cells) -> str:
        """Why the design declared these cells' metric not measurable on the proxy, or ''."""
        for cell in cells:
            metric = cell.metric.partition("@")[0]
            if self._designed(cell) is not None and metric in self.design.get("not_measurable", ()):
                return (f"not measurable: the pilot declared {metric} not learnt by the proxy, before the runs "
                        "(tables/proxy_design.md)")
        return ""

    def declared_resolution(self, cells) -> float | None:
        """The smallest PQ difference the design resolves between two rows of these cells' table,
        at Holm's strictest level (declared before the runs), or None where the design does not
        give one (another metric, another table, no design)."""
        entries = [self._designed(c) for c in cells]
        if not cells or any(c.metric != "PQ" for c in cells) or None in entries:
            return None
        return max(float(e["resolvable_PQ_holm"]) for e in entries)

    def by_seed(self, cell: Cell) -> dict[str, float]:
        key = (str(cell.table), cell.row, cell.metric)
        if key not in self.seeds:
            raise NotMeasured(str(cell))
        ids = self.seed_ids.get(key) or [str(i) for i in range(len(self.seeds[key]))]
        return {str(s): float(v) for s, v in zip(ids, self.seeds[key]) if v is not None and not math.isnan(v)}

    def values(self, cell: Cell) -> np.ndarray:
        values = np.asarray(list(self.by_seed(cell).values()), float)
        if len(values) < 2:
            raise NotMeasured(f"{cell} (fewer than 2 seeds)")
        return values

    def paired(self, later: Cell, earlier: Cell) -> np.ndarray:
        """Per seed, later - earlier: two evaluations of one training, paired by seed."""
        a, b = self.by_seed(later), self.by_seed(earlier)
        common = [s for s in a if s in b]
        if len(common) < 2:
            raise NotMeasured(f"{later} and {earlier} (fewer than 2 common seeds)")
        return np.asarray([a[s] - b[s] for s in common], float)

    def training(self, cell: Cell) -> frozenset | None:
        """The run ids of the cell's seeds (one training = one set), or None where the
        provenance does not give every seed's."""
        runs = self.runs.get((str(cell.table), cell.row))
        seeds = list(self.by_seed(cell))
        if not runs or not all(s in runs for s in seeds):
            return None
        return frozenset(runs[s] for s in seeds)

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
        each seed's run id and the proxy models' own counts) and the count tables' measured values."""
        seeds, seed_ids, runs, counts, costs = {}, {}, {}, {}, {}
        for path in sorted(runner.TABLES_DIR.glob(f"*.{fidelity}.csv")):
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
            for _, r in df.iterrows():
                if r.get("values"):
                    key = (str(r["table"]), r["row"], r["metric"])
                    seeds[key] = [float(v) if v else float("nan") for v in r["values"].split(";")]
                    ids = [s.strip() for s in str(r.get("seeds", "")).split(",") if s.strip()]
                    if len(ids) == len(seeds[key]):
                        seed_ids[key] = ids
            provenance = runner.load_provenance(path.with_name(path.name.replace(".csv", ".provenance.json")))
            table = str((provenance or {}).get("table"))
            for row, model_counts in (provenance or {}).get("model_counts", {}).items():
                costs[table, row, "Params"] = model_counts["params"]
                costs[table, row, "M-Adds"] = model_counts["madds"]
            for row, seed_runs in (provenance or {}).get("seed_runs", {}).items():
                runs[table, row] = {str(s["seed"]): s["run"] for s in seed_runs if s.get("run")}
        for path in sorted(runner.TABLES_DIR.glob("table[0-9].csv")):
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
            for _, r in df[df["measured"] != ""].iterrows():
                counts[str(r["table"]), r["row"], r["metric"]] = float(r["measured"])
        return cls(seeds, counts, costs, fidelity, runs, seed_ids, trained.read_design())


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
    not_measurable: str = ""           # why the comparison decides nothing (no p-value then)
    declared_resolution: float | None = None  # the design's, declared before the runs (proxy_design.json)
    follows: str = ""                  # the claim whose verdict this one takes (not independent)


# --- statistics ----------------------------------------------------------------------------

def _all_zero(samples) -> str:
    if all(np.all(np.asarray(s) == 0) for s in samples):
        return "not measurable: the metric is 0 on every seed of every compared row"
    return ""


def _no_spread(samples) -> str:
    if all(np.ptp(np.asarray(s)) == 0 for s in samples):
        return "not measurable: no compared row varies over its seeds (no noise measured)"
    return ""


def not_measurable(samples) -> str:
    """Why a comparison of these per-seed samples decides nothing, or ''."""
    return _all_zero(samples) or _no_spread(samples)


def welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(mean(a) - mean(b), its standard error, Welch-Satterthwaite degrees of freedom)."""
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return float(a.mean() - b.mean()), 0.0, float(len(a) + len(b) - 2)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return float(a.mean() - b.mean()), se, float(df)


def resolvable_difference(se: float, df: float, alpha: float = ALPHA) -> float:
    """The smallest true difference a two-sided t test at `alpha` detects with probability
    POWER, for a difference with standard error `se` on `df` degrees of freedom."""
    from scipy import stats

    return (float(stats.t.ppf(1 - alpha / 2, df)) + float(stats.t.ppf(POWER, df))) * se


def difference_test(a: np.ndarray, b: np.ndarray) -> dict:
    """Welch's t; with no spread on either side nothing is measured: p, interval and
    resolution are None."""
    from scipy import stats

    diff, se, df = welch(a, b)
    if se == 0:
        return {"effect": diff, "interval": None, "p": None, "resolution": None, "se": 0.0, "df": df}
    t = diff / se
    p = float(2 * stats.t.sf(abs(t), df))
    half = float(stats.t.ppf(1 - ALPHA / 2, df)) * se
    resolution = resolvable_difference(se, df)
    return {"effect": diff, "interval": (diff - half, diff + half), "p": p, "resolution": resolution,
            "se": se, "df": df}


def equivalence_test(a: np.ndarray, b: np.ndarray, margin: float) -> dict:
    """One p for "a matches b within margin": 2 x the TOST p (the interval inside the margin)
    or 2 x the smaller one-sided p of |a - b| > margin (beyond it), whichever is smaller;
    `side` says which ("inside": the paper's side)."""
    from scipy import stats

    test = difference_test(a, b)
    diff, se, df = test["effect"], test["se"], test["df"]
    if test["p"] is None:
        return {**test, "p_tost": None, "p_beyond": None, "side": None, "margin": margin}
    p_lower = float(stats.t.sf((diff + margin) / se, df))   # H0: diff <= -margin
    p_upper = float(stats.t.cdf((diff - margin) / se, df))  # H0: diff >= +margin
    p_tost = max(p_lower, p_upper)
    p_beyond = min(1 - p_lower, 1 - p_upper)                 # H0: diff >= -margin / diff <= +margin
    inside, beyond = min(1.0, 2 * p_tost), min(1.0, 2 * p_beyond)
    return {**test, "p": min(inside, beyond), "p_tost": p_tost, "p_beyond": p_beyond,
            "side": "inside" if inside <= beyond else "beyond", "margin": margin}


def tau_b(x, y) -> np.ndarray:
    """Kendall's tau-b of x against each row of y (scipy's kendalltau, vectorised; NaN where
    either is constant)."""
    x = np.asarray(x, float)
    y = np.atleast_2d(np.asarray(y, float))
    n = len(x)
    i, j = np.triu_indices(n, 1)
    sx = np.sign(x[i] - x[j])
    sy = np.sign(y[:, i] - y[:, j])
    pairs = n * (n - 1) / 2
    denominator = np.sqrt((pairs - np.sum(sx == 0)) * (pairs - np.sum(sy == 0, axis=1)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (sy @ sx) / np.where(denominator > 0, denominator, 1), np.nan)


def _inflated(sample: np.ndarray) -> np.ndarray:
    """The sample's residuals inflated by sqrt(n / (n - 1)): its bootstrap SE of the mean is s / sqrt(n)."""
    n = len(sample)
    return sample.mean() + math.sqrt(n / (n - 1)) * (sample - sample.mean()) if n > 1 else sample


def _resample(sample: np.ndarray, rng, size: int) -> np.ndarray:
    """`size` bootstrap resamples (rows) of the inflated sample."""
    base = _inflated(np.asarray(sample, float))
    return base[rng.integers(0, len(base), (size, len(base)))]


def kendall_trend(levels, groups: list[np.ndarray], rng) -> dict:
    """Kendall's tau of values against levels (one level per group of seeds, one group per
    distinct training): permutation p (two-sided), bootstrap interval (seeds resampled within
    each group, inflated)."""
    x = np.concatenate([[lv] * len(g) for lv, g in zip(levels, groups)])
    values = np.concatenate(groups)
    tau = float(tau_b(x, values)[0])
    permuted = np.nan_to_num(tau_b(x, rng.permuted(np.tile(values, (PERMUTATIONS, 1)), axis=1)))
    p = float((np.sum(np.abs(permuted) >= abs(tau) - 1e-12) + 1) / (PERMUTATIONS + 1))
    critical = float(np.quantile(np.abs(permuted), 1 - ALPHA))
    boot = np.nan_to_num(tau_b(x, np.concatenate([_resample(g, rng, BOOTSTRAP) for g in groups], axis=1)))
    low, high = np.quantile(boot, [ALPHA / 2, 1 - ALPHA / 2])
    return {"effect": tau, "interval": (float(low), float(high)), "p": p, "resolution": critical}


def bootstrap_test(samples: list[np.ndarray], statistic, rng) -> dict:
    """A statistic of several models' seed means: estimate, percentile interval, two-sided
    bootstrap p-value (how often the resampled statistic crosses zero), 2.8 bootstrap SE;
    seeds resampled from the inflated residuals."""
    estimate = float(statistic([s.mean() for s in samples]))
    means = [_resample(s, rng, BOOTSTRAP).mean(axis=1) for s in samples]
    boot = np.array([statistic([m[i] for m in means]) for i in range(BOOTSTRAP)])
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
        a, b = m.values(self.better), m.values(self.worse)
        t = difference_test(a, b)
        note = (f"{self.better.row} - {self.worse.row} {self.better.metric}, Welch t"
                + (f"; {self.caveat}" if self.caveat else ""))
        why = m.declared_not_measurable(self.cells()) or not_measurable([a, b])
        if why:
            return Result(m.fidelity, t["effect"], unit=self.better.metric, note=note, not_measurable=why)
        return Result(m.fidelity, t["effect"], t["interval"], t["resolution"], t["p"], unit=self.better.metric,
                      note=note, declared_resolution=m.declared_resolution(self.cells()))


@dataclass(frozen=True)
class Equivalence:
    """`a` matches `b` within `margin` (in the metric's units, fixed before the run)."""

    a: Cell
    b: Cell
    margin: float

    def cells(self):
        return [self.a, self.b]

    def evaluate(self, m: Measurements, rng) -> Result:
        a, b = m.values(self.a), m.values(self.b)
        t = equivalence_test(a, b, self.margin)
        note = f"{self.a.row} - {self.b.row}, equivalence against the margin +-{self.margin:g}"
        why = m.declared_not_measurable(self.cells()) or not_measurable([a, b])
        if why:
            return Result(m.fidelity, t["effect"], unit=self.a.metric, note=note, not_measurable=why)
        return Result(m.fidelity, t["effect"], t["interval"], t["resolution"], t["p"], unit=self.a.metric,
                      equivalence=t, note=note, declared_resolution=m.declared_resolution(self.cells()))


@dataclass(frozen=True)
class Trend:
    """The metric grows with `levels` over `rows` (e.g. spans 5..65, widths S..L); rows that
    are one training (same run ids) enter once, at the smallest of their levels."""

    cells_: tuple[Cell, ...]
    levels: tuple[float, ...]

    def cells(self):
        return list(self.cells_)

    def evaluate(self, m: Measurements, rng) -> Result:
        trainings, unknown = [], []
        for cell, level in zip(self.cells_, self.levels):
            values, key = m.values(cell), m.training(cell)
            if key is None:
                unknown.append(cell.row)
            same = [t for t in trainings if key is not None and t["key"] == key]
            if same:
                same[0]["levels"].append(level)
            else:
                trainings.append({"key": key, "levels": [level], "values": values})
        groups = [t["values"] for t in trainings]
        levels = [min(t["levels"]) for t in trainings]
        shown = ", ".join(f"{t['levels'][0]:g}" + (f" (= {', '.join(f'{lv:g}' for lv in t['levels'][1:])}: "
                                                     "one training)" if len(t["levels"]) > 1 else "")
                          for t in trainings)
        note = (f"{self.cells_[0].metric} against {shown}, over {len(trainings)} rows that are distinct trainings "
                f"({sum(len(g) for g in groups)} seed values), permutation p"
                + (f"; run ids unknown (no provenance) for {', '.join(unknown)}: taken as distinct trainings"
                   if unknown else ""))
        why = (m.declared_not_measurable(self.cells_)
               or ("not measurable: fewer than two rows that are distinct trainings" if len(trainings) < 2
                   else not_measurable(groups)))
        if why:
            return Result(m.fidelity, unit="Kendall tau", note=note, not_measurable=why)
        t = kendall_trend(levels, groups, rng)
        return Result(m.fidelity, t["effect"], t["interval"], t["resolution"], t["p"], unit="Kendall tau", note=note)


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

        estimate = advantage([s.mean() for s in samples])
        if math.isnan(estimate):
            return Result(m.fidelity, note=f"no model of the family lies inside a reference family's {self.cost} "
                                           "range: nothing to compare at equal cost", untestable=True)
        note = f"mean advantage at equal {self.cost} (log-linear interpolation), bootstrap over seeds"
        why = not_measurable(samples)
        if why:
            return Result(m.fidelity, estimate, unit=self.family[0].metric, note=note, not_measurable=why)
        t = bootstrap_test(samples, advantage, rng)
        return Result(m.fidelity, t["effect"], t["interval"], t["resolution"], t["p"], unit=self.family[0].metric,
                      note=note)


@dataclass(frozen=True)
class ScaleGain:
    """A's PQ advantage over B grows from the training ratio to the largest test ratio, in
    points: per seed, (A at the largest - A at 1) and (B at the largest - B at 1), one
    training evaluated twice; Welch's t of A's change minus B's."""

    a_at_one: Cell
    b_at_one: Cell
    a_at_largest: Cell
    b_at_largest: Cell

    def cells(self):
        return [self.a_at_one, self.b_at_one, self.a_at_largest, self.b_at_largest]

    def evaluate(self, m: Measurements, rng) -> Result:
        raw = [m.values(c) for c in self.cells()]
        a_change = m.paired(self.a_at_largest, self.a_at_one)
        b_change = m.paired(self.b_at_largest, self.b_at_one)
        t = difference_test(a_change, b_change)
        metric, largest = self.a_at_one.metric, self.a_at_largest.metric
        note = (f"({largest} - {metric}) of {self.a_at_one.row} minus that of {self.b_at_one.row}, per seed "
                f"(one training evaluated twice), Welch t: {self.a_at_one.row}'s {metric} advantage at "
                f"{largest.partition('@')[2]}x minus at 1x, in points")
        why = m.declared_not_measurable(self.cells()) or _all_zero(raw) or _no_spread([a_change, b_change])
        if why:
            return Result(m.fidelity, t["effect"], unit=metric, note=note, not_measurable=why)
        return Result(m.fidelity, t["effect"], t["interval"], t["resolution"], t["p"], unit=metric, note=note)


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


def _part_text(r: Result) -> str:
    if r.not_measurable:
        return f"{r.note}: {r.not_measurable}"
    return f"{r.note}: {r.effect:+.2f} [{r.interval[0]:+.2f}, {r.interval[1]:+.2f}]"


@dataclass(frozen=True)
class AllOf:
    """Every part holds: supported by the intersection-union test (largest part p, every part
    measurable and on the paper's side), contradicted by any part on the other side (its p x
    the number of measurable parts); the claim's p is the smaller of the two."""

    parts: tuple

    def cells(self):
        return [c for part in self.parts for c in part.cells()]

    def evaluate(self, m: Measurements, rng) -> Result:
        results = [part.evaluate(m, rng) for part in self.parts]
        measured = [r for r in results if not r.not_measurable]
        unmeasured = len(results) - len(measured)
        listing = "; ".join(_part_text(r) for r in results)
        if not measured:
            return Result(m.fidelity, parts=results, note="every part must hold; parts: " + listing,
                          not_measurable="not measurable: no part is measurable")
        k = len(measured)
        p_support = (max(r.p_value for r in measured) if not unmeasured and all(r.effect > 0 for r in measured)
                     else 1.0)
        against = [r for r in measured if r.effect < 0]
        p_against = min(1.0, k * min(r.p_value for r in against)) if against else 1.0
        if p_against < p_support:
            shown, p = min(against, key=lambda r: r.p_value), p_against
            how = f"most significant part against the claim, its p x {k} measurable parts"
        else:
            shown = min(measured, key=lambda r: r.effect / r.resolution if r.resolution else r.effect)
            p, how = p_support, "weakest measurable part"
        blocked = (f"; cannot be supported: {unmeasured} part{'s' if unmeasured > 1 else ''} not measurable"
                   if unmeasured else "")
        return Result(m.fidelity, shown.effect, shown.interval, shown.resolution, p, unit=shown.unit, parts=results,
                      declared_resolution=shown.declared_resolution, note=f"every part must hold; shown: the {how} ({shown.note}){blocked}; parts: {listing}")


@dataclass(frozen=True)
class SameAs:
    """The same test, on the same trainings, as claim `claim`: not independent evidence; its
    verdict is that claim's and it does not enter the Holm family."""

    claim: str
    test: object
    why: str = ""

    def cells(self):
        return self.test.cells()

    def evaluate(self, m: Measurements, rng) -> Result:
        return self.test.evaluate(m, rng)


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
    "T4-l-vs-x71": SameAs("T2-l-vs-x71", Difference(_c(4, "axial-deeplab-l", "PQ"), _c(4, "panoptic-deeplab-x71", "PQ")),
                          "the proxy has one data set: Tab. 4's proxy is Tab. 2's trainings, not independent "
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


def rng_for(claim_id: str, seed: int = 0) -> np.random.Generator:
    """A claim's own random generator: seeded by zlib.crc32 of its id (and decide's seed)."""
    return np.random.default_rng([zlib.crc32(claim_id.encode()), seed])


def _same_trainings(m: Measurements, test: SameAs) -> tuple[bool, str]:
    """Whether a SameAs claim's cells are its base claim's trainings: (same, how it is known)."""
    base = TESTS.get(test.claim)
    if base is None:
        return False, f"{test.claim} has no test"
    pairs = list(zip(test.cells(), base.cells()))
    keys = [(m.training(a), m.training(b)) for a, b in pairs]
    if any(a is not None and b is not None and a != b for a, b in keys):
        return False, f"the provenance gives other run ids than {test.claim}'s: decided on its own"
    if all(a is not None and a == b for a, b in keys):
        return True, "the run ids per seed match"
    return True, "run ids not in the provenance: declared"


def decide(measurements: Measurements, seed: int = 0) -> pd.DataFrame:
    """tables/claims.csv's frame: one line per claim of reported/claims.csv."""
    claims = load_claims()
    results: dict[str, Result | str] = {}
    for _, claim in claims.iterrows():
        test = TESTS.get(claim["id"])
        if test is None:
            results[claim["id"]] = "no test is declared for this claim (reproductions/claims.py TESTS)"
            continue
        try:
            results[claim["id"]] = test.evaluate(measurements, rng_for(claim["id"], seed))
        except NotMeasured as missing:
            results[claim["id"]] = f"not measured yet: {missing}"
    independence = {}
    for claim_id, result in results.items():
        if not isinstance(result, Result):
            continue
        if result.interval and not all(math.isfinite(v) for v in result.interval):
            result.not_measurable, result.p_value = "not measurable: the interval is not finite", None
        test = TESTS.get(claim_id)
        if isinstance(test, SameAs) and isinstance(results.get(test.claim), Result):
            same, how = _same_trainings(measurements, test)
            independence[claim_id] = how
            if same:
                result.follows = test.claim
        elif isinstance(test, SameAs):
            independence[claim_id] = f"{test.claim} is not decided here: decided on its own"
    noisy = {k: r.p_value for k, r in results.items()
             if isinstance(r, Result) and r.p_value is not None and not r.not_measurable and not r.follows}
    # The family is declared, not found: a member without a p-value (not run yet, not
    # measurable) enters with p = 1, so that no verdict moves as other tables fill in.
    members = family()
    adjusted = {k: v for k, v in holm({**{k: 1.0 for k in members}, **noisy}).items() if k in noisy}
    size = len(set(members) | set(noisy))
    verdicts = {k: _verdict(r, adjusted.get(k), size) for k, r in results.items()
                if isinstance(r, Result) and not r.follows}
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
        if result.follows:
            line["verdict"] = verdicts[result.follows][0]
            reason = (f"not independent: the same trainings as {result.follows} ({independence[claim['id']]}); "
                      f"its verdict is {result.follows}'s, which enters the Holm family once")
        else:
            line["verdict"], reason = verdicts[claim["id"]]
            if claim["id"] in independence:
                reason = "; ".join(n for n in (reason, independence[claim["id"]]) if n)
        line["effect"] = (f"{result.effect:.2f}x fewer" if result.exact is not None
                          else _fmt(result.effect, result.unit))
        if result.interval:
            line["interval"] = f"[{result.interval[0]:+.3g}, {result.interval[1]:+.3g}]"
        line["resolution"], resolved = _resolution(result)
        why = TESTS[claim["id"]].why if isinstance(TESTS.get(claim["id"]), SameAs) else ""
        line["note"] = "; ".join(n for n in (reason, result.note, resolved, why) if n)
        lines.append(line)
    return pd.DataFrame(lines, columns=COLUMNS)


def _resolution(result: Result) -> tuple[str, str]:
    """(the resolution column, what the note says of it): the design's declared resolution where
    it gives one, with the one the runs achieved beside it in the note; else the runs'."""
    achieved = "" if result.resolution is None else f"{result.resolution:.3g}"
    if result.declared_resolution is None:
        return achieved, ""
    return (f"{result.declared_resolution:.3g}",
            "resolution declared by the design before the runs (tables/proxy_design.md, Holm's level)"
            + (f"; the runs' own: {achieved}" if achieved else ""))


def family() -> list[str]:
    """The Holm family, declared with the tests: every claim of reported/claims.csv with a noisy
    test (not an exact count, not untestable, not another claim's trainings)."""
    return [claim_id for claim_id in load_claims()["id"]
            if claim_id in TESTS and not isinstance(TESTS[claim_id], (Fewer, Untestable, SameAs))]


def _verdict(result: Result, adjusted_p: float | None, family: int) -> tuple[str, str]:
    if result.untestable:
        return "inconclusive", ""
    if result.exact is not None:
        return ("supported" if result.exact else "contradicted"), "exact counts"
    if result.not_measurable or result.p_value is None:
        return "inconclusive", result.not_measurable or "not measurable"
    p_text = f"p = {result.p_value:.3g}, Holm-adjusted {adjusted_p:.3g} over {family} claims"
    if result.equivalence is not None:
        margin = result.equivalence["margin"]
        if adjusted_p < ALPHA:
            if result.equivalence["side"] == "inside":
                return "supported", f"the interval lies inside the margin +-{margin:g} at the Holm level ({p_text})"
            return "contradicted", f"the interval lies beyond the margin +-{margin:g} at the Holm level ({p_text})"
        return "inconclusive", (f"neither inside nor beyond the margin +-{margin:g} at the Holm level "
                                f"({p_text})")
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
