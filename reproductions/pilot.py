"""The panoptic proxy's pilot and the design it fixes, before any compared model runs (issue #25, part 4).

A proxy verdict is only as good as its power.  So the design of every panoptic proxy table
(seeds per row, and the smallest effect each comparison can resolve) is computed from a pilot
of the convolutional baseline alone -- Tab. 6's ResNet-50 (Panoptic-DeepLab) at the proxy rule,
PILOT_SEEDS seeds -- and committed (tables/proxy_design.json, .md) before the compared rows
train.  Nothing here looks at an attention model.

The rules, declared here before the pilot ran:

- The task must be learnt first.  A metric is *learnt* when every seed ends at LEARNT_FLOOR
  points or more; the baseline *learns the task* when thing and stuff PQ are both learnt and
  its validation PQ moved by at most FLAT_POINTS over the last quarter of training (the curve
  has flattened).  A metric not learnt is *not measurable* on this proxy: claims' parts on it
  cannot decide.  If PQ itself is not learnt, no design is declared (the file says so with the
  pilot's numbers) and the compared tables must not run on that task.
- The seed spread is the pilot's standard deviation of PQ (and of each metric) over seeds.
  The goal is a within-row PQ std of at most GOAL_STD.
- Seeds per row: the most that fit the budget (BUDGET_SECONDS per table on this machine's
  2 cores), at least 3 and at most MAX_SEEDS; a table that trains another's models runs that
  table's seeds (SHARES_TRAININGS_OF).  A table's seconds per seed are the sum over its
  distinct trainings of each row's seconds per run, measured: the median of the row's runs in
  the table's committed provenance (the first proxy, the same models and steps on other scenes;
  the median, because a run resumed or shared with a loaded machine records odd seconds),
  scaled by the pilot's seconds over the baseline's there (validation during training and 500
  validation scenes cost more); the pilot's seconds for a row without committed runs.
- Smallest resolvable effect of a two-row comparison with n seeds per row and the pilot's
  spread s: (t_{1 - a/2, 2n - 2} + t_{POWER, 2n - 2}) s sqrt(2 / n), at a = ALPHA (one test) and
  at a = ALPHA / m, Holm's first and strictest level over the m claims of the family
  (reproductions/claims.py).  It is the `resolution` the design gives each claim of the table.

`python -m reproductions.pilot` trains (or reads from the cache) the pilot's seeds and writes
the design; `--design-only` recomputes the design from cached seeds without training.
"""

from __future__ import annotations

import importlib
import json
import math
import sys

import numpy as np

from reproductions.claims import ALPHA, POWER

PILOT_TABLE, PILOT_ROW = 6, "resnet50"
PILOT_SEEDS = (0, 1, 2, 3, 4)
GOAL_STD = 1.5
FLAT_POINTS = 1.0
LEARNT_FLOOR = 5.0
BUDGET_SECONDS = 2 * 3600
MAX_SEEDS = 10
PANOPTIC_TABLES = (2, 4, 6, 7, 8)
# Tab. 4's proxy trains Tab. 2's models (one data set): it runs Tab. 2's seeds, so that its claim
# (T4-l-vs-x71) rests on the same trainings and enters the Holm family once (claims.py SameAs).
SHARES_TRAININGS_OF = {4: 2}
METRICS = ("PQ", "PQ_Th", "PQ_St", "mIoU", "AP")


def pilot_experiment():
    spec = importlib.import_module(f"reproductions.table{PILOT_TABLE}").SPEC
    return dict(spec.proxy)[PILOT_ROW]


def family_size() -> int:
    """The claims that can enter the Holm family: every declared test but cost counts, claims
    that cannot be tested, and claims that follow another's trainings (reproductions/claims.py)."""
    from reproductions import claims

    return len(claims.family())


def resolvable(spread: float, seeds: int, alpha: float = ALPHA) -> float:
    """The smallest difference of two rows' means that a two-sided t test at `alpha` detects
    with probability POWER, for `seeds` seeds per row and a per-seed standard deviation
    `spread` (claims.py's rule, with the standard error and degrees of freedom of two equal rows)."""
    from reproductions import claims

    return claims.resolvable_difference(spread * math.sqrt(2 / seeds), 2 * seeds - 2, alpha)


def learnt_metrics(results: list[dict]) -> list[str]:
    """The metrics every seed ends at LEARNT_FLOOR points or more on."""
    return [name for name in METRICS
            if all((r["metrics"].get(name) or 0) >= LEARNT_FLOOR for r in results)]


