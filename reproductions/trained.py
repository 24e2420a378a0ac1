"""The training fidelities (proxy, full): run a table's declared experiments, compare with the
paper, write tables/table<N>.<fidelity>.csv / .md / .provenance.json.

A table declares `proxy` and `full` as (row id, Experiment) pairs (reproductions/table<N>.py);
training.experiments runs each seed, resumably and cached, so an interrupted run continues
where it stopped and a finished one is a file read.

Proxy cells are compared with the paper as trends, never as values (other data, other
scale): for every pair of rows the paper orders, does the proxy order them the same way?
A cell agrees when every pair it is in does; disagreeing pairs are named, with whether
the proxy's gap is within seed noise (|mean difference| <= the sum of the two standard
deviations).  Kendall's tau over the rows summarises a metric.  Full cells are compared
by value, as count cells are.

Every seed's value is kept (the `values` column and the provenance), with the machine each
seed ran on.  Training repeats exactly on one machine, not across CPUs or backends (their
floating-point paths differ), so when a table is re-run elsewhere with the same configuration
the new means are compared with the stored ones within seed noise and the comparison is
recorded in the provenance, rather than either run passing for the other.
"""

from __future__ import annotations

import json
import sys
import time
from itertools import combinations

import pandas as pd

from reproductions import runner
from reproductions.runner import ReproductionError, TableSpec

COLUMNS = runner.COLUMNS + ["std", "seeds", "values"]
MIN_PROXY_SEEDS = 3
# --smoke-test: a check of the code path, not a result: 2 steps of batch 2, 8 evaluation images.
SMOKE_STEPS, SMOKE_EVAL_IMAGES = 2, 8
TREND_PENDING = "trend"


def declared(spec: TableSpec, fidelity: str, proxy_scale: str = "small") -> tuple:
    """The (row, Experiment) pairs a table declares at a training fidelity (maybe none); proxy
    experiments at `proxy_scale` (reproductions/proxies.py)."""
    if fidelity != "proxy":
        return spec.full
    from reproductions import proxies

    return tuple((row, proxies.at_scale(e, proxy_scale)) for row, e in spec.proxy)


def experiments_of(spec: TableSpec, fidelity: str, proxy_scale: str = "small", rows=None) -> tuple:
    """The declared pairs (only `rows`, if given); a one-line error for a table that declares
    none, or for a row it does not declare."""
    pairs = declared(spec, fidelity, proxy_scale)
    if rows and pairs:
        unknown = [r for r in rows if r not in dict(pairs)]
        if unknown:
            raise ReproductionError(f"table {spec.table} declares no {fidelity} experiment for row "
                                    f"{', '.join(unknown)}; its rows: {', '.join(r for r, _ in pairs)}")
        pairs = tuple((r, e) for r, e in pairs if r in rows)
    if not pairs:
        raise ReproductionError(f"table {spec.table} declares no {fidelity} experiments yet; it runs at "
                                f"fidelity count (python run_all.py --tables {spec.table})")
    return pairs


def fingerprint(spec: TableSpec) -> str:
    """What a trained table depends on: the table's (declaration, models, paper numbers) and
    the training, data and evaluation code.  The report marks a table stale when it differs."""
    from training import experiments

    return f"{runner.table_fingerprint(spec)}-{experiments._code_fingerprint()}"


def output_stem(spec: TableSpec, fidelity: str) -> str:
    return f"table{spec.table}.{fidelity}"


def as_run(experiment, smoke_test: bool):
    """The experiment as it is run: a smoke test trains batches of 2 without warm-up."""
    import dataclasses

    if not smoke_test:
        return experiment
    return dataclasses.replace(experiment, recipe=dataclasses.replace(experiment.recipe, batch_size=2,
                                                                      warmup_steps=0))


def metrics_file(experiment, seed: int, data_dir=None, smoke_test: bool = False):
    """Where training.experiments.run finds a seed's metrics once it has run: the first thing it
    looks up, here without running anything (tests/test_trained_runner.py checks they agree)."""
    import dataclasses

    from training import experiments

    experiment = as_run(experiment, smoke_test)
    recipe = dataclasses.replace(experiment.recipe, seed=seed)
    if smoke_test and SMOKE_STEPS < recipe.steps:
        recipe = dataclasses.replace(recipe, steps=SMOKE_STEPS, checkpoint_every=SMOKE_STEPS)
    experiment = dataclasses.replace(experiment, recipe=recipe)
    key = experiments.evaluation_key(experiment, SMOKE_EVAL_IMAGES if smoke_test else None)
    return experiments.workdir(experiment, seed, data_dir) / f"metrics-{key}.json"


