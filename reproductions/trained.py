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

A table is written when all its runs are done, which on 2 CPU cores can be hours away.  Until
then each seed's result, as it finishes, goes to tables/table<N>.<fidelity>.pending.json in the
provenance's per-seed form, so it can be committed and read back on a new machine (issue #25:
"commit per-seed results as they finish"); writing the table takes its seeds out of that file.
"""

from __future__ import annotations

import contextlib
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
SMOKE_SHRINK = 16  # full panoptic smoke tests: crops and evaluation input 1/16 of the recipe's per side
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
    """What a trained table is declared as: its experiments (with the model spec each builds)
    and the paper's numbers.  The report marks a table stale when it differs.  Not the source
    text: whether the code still computes a stored run's numbers is its fingerprint's question
    (training/identity.py), answered when the table runs."""
    import hashlib

    from training import experiments

    digest = hashlib.sha256(repr((spec.table, spec.title, spec.proxy, spec.full)).encode())
    for _, experiment in spec.proxy + spec.full:
        digest.update(repr(experiments.model_spec(experiment, num_classes=0)).encode())
    path = runner.REPORTED_DIR / f"table{spec.table}.csv"
    if path.exists():
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def initialised_from(spec: TableSpec, weights: str) -> TableSpec:
    """The table with every full experiment's backbone started from ImageNet `weights`."""
    import dataclasses

    return dataclasses.replace(spec, full=tuple(
        (row, dataclasses.replace(e, recipe=dataclasses.replace(e.recipe, init_from=weights))) for row, e in spec.full))


def output_stem(spec: TableSpec, fidelity: str) -> str:
    return f"table{spec.table}.{fidelity}"