def learns(results: list[dict]) -> tuple[bool, str]:
    """Whether the baseline learnt the task (the rule in the module docstring), and why not."""
    reasons = []
    learnt = learnt_metrics(results)
    for name, what in (("PQ_Th", "thing PQ"), ("PQ_St", "stuff PQ")):
        if name not in learnt:
            values = ", ".join("n/a" if r["metrics"].get(name) is None else f"{r['metrics'][name]:.2f}"
                               for r in results)
            reasons.append(f"{what} below {LEARNT_FLOOR:g} on some seed ({values})")
    for result in results:
        curve = result.get("validation") or []
        if len(curve) < 2:
            reasons.append(f"seed {result['seed']}: no validation curve to tell whether PQ flattened")
        elif abs(curve[-1][1] - curve[-2][1]) > FLAT_POINTS:
            reasons.append(f"seed {result['seed']}: validation PQ still moving "
                           f"({curve[-2][1]} -> {curve[-1][1]} over the last quarter)")
    return not reasons, "; ".join(reasons)


def table_seconds(table: int, pilot_seconds: float) -> tuple[int, float]:
    """(distinct trainings per seed, estimated seconds per seed) of a panoptic table's proxy,
    by the rule in the module docstring."""
    from reproductions import trained

    spec = importlib.import_module(f"reproductions.table{table}").SPEC
    pairs = trained.declared(spec, "proxy")
    runs = {}
    for row, experiment in pairs:
        runs.setdefault(trained.as_run(experiment, False), row)
    measured = _row_seconds(spec)
    baseline = _row_seconds(importlib.import_module(f"reproductions.table{PILOT_TABLE}").SPEC).get(PILOT_ROW)
    scale = pilot_seconds / baseline if baseline else 1.0
    return len(runs), sum(measured[row] * scale if row in measured else pilot_seconds for row in runs.values())


def _row_seconds(spec) -> dict[str, float]:
    """{row: median seconds per run} of a table's proxy provenance as committed (tables/ of the checkout)."""
    from reproductions import runner, trained

    path = runner.ROOT / "tables" / f"{trained.output_stem(spec, 'proxy')}.provenance.json"
    stored = runner.load_provenance(path) or {}
    return {row: float(np.median([r["seconds"] for r in seeds if isinstance(r, dict) and r.get("seconds")]))
            for row, seeds in (stored.get("seed_runs") or {}).items()
            if isinstance(seeds, list) and any(isinstance(r, dict) and r.get("seconds") for r in seeds)}