def check_inputs(fidelity: str, pairs, seeds, data_dir=None, smoke_test: bool = False):
    """The one-line input errors a run meets first (too few seeds, a missing dataset folder),
    raised before any model is checked or trained."""
    from training import experiments

    if fidelity == "proxy" and len(seeds) < MIN_PROXY_SEEDS and not smoke_test:
        raise ReproductionError(f"proxy results are a mean and std over at least {MIN_PROXY_SEEDS} seeds; "
                                f"got {len(seeds)}")
    try:
        for _, experiment in pairs:
            if not experiment.data.is_proxy:
                experiments._dataset_dir(data_dir, experiment.data.name)
    except experiments.ExperimentError as error:
        raise ReproductionError(str(error)) from None


_REFUSALS: dict[str, str | None] = {}  # model spec -> why it cannot train here (None: it can)


def refuse_untrainable(spec: TableSpec, pairs, seeds, data_dir=None, smoke_test: bool = False):
    """A one-line error, before anything trains, when a model that would train here meets a
    known library bug (runtime/known_problems.py); seeds already trained are read, not trained,
    so they need no check.  Each model is built once per process, and only where a bug can strike."""
    from runtime import known_problems
    from training import experiments

    if not known_problems.onednn_bug_can_strike():
        return
    for row, experiment in pairs:
        if all(metrics_file(experiment, seed, data_dir, smoke_test).exists() for seed in seeds):
            continue
        model_spec = experiments.model_spec(experiment, num_classes=2)
        key = repr(model_spec)
        if key not in _REFUSALS:
            _REFUSALS[key] = known_problems.training_refusal(model_spec.build(tuple(experiment.input_size)))
        if _REFUSALS[key]:
            raise ReproductionError(f"table {spec.table}, row {row}: {_REFUSALS[key]}")


def preflight(spec: TableSpec, fidelity: str, seeds, data_dir=None, smoke_test: bool = False,
              proxy_scale: str = "small", rows=None) -> tuple:
    """Every one-line error a table's run can be refused with, in the order a user meets them
    (no such experiments or rows, input errors, a library bug), before anything trains; returns
    the (row, Experiment) pairs to run."""
    pairs = experiments_of(spec, fidelity, proxy_scale, rows)
    check_inputs(fidelity, pairs, seeds, data_dir, smoke_test)
    refuse_untrainable(spec, pairs, seeds, data_dir, smoke_test)
    return pairs