def as_run(experiment, smoke_test: bool):
    """The experiment as it is run: a smoke test trains batches of 2 without warm-up.  At full
    fidelity a panoptic smoke test also shrinks the crop and the evaluation input SMOKE_SHRINK
    times per side (Cityscapes' 1025 x 2049 to 65 x 129: the path, not the paper's sizes, on any
    machine), scales the images into them, and takes the targets' and post-processing's pixel
    settings from the proxy's rule at that size (training/experiments.py proxy_pixel_settings)."""
    import dataclasses

    from training import experiments

    if not smoke_test:
        return experiment
    recipe = dataclasses.replace(experiment.recipe, batch_size=2, warmup_steps=0)
    if experiment.data.task != "panoptic" or experiment.data.is_proxy:
        return dataclasses.replace(experiment, recipe=recipe)
    crop, size = (tuple((n - 1) // SMOKE_SHRINK + 1 for n in s) for s in (recipe.crop_size, experiment.input_size))
    pixels = experiments.proxy_pixel_settings(crop)
    recipe = dataclasses.replace(recipe, crop_size=crop, center_sigma=pixels.center_sigma,
                                 small_instance_area=pixels.small_instance_area)
    pixels = experiments.proxy_pixel_settings(size)
    return dataclasses.replace(experiment, recipe=recipe, input_size=size, stuff_area=pixels.stuff_area,
                               nms_kernel=pixels.nms_kernel,
                               validate_every=SMOKE_STEPS if experiment.validate_every else 0,  # once, at its end
                               eval_scale=1 / SMOKE_SHRINK if experiment.eval_fit == "pad" else 1.0)


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


def refuse_untrainable(spec: TableSpec, steps: list[dict]):
    """A one-line error, before anything trains, when a model that would train here meets a
    known library bug (runtime/known_problems.py); seeds whose results are at hand (cached or
    committed) are read, not trained, so they need no check.  Each model is built once per
    process, and only where a bug can strike."""
    from runtime import known_problems
    from training import experiments

    if not known_problems.onednn_bug_can_strike():
        return
    for step in steps:
        if step["source"] != "train":
            continue
        model_spec = experiments.model_spec(step["experiment"], num_classes=2)
        key = repr(model_spec)
        if key not in _REFUSALS:
            _REFUSALS[key] = known_problems.training_refusal(model_spec.build(tuple(step["experiment"].input_size)))
        if _REFUSALS[key]:
            raise ReproductionError(f"table {spec.table}, row {step['row']}: {_REFUSALS[key]}")


def preflight(spec: TableSpec, fidelity: str, seeds, data_dir=None, smoke_test: bool = False,
              proxy_scale: str = "small", rows=None, retrain: bool = False) -> tuple:
    """Every one-line error a table's run can be refused with, in the order a user meets them
    (no such experiments or rows, input errors, a library bug), before anything trains; returns
    the (row, Experiment) pairs to run."""
    from data.coco_panoptic import DatasetError
    from training import experiments

    pairs = experiments_of(spec, fidelity, proxy_scale, rows)
    check_inputs(fidelity, pairs, seeds, data_dir, smoke_test)
    try:
        steps = plan(spec, fidelity, pairs, seeds, data_dir, smoke_test, retrain)
    except (experiments.ExperimentError, DatasetError) as error:
        raise ReproductionError(str(error)) from None
    refuse_untrainable(spec, steps)
    return pairs


def committed_results(spec: TableSpec, fidelity: str) -> dict[tuple[str, int, str], dict]:
    """The per-seed results a table's stored provenance holds (the committed tables/, and the
    output folder's when it is another), as results: {(row, seed, run id): result}.  Only
    records with their run id, metrics and fingerprint count."""
    from training import experiments

    stem = output_stem(spec, fidelity)
    found: dict[tuple[str, int, str], dict] = {}
    for folder in dict.fromkeys([runner.ROOT / "tables", runner.TABLES_DIR]):
        for row, runs in (runner.load_provenance(folder / f"{stem}.pending.json") or {}).items():
            for run in runs if isinstance(runs, list) else []:
                if isinstance(run, dict) and run.get("run") and run.get("identity"):
                    result = {**run, "committed": True}
                    if experiments.valid_result(result):
                        found[row, result["seed"], run["run"]] = result
        record = runner.load_provenance(folder / f"{stem}.provenance.json") or {}
        curves = record.get("curves") or {}
        for row, runs in (record.get("seed_runs") or {}).items():
            for run in runs if isinstance(runs, list) else []:
                if not isinstance(run, dict) or not run.get("run") or not run.get("identity"):
                    continue
                result = {"metrics": run.get("metrics"), "seed": run.get("seed"), "run": run["run"],
                          "seconds": run.get("seconds"), "train_seconds": run.get("train_seconds"),
                          "machine": run.get("machine"), "identity": run["identity"],
                          "curve": (curves.get(row) or {}).get(str(run.get("seed")), []),
                          "loss_components": ((record.get("loss_curves") or {}).get(row) or {}).get(
                              str(run.get("seed")), []),
                          "validation": ((record.get("validation_curves") or {}).get(row) or {}).get(
                              str(run.get("seed")), []),
                          "model": (record.get("model_counts") or {}).get(row), "committed": True,
                          **({"shared_from": run["shared_from"]} if run.get("shared_from") else {})}
                if experiments.valid_result(result):
                    found[row, result["seed"], run["run"]] = result
    return found


def shared_results(spec: TableSpec, fidelity: str, runs: set[str], data_dir=None) -> dict[tuple[str, int, str], dict]:
    """Seeds of the trainings `runs` that other tables' stored provenance holds, with an evaluation
    that covers this table's: {(run id, seed, evaluation key): result}.  Rows of different tables
    that train the same model by the same recipe share one run (training.experiments.workdir), so
    on a new machine, whose cache is empty, a table reads them from the table that ran them
    instead of training them again (Tab. 4's proxy is Tab. 2's trainings; Tab. 2's S is Tab. 6's).
    A record counts only when its run id is the one its own table's declared row trains for that
    seed today, and its evaluation is known: its row's.  A run also evaluated at other test
    resolutions (the scale stress test's PQ@ratio cells) covers the evaluation without them: the
    other metrics are the same computation (training.experiments._run_panoptic)."""
    import dataclasses
    import importlib

    from reproductions import proxies
    from training import experiments

    scales = tuple(proxies.SCALES) if fidelity == "proxy" else ("small",)
    found: dict[tuple[str, int, str], dict] = {}
    for module in runner.TABLE_MODULES.values():
        other = importlib.import_module(module).SPEC
        if other.table == spec.table:
            continue
        records = {key: r for key, r in committed_results(other, fidelity).items() if key[2] in runs}
        for (row, seed, run), result in records.items():
            for scale in scales:
                experiment = dict(declared(other, fidelity, scale)).get(row)
                if experiment is None or metrics_file(experiment, seed, data_dir).parent.parent.name != run:
                    continue
                experiment = as_run(experiment, False)
                # The table that trained it: a seed the other table itself read keeps its origin.
                origin = int(result.get("shared_from") or other.table)
                found[run, seed, experiments.evaluation_key(experiment, None)] = {**result, "shared_from": origin}
                if experiment.test_ratios:
                    plain = dataclasses.replace(experiment, test_ratios=())
                    metrics = {k: v for k, v in result["metrics"].items() if "@" not in k}
                    found.setdefault((run, seed, experiments.evaluation_key(plain, None)),
                                     {**result, "metrics": metrics, "shared_from": origin})
    return found


def plan(spec: TableSpec, fidelity: str, pairs, seeds, data_dir=None, smoke_test: bool = False,
         retrain: bool = False) -> list[dict]:
    """For every (row, seed), where its result comes from: "cache" (a finished run under
    .cache/experiments/), "committed" (the table's stored provenance, or another table's
    (`shared_results`), for the same run id and a fingerprint today's code reproduces) or
    "train"; with the result when it is at hand."""
    from training import experiments

    reading = not smoke_test and not retrain
    committed = committed_results(spec, fidelity) if reading else {}
    # Where each seed's metrics would be (its run id is the folder above): looked up once.
    files = {(row, seed): metrics_file(e, seed, data_dir) for row, e in pairs for seed in seeds} if reading else {}
    shared = shared_results(spec, fidelity, {f.parent.parent.name for f in files.values()}, data_dir) if reading else {}
    steps = []
    for row, experiment in pairs:
        for seed in seeds:
            step = {"row": row, "experiment": as_run(experiment, smoke_test), "seed": seed, "source": "train"}
            if reading:
                path = files[row, seed]
                run = path.parent.parent.name
                cached = experiments.read_result(path) if path.exists() else None
                trained_seed = _with_seed(experiment, seed)
                own = committed.get((row, seed, run))
                elsewhere = shared.get((run, seed, experiments.evaluation_key(step["experiment"], None)))
                stored = own or elsewhere
                if cached and not experiments.stale_reason(cached.get("identity"), trained_seed):
                    step.update(source="cache", run=run)
                elif stored and not experiments.stale_reason(stored["identity"], trained_seed):
                    from training import identity

                    # Verified under today's source: recorded so, and the next run computes nothing.
                    result = {**stored, "identity": {**stored["identity"], "source": identity.source_hash()}}
                    step.update(source="committed", result=result, run=run)
                # Whose training this is, so that its time is counted once (trained_here): the
                # table's own record says (it names the table it read the seed from, if any);
                # a seed it holds no record of but another table does is that table's.
                origin = (stored or {}).get("shared_from") if step["source"] != "train" else None
                if origin is not None and int(origin) != spec.table:
                    step["shared_from"] = int(origin)
            steps.append(step)
    return steps


def _with_seed(experiment, seed: int):
    import dataclasses

    return dataclasses.replace(experiment, recipe=dataclasses.replace(experiment.recipe, seed=seed))


def estimate_seconds(spec: TableSpec, fidelity: str, steps: list[dict]) -> float | None:
    """About how long the runs to train take: each row's median seconds per run, from its seeds
    finished under the configuration being run (the pending file) when it has some, else from
    the written table times the median ratio of the two over the rows that have both (a
    re-designed table's runs can take twice its written ones); a row with neither takes the
    median of all.  None when nothing is timed."""
    import statistics

    def times(seed_runs) -> dict[str, float]:
        return {row: statistics.median(ts) for row, runs in seed_runs.items() if isinstance(runs, list)
                if (ts := [r["seconds"] for r in runs if isinstance(r, dict) and r.get("seconds")])}

    stem = output_stem(spec, fidelity)
    record = runner.load_provenance(runner.ROOT / "tables" / f"{stem}.provenance.json") or {}
    written, today = times(record.get("seed_runs") or {}), times(
        runner.load_provenance(runner.ROOT / "tables" / f"{stem}.pending.json") or {})
    pace = statistics.median([today[row] / written[row] for row in today.keys() & written.keys()] or [1.0])
    known = {**{row: t * pace for row, t in written.items()}, **today}
    if not known:
        return None
    every = statistics.median(known.values())
    return sum(known.get(s["row"], every) for s in steps if s["source"] == "train")


def announce(spec: TableSpec, fidelity: str, steps: list[dict], smoke_test: bool) -> None:
    """One line before any training: where the results come from, and how long the rest takes."""
    if smoke_test:
        return
    count = {source: sum(s["source"] == source for s in steps) for source in ("committed", "cache", "train")}
    line = (f"table {spec.table} {fidelity}: {len(steps)} runs: {count['committed']} from the committed results, "
            f"{count['cache']} from the cache, {count['train']} to train")
    if count["train"]:
        seconds = estimate_seconds(spec, fidelity, steps)
        line += (f" (about {seconds / 60:.0f} min at the committed runs' pace)" if seconds
                 else " (no timed run to estimate from)")
    if count["committed"]:
        line += "; --retrain trains every run again"
    elif count["train"]:
        import keras

        record = runner.load_provenance(runner.ROOT / "tables" / f"{output_stem(spec, fidelity)}.provenance.json")
        trained_on = ((record or {}).get("machine") or {}).get("backend")
        if trained_on and trained_on != keras.backend.backend():
            line += f"; the committed results were trained under {trained_on}: --backend {trained_on} reads them"
    print(line, file=sys.stderr, flush=True)


def seed_run(result: dict) -> dict:
    """One seed's entry in a provenance's `seed_runs`: where and how long it trained, its metrics
    and the fingerprint that lets a later run read it instead of training it again."""
    from runtime import machine

    entry = {"seed": result["seed"], "run": result.get("run"), "seconds": result.get("seconds"),
             "train_seconds": result.get("train_seconds"), "machine": machine.summary(result.get("machine")),
             "metrics": result.get("metrics"), "identity": result.get("identity")}
    if result.get("shared_from"):  # trained for another table and read from it: its time is that table's
        entry["shared_from"] = result["shared_from"]
    return entry


def pending_path(spec: TableSpec, fidelity: str):
    return runner.TABLES_DIR / f"{output_stem(spec, fidelity)}.pending.json"


def keep_pending(spec: TableSpec, fidelity: str, row: str, result: dict) -> None:
    """Add one finished seed to the table's pending file (replacing an older entry of the same
    seed and run), with its curves, so that committing the file keeps it."""
    from runtime.files import write_atomic

    path = pending_path(spec, fidelity)
    pending = runner.load_provenance(path) or {}
    entry = {**seed_run(result), "curve": result.get("curve") or [],
             "loss_components": result.get("loss_components") or [],
             "validation": result.get("validation") or [], "model": result.get("model")}
    others = [r for r in pending.get(row, []) if (r.get("seed"), r.get("run")) != (entry["seed"], entry["run"])]
    pending[row] = sorted(others + [entry], key=lambda r: r["seed"])
    write_atomic(path, json.dumps(pending, indent=1) + "\n")


def drop_pending(spec: TableSpec, fidelity: str, seed_runs: dict[str, list[dict]]) -> None:
    """Take the seeds a written table now holds out of its pending file (an entry of another run
    id, an older configuration's, is superseded too); remove the file when empty."""
    from runtime.files import write_atomic

    path = pending_path(spec, fidelity)
    pending = runner.load_provenance(path)
    if pending is None:
        return
    written = {(row, r["seed"]) for row, runs in seed_runs.items() for r in runs}
    left = {row: kept for row, runs in pending.items()
            if (kept := [r for r in runs if (row, r.get("seed")) not in written])}
    if not left:
        path.unlink()
    elif left != pending:
        write_atomic(path, json.dumps(left, indent=1) + "\n")


def run_experiments(spec: TableSpec, fidelity: str, seeds: tuple[int, ...], data_dir=None,
                    progress: bool = True, strategy: str = "default", precision: str = "auto",
                    smoke_test: bool = False, proxy_scale: str = "small", rows=None,
                    retrain: bool = False, resume_changed: bool = False) -> dict[str, list[dict]]:
    """{row: [result per seed]}; a smoke test caps every run at 2 steps of batch 2 and trains
    in a temporary cache that it removes."""
    import contextlib

    from tqdm import tqdm

    from data.coco_panoptic import DatasetError
    from training import experiments
    from training.recipe import TrainingError

    from training.engine import is_chief

    pairs = experiments_of(spec, fidelity, proxy_scale, rows)
    check_inputs(fidelity, pairs, seeds, data_dir, smoke_test)
    results: dict[str, list[dict]] = {}
    # Seeds that tables/ does not hold yet are kept as they finish (a smoke test keeps nothing).
    keep = not smoke_test and is_chief(strategy)
    held = set(committed_results(spec, fidelity)) if keep else set()
    with (temporary_cache() if smoke_test else contextlib.nullcontext()):
        try:
            steps = plan(spec, fidelity, pairs, seeds, data_dir, smoke_test, retrain)
        except (experiments.ExperimentError, DatasetError) as error:
            raise ReproductionError(str(error)) from None
        if progress:
            announce(spec, fidelity, steps, smoke_test)
        total = len(steps)
        bar = tqdm(total=total, desc=f"table {spec.table} {fidelity}", unit="run", file=sys.stderr,
                   disable=True if not progress else None)
        # tqdm draws on terminals only; a run logged to a file (nohup, CI) gets a line per run
        # instead, so an hour of training is not an hour of silence.
        lines = progress and bar.disable
        try:
            for done, step in enumerate(steps, 1):
                row, experiment, seed = step["row"], step["experiment"], step["seed"]
                bar.set_postfix_str(f"{row} seed {seed}")
                started = time.monotonic()
                if step["source"] == "committed":
                    result = step["result"]
                else:
                    result = experiments.run(experiment, seed, data_dir=data_dir, progress=progress,
                                             strategy=strategy, precision=precision,
                                             max_steps=SMOKE_STEPS if smoke_test else None,
                                             max_eval=SMOKE_EVAL_IMAGES if smoke_test else None,
                                             fresh=retrain, resume_changed=resume_changed)
                # Which training this is: rows that train the same model share one (Tab. 7's
                # spans 5, 9, 17 at the small scale), and a table's time counts it once.
                result = {**result, "run": experiments.workdir(_with_seed(experiment, seed), seed, data_dir).parent.name}
                result.pop("shared_from", None)  # the plan decided whose training it is
                if step.get("shared_from"):
                    result["shared_from"] = step["shared_from"]
                results.setdefault(row, []).append(result)
                if keep and (step["source"] == "train" or (row, seed, result["run"]) not in held):
                    keep_pending(spec, fidelity, row, result)
                bar.update()
                if lines and step["source"] == "train":
                    print(f"table {spec.table} {fidelity}: run {done}/{total} done ({row}, seed {seed}, "
                          f"{time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
        except (experiments.ExperimentError, DatasetError, TrainingError) as error:
            raise ReproductionError(str(error)) from None
        finally:
            bar.close()
    return results


@contextlib.contextmanager
def temporary_cache():
    """The experiments' cache moved to a temporary folder, removed afterwards (the smoke test's
    checkpoints are checks of the code path, never kept)."""
    import shutil

    from runtime import files
    from training import experiments

    saved = experiments.CACHE_DIR
    # Beside the experiments' cache, named after this process: one left by a smoke test that was
    # killed (or ended by the Ctrl-C watcher) is removed by the next.
    files.remove_stale_staging(saved.parent, ".smoke-test-")
    experiments.CACHE_DIR = files.staging_folder(saved.parent, ".smoke-test-")
    try:
        yield
    finally:
        shutil.rmtree(experiments.CACHE_DIR, ignore_errors=True)
        experiments.CACHE_DIR = saved


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


PANOPTIC_PARTS = ("PQ_Th", "PQ_St")  # PQ over thing and over stuff classes (evaluation/panoptic_quality.py)


def _cells(spec: TableSpec, by_row: dict) -> list[dict]:
    """The paper's cells, then the measured-only ones: thing and stuff PQ where the paper
    prints only PQ, and a metric at another test resolution (the scale stress test, Figs.
    4/10, which the paper draws without printing numbers)."""
    reported = runner.load_reported(spec.table)
    cells = [dict(r) for _, r in reported.iterrows()]
    for row, experiment in by_row.items():
        units = {c["metric"]: c["unit"] for c in cells if c["row"] == row}
        if "PQ" in experiment.metrics:  # every panoptic run keeps thing and stuff PQ, printed or not
            cells += [{"row": row, "metric": metric, "unit": "%", "value": ""}
                      for metric in PANOPTIC_PARTS if metric not in units]
        for ratio in experiment.test_ratios:
            cells += [{"row": row, "metric": f"{metric}@{ratio:g}", "unit": units.get(metric, "%"), "value": ""}
                      for metric in experiment.metrics if metric in units]
    return cells


DESIGN_FILE = runner.TABLES_DIR / "proxy_design.json"   # written by reproductions/pilot.py


def declared_not_learnt(table: int) -> frozenset[str]:
    """The metrics the panoptic proxy's design declared not learnt (thing PQ, AP), before the
    runs, if it covers `table`: their proxy cells are described, never ordered against the paper."""
    design = read_design() or {}
    return frozenset(design.get("not_measurable", ())) if str(table) in design.get("tables", {}) else frozenset()


def read_design() -> dict | None:
    """The committed design (tables/proxy_design.json), or None before any pilot ran."""
    try:
        return json.loads(DESIGN_FILE.read_text())
    except FileNotFoundError:
        return None


def build_trained_table(spec: TableSpec, fidelity: str, results: dict[str, list[dict]],
                        proxy_scale: str = "small") -> tuple[pd.DataFrame, dict]:
    """Long-form table of the trained metrics, and per metric the trend summary."""
    from training.experiments import summarize

    by_row = dict(experiments_of(spec, fidelity, proxy_scale))
    not_learnt = declared_not_learnt(spec.table) if fidelity == "proxy" else frozenset()
    lines = []
    for cell in _cells(spec, by_row):
        experiment = by_row.get(cell["row"])
        base = cell["metric"].split("@")[0]
        if experiment is None or (base not in experiment.metrics and base not in PANOPTIC_PARTS):
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
            if cell["metric"] in not_learnt:
                line["status"] = "not_measurable"
                line["note"] += ("; not measurable: the pilot declared it not learnt by the proxy, before the runs "
                                 "(tables/proxy_design.md), so no order is compared with the paper's")
            elif "@" in cell["metric"]:
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


def cells_summary(df: pd.DataFrame, fidelity: str) -> str:
    """A table's measured cells as printed after a run: a line per row, each metric's mean ± std
    over its seeds and the paper's value (scale-stress cells, PQ@ratio, are left to the files)."""
    lines = []
    for row, cells in df[df["measured"] != ""].groupby("row", sort=False):
        cells = cells[~cells["metric"].str.contains("@")]
        parts = [f"{c['metric']} {float(c['measured']):.1f} ± {float(c['std'] or 0):.1f}"
                 + (f" (paper {c['reported']})" if c["reported"] else "") for _, c in cells.iterrows()]
        lines.append(f"  {row}: " + ", ".join(parts) + f"  [{fidelity}, seeds {cells['seeds'].iloc[0]}]")
    not_run = sorted(set(df.loc[df["seeds"] == "", "row"]))
    if not_run:
        lines.append(f"  not run yet: {', '.join(not_run)}")
    return "\n".join(lines)


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


def trained_here(runs: list[dict]) -> list[dict]:
    """The distinct trainings a table ran itself: not those it read from another table's
    committed results (`shared_results`), whose time that table already counts."""
    return [r for r in distinct_runs(runs) if not r.get("shared_from")]


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
                      smoke_test: bool = False, proxy_scale: str = "small", rows=None,
                      retrain: bool = False, resume_changed: bool = False) -> pd.DataFrame:
    """Run, compare and (unless a smoke test) write one table at a training fidelity: its
    csv, md and provenance as one set, and only when their content changed."""
    from runtime import machine
    from runtime.files import write_set

    preflight(spec, fidelity, seeds, data_dir, smoke_test, proxy_scale, rows, retrain)
    results = run_experiments(spec, fidelity, seeds, data_dir, progress, strategy, precision, smoke_test,
                              proxy_scale, rows, retrain, resume_changed)
    df, trends = build_trained_table(spec, fidelity, results, proxy_scale)
    if smoke_test:
        return df  # capped runs are checks of the code path, never results: nothing is written
    from training.engine import is_chief

    if not is_chief(strategy):
        return df  # of several processes (--strategy multi-worker), the chief writes the table
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
        # Each seed's metrics and fingerprint make it a committed result that a later run of the
        # same configuration reads instead of training (training/identity.py).
        seed_runs={row: [seed_run(r) for r in row_runs] for row, row_runs in results.items()},
        # Each row's trained model as the proxy rule builds it (the frontier claims' costs).
        model_counts={row: row_runs[0]["model"] for row, row_runs in results.items() if row_runs[0].get("model")},
        training_seconds=round(sum(r.get("seconds") or 0 for r in trained_here(runs)), 1))
    # Panoptic: the three losses apart ([step, semantic, center, offset]) and the metric as
    # training went on ([step, PQ, PQ_Th, PQ_St, mIoU] on the first validation scenes).
    for key, field_name in (("loss_curves", "loss_components"), ("validation_curves", "validation")):
        curves = {row: {str(r["seed"]): r[field_name] for r in row_runs if r.get(field_name)}
                  for row, row_runs in results.items()}
        if any(curves.values()):
            record[key] = curves
    if previous and previous.get("config_hash") == record["config_hash"] and previous.get("values") \
            and previous.get("values") != values:
        comparison = compare_runs(previous["values"], values)
        record["previous_run"] = {"machine": machine.summary(previous.get("machine")), "date": previous.get("date"),
                                  "values": previous["values"], "comparison": comparison}
        within = sum(c["within_seed_noise"] for c in comparison)
        print(f"table {spec.table}: re-run of a stored result ({machine.summary(previous.get('machine'))}); "
              f"{within} of {len(comparison)} cells agree with it within seed noise (provenance: previous_run)",
              file=sys.stderr)
    files = {runner.TABLES_DIR / f"{stem}.csv": df.to_csv(index=False),
             runner.TABLES_DIR / f"{stem}.md": to_markdown(df, spec, fidelity, trends, seeds)}
    unchanged = all(path.is_file() and path.read_text() == text for path, text in files.items()) and previous \
        and all(previous.get(k) == json.loads(json.dumps(record.get(k))) for k in SUBSTANTIVE)
    if not unchanged:  # re-reading the same results leaves the files, dates included, as they are
        write_set({**files, provenance_path: json.dumps(record, indent=1) + "\n"})
    drop_pending(spec, fidelity, record["seed_runs"])
    return df


# What a trained table's provenance says about its results (not when or where it was written).
SUBSTANTIVE = ("config_hash", "seeds", "values", "trends", "experiments", "curves", "loss_curves",
               "validation_curves", "seed_runs", "model_counts",
               "proxy_scale", "strategy", "precision")