def design(results: list[dict]) -> dict:
    """The design file's content from the pilot's per-seed results."""
    values = {name: [r["metrics"].get(name) for r in results] for name in METRICS}
    spread = {name: float(np.std(v, ddof=1)) for name, v in values.items() if None not in v and len(v) > 1}
    # The seconds each run recorded (training and evaluation of a run that ran in one session),
    # the quantity the committed provenances record per row.
    seconds = float(np.mean([r.get("seconds") or 0 for r in results]))
    ok, why = learns(results)
    m = family_size()
    record = {
        "pilot": {"table": PILOT_TABLE, "row": PILOT_ROW, "experiment": results[0].get("experiment"),
                  "seeds": [r["seed"] for r in results], "machine": _machine(results[0].get("machine")),
                  "per_seed": {str(r["seed"]): r["metrics"] for r in results},
                  "validation": {str(r["seed"]): r.get("validation") for r in results},
                  "mean": {name: float(np.mean(v)) for name, v in values.items() if None not in v},
                  "std": spread, "seconds_per_run": round(seconds, 1)},
        "rules": {"alpha": ALPHA, "power": POWER, "family": m, "goal_std": GOAL_STD,
                  "budget_seconds_per_table": BUDGET_SECONDS, "max_seeds": MAX_SEEDS, "flat_points": FLAT_POINTS,
                  "learnt_floor": LEARNT_FLOOR},
        "learns_the_task": ok, "why_not": why,
        "learnt_metrics": learnt_metrics(results),
        "not_measurable": [name for name in METRICS if name not in learnt_metrics(results)],
    }
    if "PQ" not in record["learnt_metrics"]:
        record["decision"] = ("no design: the baseline does not learn PQ at this recipe (" + why + "); "
                              "the compared panoptic tables must not run on it")
        return record
    s = spread["PQ"]
    tables = {}
    for table in PANOPTIC_TABLES:
        trainings, per_seed = table_seconds(table, seconds)
        affordable = int(BUDGET_SECONDS // max(1.0, per_seed))
        seeds = max(3, min(MAX_SEEDS, affordable))
        if table in SHARES_TRAININGS_OF:  # its trainings are another table's: the same seeds
            seeds = tables[str(SHARES_TRAININGS_OF[table])]["seeds"]
        tables[str(table)] = {"trainings_per_seed": trainings, "seeds": seeds,
                              "estimated_seconds": round(per_seed * seeds),
                              "resolvable_PQ": round(resolvable(s, seeds, ALPHA), 2),
                              "resolvable_PQ_holm": round(resolvable(s, seeds, ALPHA / m), 2)}
    record["tables"] = tables
    record["decision"] = (f"seeds per table as listed; within-row PQ std {s:.2f} "
                          + ("meets" if s <= GOAL_STD else "misses") + f" the goal of {GOAL_STD}"
                          + ("" if ok else f"; not measurable on this proxy: {', '.join(record['not_measurable'])} "
                             f"({why})"))
    return record


def _machine(described) -> str | None:
    from runtime import machine

    return machine.summary(described) if described else None


def markdown(record: dict) -> str:
    pilot = record["pilot"]
    lines = [f"# Panoptic proxy design (pilot: Tab. {pilot['table']} {pilot['row']}, proxy, "
             f"seeds {', '.join(map(str, pilot['seeds']))})", "",
             f"Experiment: {pilot['experiment']}", f"Machine: {pilot['machine']}", "",
             "| seed | " + " | ".join(METRICS) + " |", "|" + "---|" * (len(METRICS) + 1)]
    for seed, metrics in pilot["per_seed"].items():
        lines.append(f"| {seed} | " + " | ".join("" if metrics.get(n) is None else f"{metrics[n]:.2f}"
                                               for n in METRICS) + " |")
    lines += ["", "Standard deviation over seeds: " + ", ".join(f"{k} {v:.2f}" for k, v in pilot["std"].items()),
              f"Seconds per run: {pilot['seconds_per_run']}", "", f"Learns the task: {record['learns_the_task']}"
              + ("" if record["learns_the_task"] else f" ({record['why_not']})"),
              "", f"Decision: {record['decision']}"]
    if record.get("tables"):
        lines += ["", "| table | trainings per seed | seeds | est. hours | resolvable PQ (5 %) | "
                  f"resolvable PQ (Holm, m = {record['rules']['family']}) |", "|---|---|---|---|---|---|"]
        for table, d in record["tables"].items():
            lines.append(f"| {table} | {d['trainings_per_seed']} | {d['seeds']} | {d['estimated_seconds'] / 3600:.1f} "
                         f"| {d['resolvable_PQ']} | {d['resolvable_PQ_holm']} |")
    return "\n".join(lines) + "\n"


class NoDesign(RuntimeError):
    """The committed pilot found the task not learnt: the compared tables must not run on it."""


def design_seeds(table: int) -> tuple[int, ...] | None:
    """The seeds the committed design gives a panoptic table's small-scale proxy (0 .. n - 1),
    or None when no pilot has run (tables/proxy_design.json absent, or not for this table).
    Raises NoDesign when the pilot ran and declared no design."""
    from reproductions import runner

    try:
        record = json.loads((runner.ROOT / "tables" / "proxy_design.json").read_text())
    except (OSError, ValueError):
        return None
    if table not in PANOPTIC_TABLES:
        return None
    if not record.get("tables"):
        raise NoDesign(f"table {table}: the panoptic proxy's pilot declared no design ({record.get('decision')}); "
                       "see tables/proxy_design.md")
    try:
        return tuple(range(int(record["tables"][str(table)]["seeds"])))
    except (KeyError, TypeError, ValueError):
        return None


def main(argv=None) -> int:
    from runtime.cli import OneLineParser, UsageError

    parser = OneLineParser(prog="python -m reproductions.pilot", description=__doc__.split("\n\n")[0])
    parser.add_argument("--design-only", action="store_true",
                        help="compute the design from the pilot's cached seeds; train nothing")
    try:
        args = parser.parse_args(argv)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from reproductions import runner, trained
    from runtime.files import write_set
    from training import experiments

    experiment = pilot_experiment()
    results = []
    for seed in PILOT_SEEDS:
        path = trained.metrics_file(experiment, seed)
        cached = experiments.read_result(path) if path.exists() else None
        if cached is None and args.design_only:
            print(f"pilot seed {seed} has not run: run without --design-only", file=sys.stderr)
            return 1
        results.append(cached or experiments.run(experiment, seed))
    record = design(results)
    stem = runner.TABLES_DIR / "proxy_design"
    write_set({stem.with_suffix(".json"): json.dumps(record, indent=1) + "\n",
               stem.with_suffix(".md"): markdown(record)})
    print(markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