def run_experiments(spec: TableSpec, fidelity: str, seeds: tuple[int, ...], data_dir=None,
                    progress: bool = True, strategy: str = "default", precision: str = "auto",
                    smoke_test: bool = False, proxy_scale: str = "small", rows=None) -> dict[str, list[dict]]:
    """{row: [result per seed]}; a smoke test caps every run at 2 steps of batch 2."""
    import dataclasses

    from tqdm import tqdm

    from data.coco_panoptic import DatasetError
    from training import experiments
    from training.recipe import TrainingError

    pairs = experiments_of(spec, fidelity, proxy_scale, rows)
    check_inputs(fidelity, pairs, seeds, data_dir, smoke_test)
    results: dict[str, list[dict]] = {}
    total = len(pairs) * len(seeds)
    bar = tqdm(total=total, desc=f"table {spec.table} {fidelity}", unit="run", file=sys.stderr,
               disable=True if not progress else None)
    # tqdm draws on terminals only; a run logged to a file (nohup, CI) gets a line per run
    # instead, so an hour of training is not an hour of silence.
    lines = progress and bar.disable
    done = 0
    try:
        for row, experiment in pairs:
            experiment = as_run(experiment, smoke_test)
            for seed in seeds:
                bar.set_postfix_str(f"{row} seed {seed}")
                started = time.monotonic()
                result = experiments.run(experiment, seed, data_dir=data_dir, progress=progress,
                                         strategy=strategy, precision=precision,
                                         max_steps=SMOKE_STEPS if smoke_test else None,
                                         max_eval=SMOKE_EVAL_IMAGES if smoke_test else None)
                # Which training this is: rows that train the same model share one (Tab. 7's
                # spans 5, 9, 17 at the small scale), and a table's time counts it once.
                trained_seed = dataclasses.replace(experiment, recipe=dataclasses.replace(experiment.recipe, seed=seed))
                result = {**result, "run": experiments.workdir(trained_seed, seed, data_dir).parent.name}
                results.setdefault(row, []).append(result)
                done += 1
                bar.update()
                if lines:
                    print(f"table {spec.table} {fidelity}: run {done}/{total} done ({row}, seed {seed}, "
                          f"{time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
    except (experiments.ExperimentError, DatasetError, TrainingError) as error:
        raise ReproductionError(str(error)) from None
    finally:
        bar.close()
    return results


def _trend(cells: pd.DataFrame) -> tuple[dict[str, list[str]], float | None]:
    """Per row, its pairs whose proxy order differs from the paper's; Kendall's tau."""
    from scipy.stats import kendalltau

    disagreements: dict[str, list[str]] = {r: [] for r in cells["row"]}
    rows = cells.set_index("row")
    for a, b in combinations(rows.index, 2):
        paper = float(rows.at[a, "reported"]) - float(rows.at[b, "reported"])
        proxy = rows.at[a, "mean"] - rows.at[b, "mean"]
        if paper == 0 or (proxy != 0 and (paper > 0) == (proxy > 0)):
            continue  # the paper ties them, or the proxy orders them as the paper does (a tie does not)
        noise = "within seed noise" if abs(proxy) <= rows.at[a, "std"] + rows.at[b, "std"] else "beyond seed noise"
        for this, other, sign in ((a, b, 1), (b, a, -1)):
            disagreements[this].append(f"vs {other}: paper {sign * paper:+.1f}, proxy {sign * proxy:+.2f} ({noise})")
    tau = None
    if len(rows) >= 2:
        tau = float(kendalltau(rows["reported"].astype(float), rows["mean"]).statistic)
        tau = None if tau != tau else tau  # NaN when either side has no spread
    return disagreements, tau


def _cells(spec: TableSpec, by_row: dict) -> list[dict]:
    """The paper's cells, then the measured-only ones: a metric at another test resolution
    (the scale stress test, Figs. 4/10, which the paper draws without printing numbers)."""
    reported = runner.load_reported(spec.table)
    cells = [dict(r) for _, r in reported.iterrows()]
    for row, experiment in by_row.items():
        units = {c["metric"]: c["unit"] for c in cells if c["row"] == row}
        for ratio in experiment.test_ratios:
            cells += [{"row": row, "metric": f"{metric}@{ratio:g}", "unit": units.get(metric, "%"), "value": ""}
                      for metric in experiment.metrics if metric in units]
    return cells


def build_trained_table(spec: TableSpec, fidelity: str, results: dict[str, list[dict]],
                        proxy_scale: str = "small") -> tuple[pd.DataFrame, dict]:
    """Long-form table of the trained metrics, and per metric the trend summary."""
    from training.experiments import summarize

    by_row = dict(experiments_of(spec, fidelity, proxy_scale))
    lines = []
    for cell in _cells(spec, by_row):
        experiment = by_row.get(cell["row"])
        if experiment is None or cell["metric"].split("@")[0] not in experiment.metrics:
            continue
        runs = results.get(cell["row"], [])
        values = [r["metrics"][cell["metric"]] for r in runs if r["metrics"].get(cell["metric"]) is not None]
        line = {"table": spec.table, "row": cell["row"], "metric": cell["metric"], "unit": cell["unit"],
                "reported": cell["value"], "fidelity": fidelity, "delta": "", "rel_delta": "",
                "seeds": ",".join(str(r["seed"]) for r in runs),
                "values": ";".join("" if r["metrics"].get(cell["metric"]) is None
                                   else f"{r['metrics'][cell['metric']]:.4f}" for r in runs)}
        if not runs:
            line.update(measured="", std="", status="not_measured",
                        note="not run yet (trained with --rows: the other rows of this table)")
        elif not values:
            line.update(measured="", std="", status="not_measured", note="no value (every seed gave none)")
        else:
            mean, std = summarize(values)
            line.update(measured=f"{mean:.4f}", std=f"{std:.4f}", mean=mean, std_value=std,
                        note=f"{fidelity}: {experiment.describe()}; mean ± std over {len(values)} seeds")
            if "@" in cell["metric"]:
                line["status"] = "measured_only"
                line["note"] += (f"; evaluated at {cell['metric'].split('@')[1]}x the training resolution "
                                 "(scale stress test, Figs. 4/10: the paper draws it, prints no number)")
            elif not cell["value"]:
                line["status"] = "measured_only"
                line["note"] += "; the paper prints no value to compare with"
            elif fidelity == "full":
                line["delta"] = f"{mean - float(cell['value']):+.4f}"
                line["status"] = "match" if runner.rounds_to(mean, cell["value"]) else "off"
            else:
                line["status"] = TREND_PENDING
        lines.append(line)
    df = pd.DataFrame(lines, columns=COLUMNS + ["mean", "std_value"])
    trends = {}
    for metric, group in df[df["status"] == TREND_PENDING].groupby("metric"):
        cells = group.assign(std=group["std_value"]).loc[:, ["row", "reported", "mean", "std"]]
        disagreements, tau = _trend(cells)
        trends[metric] = {"kendall_tau": tau, "rows": len(cells),
                          "disagreeing_pairs": sum(map(len, disagreements.values())) // 2}
        if len(group) < 2:
            df.loc[group.index, "status"] = "no_trend"
            df.loc[group.index, "note"] += "; the only row measured: no order to compare with the paper's"
            continue
        for index, r in group.iterrows():
            wrong = disagreements[r["row"]]
            df.at[index, "status"] = "trend_disagrees" if wrong else "trend_agrees"
            if wrong:
                df.at[index, "note"] += "; order differs from the paper: " + "; ".join(wrong)
    return df.reindex(columns=COLUMNS).fillna(""), trends


def to_markdown(df: pd.DataFrame, spec: TableSpec, fidelity: str, trends: dict, seeds) -> str:
    lines = [f"# Table {spec.table}: {spec.title} ({fidelity} fidelity)", "",
             f"Measured = mean ± std over seeds {', '.join(map(str, seeds))} of this suite's training and "
             "evaluation; reported = the paper's printed value. Generated by "
             f"`python run_all.py --tables {spec.table} --fidelity {fidelity}`; do not edit.", ""]
    if fidelity == "proxy":
        lines.append("Proxy numbers come from other data at a smaller scale: compare them with the paper "
                     "as trends (the order of rows), not as values.")
        for metric, t in trends.items():
            tau = "n/a" if t["kendall_tau"] is None else f"{t['kendall_tau']:+.2f}"
            lines.append(f"- {metric}: Kendall tau with the paper {tau} over {t['rows']} rows; "
                         f"{t['disagreeing_pairs']} pair(s) ordered unlike the paper")
        lines.append("")
    lines += ["| row | metric | reported | measured | std | seeds | values | status | note |",
              "|---|---|---|---|---|---|---|---|---|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(str(r[c]).replace("|", "\\|") for c in
                                        ("row", "metric", "reported", "measured", "std", "seeds", "values",
                                         "status", "note"))
                     + " |")
    return "\n".join(lines) + "\n"


def seed_values(df: pd.DataFrame) -> dict[str, dict[str, list[float | None]]]:
    """{row: {metric: [value per seed]}} of a trained table, for provenance and comparison."""
    out: dict[str, dict[str, list]] = {}
    for _, r in df.iterrows():
        out.setdefault(r["row"], {})[r["metric"]] = [float(v) if v else None for v in str(r["values"]).split(";")]
    return out


def compare_runs(previous: dict, current: dict) -> list[dict]:
    """Each cell's mean now against a stored run's: within seed noise when the difference is at
    most twice its standard error, sqrt(s1^2/n1 + s2^2/n2) (about a 95 % band)."""
    from training.experiments import summarize

    rows = []
    for row, metrics in current.items():
        for metric, values in metrics.items():
            old = [v for v in previous.get(row, {}).get(metric, []) if v is not None]
            new = [v for v in values if v is not None]
            if len(old) < 2 or len(new) < 2:
                continue
            (m1, s1), (m2, s2) = summarize(old), summarize(new)
            bound = 2 * (s1 ** 2 / len(old) + s2 ** 2 / len(new)) ** 0.5
            rows.append({"row": row, "metric": metric, "previous_mean": round(m1, 4), "mean": round(m2, 4),
                         "difference": round(m2 - m1, 4), "noise_bound": round(bound, 4),
                         "within_seed_noise": bool(abs(m2 - m1) <= bound)})
    return rows


def distinct_runs(runs: list[dict]) -> list[dict]:
    """One record per training: rows that train the same model share a run (its "run" id, the
    name of its cache folder, which is keyed by what is trained, seed included); records older
    than that id count as their own run."""
    seen, distinct = set(), []
    for r in runs:
        key = r.get("run") or id(r)
        if key not in seen:
            seen.add(key)
            distinct.append(r)
    return distinct


def run_trained_table(spec: TableSpec, fidelity: str, seeds: tuple[int, ...], data_dir=None,
                      progress: bool = True, strategy: str = "default", precision: str = "auto",
                      smoke_test: bool = False, proxy_scale: str = "small", rows=None) -> pd.DataFrame:
    """Run, compare and (unless a smoke test) write one table at a training fidelity."""
    from runtime import machine

    preflight(spec, fidelity, seeds, data_dir, smoke_test, proxy_scale, rows)
    results = run_experiments(spec, fidelity, seeds, data_dir, progress, strategy, precision, smoke_test,
                              proxy_scale, rows)
    df, trends = build_trained_table(spec, fidelity, results, proxy_scale)
    if smoke_test:
        return df  # capped runs are checks of the code path, never results: nothing is written
    stem = output_stem(spec, fidelity)
    provenance_path = runner.TABLES_DIR / f"{stem}.provenance.json"
    previous = runner.load_provenance(provenance_path)
    record = runner.provenance(spec, fidelity, seeds, config_hash=fingerprint(spec), with_device=True)
    values = seed_values(df)
    runs = [r for row_runs in results.values() for r in row_runs]
    record.update(
        trends=trends, strategy=strategy, precision=precision, values=values,
        experiments={row: e.describe() for row, e in experiments_of(spec, fidelity, proxy_scale)},
        proxy_scale=proxy_scale if fidelity == "proxy" else None,
        # Training loss against step, per seed: did it flatten before the comparison? (report)
        curves={row: {str(r["seed"]): r.get("curve", []) for r in row_runs} for row, row_runs in results.items()},
        # Where and how long each seed trained (cached seeds keep the machine they ran on).
        seed_runs={row: [{"seed": r["seed"], "run": r.get("run"), "seconds": r.get("seconds"),
                          "train_seconds": r.get("train_seconds"), "machine": machine.summary(r.get("machine"))}
                         for r in row_runs]
                   for row, row_runs in results.items()},
        # Each row's trained model as the proxy rule builds it (the frontier claims' costs).
        model_counts={row: row_runs[0]["model"] for row, row_runs in results.items() if row_runs[0].get("model")},
        training_seconds=round(sum(r.get("seconds") or 0 for r in distinct_runs(runs)), 1))
    if previous and previous.get("config_hash") == record["config_hash"] and previous.get("values") \
            and previous.get("values") != values:
        comparison = compare_runs(previous["values"], values)
        record["previous_run"] = {"machine": machine.summary(previous.get("machine")), "date": previous.get("date"),
                                  "values": previous["values"], "comparison": comparison}
        within = sum(c["within_seed_noise"] for c in comparison)
        print(f"table {spec.table}: re-run of a stored result ({machine.summary(previous.get('machine'))}); "
              f"{within} of {len(comparison)} cells agree with it within seed noise (provenance: previous_run)",
              file=sys.stderr)
    runner.write_atomic(runner.TABLES_DIR / f"{stem}.csv", df.to_csv(index=False))
    runner.write_atomic(runner.TABLES_DIR / f"{stem}.md", to_markdown(df, spec, fidelity, trends, seeds))
    runner.write_atomic(provenance_path, json.dumps(record, indent=1) + "\n")
    return df
