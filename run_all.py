"""Run the Axial-DeepLab reproduction suite.

    python run_all.py                          # every available table and figure, count fidelity
    python run_all.py --tables 1,9 --check     # two tables, then the CI comparison of counts
    python run_all.py --tables 1 --fidelity count
    python run_all.py --tables 1 --fidelity proxy              # small offline training runs, 3 seeds
    python run_all.py --tables 1 --fidelity full --data-dir /data [--strategy mirrored]
    python run_all.py --tables 1 --fidelity proxy --backend jax

Writes tables/table<N>.csv (long form: table,row,metric,unit,reported,measured,
fidelity,delta,rel_delta,status,note) and tables/table<N>.md, and with --figures
(or when no --tables is given) the figures under figures/.  Counts are cached
under .cache/counts/ and recomputed when the model code changes.  The proxy and full
fidelities write tables/table<N>.<fidelity>.csv/.md (reproductions/trained.py); their
runs resume from checkpoints under .cache/experiments/ and are cached when finished.

Arguments are checked before TensorFlow or JAX is loaded, so `--help` and bad input answer
at once; the libraries' start-up notices are kept off the terminal (runtime/backend.py).
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from pathlib import Path

from runtime import backend, processes
from runtime.cli import OneLineParser, UsageError, check_writable
from runtime.files import CACHE_ROOT
from training.recipe import PRECISIONS, STRATEGIES

FIDELITIES = ("count", "proxy", "full")
DEFAULT_SEEDS = (0, 1, 2)  # training.experiments.PROXY_SEEDS, without importing it
# Seeds reach keras.utils.set_random_seed, whose numpy.random.seed takes 0 .. 2**32 - 1.
MAX_SEED = 2**32 - 1
# reproductions.proxies.SCALES (names and default seeds), without importing it.
PROXY_SCALES = ("small", "large")
LARGE_SCALE_SEEDS = (0, 1, 2, 3, 4)
# One reproduction module per paper table.
TABLES = {n: f"reproductions.table{n}" for n in range(1, 10)}
# Figures: (module, tables whose results it plots).
FIGURES = {
    "Fig. 3": ("reproductions.figure3", (1, 9)),
    "Figs. 4/10 (scale stress, cost)": ("reproductions.scale_stress", ()),
    "Tab. 7 span ablation": ("reproductions.span_figure", (7,)),
    "M-Adds breakdown": ("reproductions.breakdown_figure", (6, 8)),
}
# Flags that only mean something when training; at count fidelity they are refused, not ignored.
TRAINING_FLAGS = ("seeds", "data_dir", "strategy", "precision", "smoke_test", "proxy_scale", "rows", "retrain",
                  "init_from", "resume_changed")


def parse_tables(text: str | None) -> list[int]:
    if text is None:
        return sorted(TABLES)
    chosen = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or not 1 <= int(part) <= 9:
            raise UsageError(f"unknown table {part!r}: the paper has tables 1-9")
        chosen.append(int(part))
    return sorted(set(chosen))


def parse_seeds(text: str | None) -> tuple[int, ...]:
    if text is None:
        return DEFAULT_SEEDS
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() for p in parts):
        raise UsageError(f"--seeds takes comma-separated non-negative integers, got {text!r}")
    seeds = [int(p) for p in parts]
    too_large = [s for s in seeds if s > MAX_SEED]
    if too_large:
        raise UsageError(f"--seeds: seed {too_large[0]} is too large; seeds are 0 to 2**32 - 1 = {MAX_SEED}")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise UsageError(f"--seeds lists seed {', '.join(map(str, repeated))} more than once: each seed is "
                         "one independent run")
    return tuple(seeds)


def make_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python run_all.py",
        description="Reproduce the tables and figures of Axial-DeepLab (ECCV 2020): measured "
                    "numbers next to the paper's, per cell, written to tables/ and figures/, and an "
                    "HTML report (report/index.html).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Fidelities: count = Params and M-Adds from the architecture (exact, seconds); "
               "proxy = small offline training runs on real pixels (Fashion-MNIST, the panoptic "
               "proxy), mean and std over seeds, compared with the paper as trends; full = the "
               "paper's datasets (--data-dir) and recipes. Tables without declared experiments "
               "at a training fidelity say so. Interrupted training runs resume where they stopped.",
    )
    parser.add_argument("--tables", metavar="N[,N...]",
                        help="paper tables to run, e.g. 1,9 (default: every available table)")
    parser.add_argument("--figures", action="store_true",
                        help="also draw the figures whose tables ran (default when --tables is absent)")
    parser.add_argument("--fidelity", choices=FIDELITIES, default="count",
                        help="count (default), proxy or full")
    parser.add_argument("--backend", choices=backend.BACKENDS, default=None,
                        help="Keras backend (default: $KERAS_BACKEND, else tensorflow); the JAX backend "
                             "runs without TensorFlow (e.g. on a GPU machine that has only JAX)")
    parser.add_argument("--data-dir", help="full fidelity: folder holding imagenet/, coco/, cityscapes/, "
                                           "mapillary/ (see README, 'Full fidelity')")
    parser.add_argument("--seeds", default=None, metavar="S[,S...]",
                        help="training seeds (default 0,1,2, or 0-4 at --proxy-scale large; a panoptic table's "
                             "small-scale proxy: the seeds its design gives, tables/proxy_design.md; proxy needs "
                             "at least 3; full and --smoke-test: 0)")
    parser.add_argument("--rows", metavar="ROW[,ROW...]", default=None,
                        help="training fidelities, one table: train only these of its declared rows (e.g. "
                             "resnet50,ps-attention); the table is written with the others marked not run, "
                             "and a later run without --rows completes it from the cache")
    parser.add_argument("--proxy-scale", choices=PROXY_SCALES, default=None,
                        help="proxy size: small (default; about 45 min per table on 2 CPU cores) or large "
                             "(4x the steps, scenes and validation images, 5 seeds: for a GPU machine, e.g. "
                             "with --backend jax); see reproductions/proxies.py")
    parser.add_argument("--strategy", choices=STRATEGIES, default=None,
                        help="tf.distribute strategy for training (default: one device; multi-worker "
                             "reads TF_CONFIG)")
    parser.add_argument("--tpu", metavar="NAME", default=None,
                        help="--strategy tpu under TensorFlow: the Cloud TPU to connect to (empty, the default: "
                             "$TPU_NAME, else the TPU VM's own)")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="auto (default): mixed_bfloat16 on TPU, mixed_float16 on tensor-core GPUs, "
                             "else float32")
    parser.add_argument("--smoke-test", action="store_true",
                        help="training fidelities: 2 steps of batch 2 per experiment (seed 0 unless --seeds), "
                             "evaluated on 8 images, to check the code path end to end; full panoptic runs "
                             "shrink crops and evaluation input 16x per side; prints the metrics and "
                             "writes nothing (it trains in a temporary folder that it removes)")
    parser.add_argument("--init-from", metavar="WEIGHTS", default=None,
                        help="full fidelity: start each trained model's backbone from these ImageNet weights, a "
                             "Keras .weights.h5 of the model's ImageNet classifier (the paper's initialisation, "
                             "Sec. 4; training/transfer.py); it prints what was loaded, skipped and newly "
                             "initialised, and stops if the file does not hold the backbone")
    parser.add_argument("--resume-changed", action="store_true",
                        help="full fidelity: resume a run whose checkpoints were written by code that computes "
                             "other numbers (without it such a run stops with a one-line error saying what "
                             "changed; the run's identity.json records the resume)")
    parser.add_argument("--retrain", action="store_true",
                        help="training fidelities: train every run again from scratch; without it, a run whose "
                             "result is committed in tables/ (same configuration, and a numerical fingerprint "
                             "today's code reproduces) or cached under .cache/ is read, not trained")
    parser.add_argument("--check", action="store_true",
                        help="CI comparison, writing nothing: exit non-zero if a count differs from the "
                             "golden counts, a cell is outside tolerance and not a recorded finding, or a "
                             "table on disk differs from what the code produces")
    parser.add_argument("--update-golden", action="store_true",
                        help="record the measured counts as reproductions/golden_counts.json "
                             "(on purpose, in the commit that changes a model)")
    parser.add_argument("--output-dir", metavar="DIR", default=None,
                        help="write tables/, figures/ and report/ under DIR instead of the repository")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def normalise_argv(argv: list[str]) -> list[str]:
    """`--seeds -1,0` would read as an unknown flag; pass it as `--seeds=-1,0` so the seed
    check can say what is wrong with it."""
    out = list(argv)
    for i, token in enumerate(out[:-1]):
        if token == "--seeds" and re.match(r"^-\d", out[i + 1]):
            out[i:i + 2] = [f"--seeds={out[i + 1]}"]
            break
    return out


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    """Parse and validate everything that needs no library; UsageError on bad input."""
    args = make_parser().parse_args(normalise_argv(argv))
    args.table_list = parse_tables(args.tables)
    if args.output_dir is not None and not args.output_dir.strip():
        raise UsageError("--output-dir is empty: name a folder (without --output-dir, outputs go to the "
                         "repository's tables/, figures/ and report/)")
    if args.fidelity == "count":
        given = [f"--{name.replace('_', '-')}" for name in TRAINING_FLAGS if getattr(args, name) not in (None, False)]
        if given:
            raise UsageError(f"{', '.join(given)} only applies to the training fidelities (--fidelity proxy "
                             "or full); count fidelity trains nothing")
    else:
        if args.check or args.update_golden:
            raise UsageError("--check and --update-golden compare counts: use --fidelity count")
        if args.figures:
            raise UsageError("--figures draws the count figures: use --fidelity count")
        if args.fidelity == "full" and not args.data_dir:
            raise UsageError("--fidelity full needs --data-dir (a folder holding imagenet/, coco/, "
                             "cityscapes/, mapillary/; see README)")
        if args.fidelity == "proxy" and args.data_dir:
            raise UsageError("--data-dir applies to --fidelity full; the proxy data are built in")
        if args.fidelity == "full" and args.proxy_scale:
            raise UsageError("--proxy-scale applies to --fidelity proxy; full runs the paper's recipes")
        if args.resume_changed and (args.fidelity != "full" or args.retrain):
            raise UsageError("--resume-changed resumes full runs (a proxy run trained by other code is trained "
                             "again), and contradicts --retrain")
        if args.init_from is not None and args.fidelity != "full":
            raise UsageError("--init-from applies to --fidelity full; the proxies train from their seeds")
        if args.init_from is not None and not os.path.isfile(args.init_from):
            raise UsageError(f"--init-from {args.init_from}: file not found")
    args.proxy_scale = args.proxy_scale or "small"
    args.row_list = tuple(r.strip() for r in args.rows.split(",")) if args.rows else None
    if args.row_list and len(args.table_list) != 1:
        raise UsageError("--rows names rows of one table: give exactly one --tables")
    args.seed_list = parse_seeds(args.seeds)
    if args.seeds is None and args.proxy_scale == "large":
        args.seed_list = LARGE_SCALE_SEEDS
    # A smoke test checks the code path, and a full run takes days of accelerators (the paper
    # reports one run per row): one seed unless --seeds says otherwise.
    if args.seeds is None and (args.smoke_test or args.fidelity == "full"):
        args.seed_list = (0,)
    if args.tpu is not None and (args.strategy != "tpu" or (args.backend or backend.default_backend()) == "jax"):
        raise UsageError("--tpu names the TPU of --strategy tpu under TensorFlow (JAX uses the TPU of the "
                         "machine it runs on)")
    args.strategy = args.strategy or "default"
    args.precision = args.precision or "auto"
    return args


def table_seeds(args, table: int) -> tuple[int, ...]:
    """A table's seeds: --seeds when given; else, for a panoptic table's small-scale proxy, the
    seeds of the committed design (reproductions/pilot.py, tables/proxy_design.json); else
    the default."""
    if args.seeds is None and args.fidelity == "proxy" and args.proxy_scale == "small" and not args.smoke_test:
        from reproductions import pilot

        try:
            return pilot.design_seeds(table) or args.seed_list
        except pilot.NoDesign as refusal:
            from reproductions import runner

            raise runner.ReproductionError(str(refusal)) from None
    return args.seed_list


def run_trained(args) -> int:
    """The proxy and full fidelities: every chosen table's declared experiments."""
    from reproductions import report, runner, trained
    from training import engine

    if args.tpu is not None:  # reaches the TPU resolver as TensorFlow's own TPU_NAME (training/engine.py)
        os.environ["TPU_NAME"] = args.tpu
    try:
        engine.start_processes(args.strategy)  # multi-worker: join the other processes before anything computes
    except engine.TrainingError as error:
        raise runner.ReproductionError(str(error)) from None
    specs = [importlib.import_module(TABLES[n]).SPEC for n in args.table_list]
    if args.tables is None:  # everything: the tables that declare experiments at this fidelity
        specs = [s for s in specs if trained.declared(s, args.fidelity)]
    if args.init_from:  # every full experiment chosen starts from these ImageNet weights
        specs = [trained.initialised_from(spec, os.path.abspath(args.init_from)) for spec in specs]
    for spec in specs:  # fail before any training
        trained.preflight(spec, args.fidelity, table_seeds(args, spec.table), args.data_dir, args.smoke_test,
                          args.proxy_scale, args.row_list, args.retrain)
    for spec in specs:
        df = trained.run_trained_table(spec, args.fidelity, table_seeds(args, spec.table), args.data_dir,
                                       not args.quiet, args.strategy, args.precision, args.smoke_test,
                                       args.proxy_scale, args.row_list, args.retrain, args.resume_changed)
        if args.smoke_test:
            print(f"table {spec.table} smoke test (2 steps of batch 2, 8 evaluation images: not results; "
                  "nothing written):")
            for _, r in df[df["seeds"] != ""].iterrows():  # the rows that ran (--rows picks some)
                print(f"  {r['row']} {r['metric']}: {r['measured']} (seeds {r['seeds']})")
            continue
        status = ", ".join(f"{k} {v}" for k, v in df["status"].value_counts().items())
        print(f"table {spec.table}: {runner.shown(runner.TABLES_DIR / trained.output_stem(spec, args.fidelity))}.csv "
              f"({status})")
        print(trained.cells_summary(df, args.fidelity))
    if not args.smoke_test and engine.is_chief(args.strategy):  # of several processes, the chief writes
        from reproductions import claims

        verdicts = claims.write()
        print(f"claims: {runner.shown(runner.TABLES_DIR / 'claims.csv')} ({claims.summary(verdicts)})")
        print(f"report: {runner.shown(report.write())}")
    return 0


def run_counts(args) -> int:
    """The count fidelity: every chosen table, the figures, the report; or the CI check."""
    from models import presets
    from reproductions import runner

    tables = args.table_list
    write = not args.check
    figures = write and (args.figures or args.tables is None)
    # Count every pass the run needs in one pool of workers before any table is written.
    passes = [(p.model, size) for n in tables
              for p in map(presets.get, importlib.import_module(TABLES[n]).SPEC.presets)
              for size in p.inference_runs()]
    if figures:
        passes += [job for module, needs in FIGURES.values() if all(t in tables for t in needs)
                   for job in getattr(importlib.import_module(module), "passes", list)()]
    runner.prefetch(passes, progress=not args.quiet)
    results, stale = {}, []
    for n in tables:
        spec = importlib.import_module(TABLES[n]).SPEC
        df, differing = runner.run_table(spec, args.fidelity, progress=not args.quiet, write=write)
        results[n], stale = df, stale + differing
        err = runner.mean_abs_rel_error(df, "M-Adds")
        status = ", ".join(f"{k} {v}" for k, v in df["status"].value_counts().items())
        print(f"table {n}: {runner.shown(runner.TABLES_DIR / f'table{n}.csv')} ({status}"
              + (f"; M-Adds mean |rel. error| {100 * err:.2f} %" if err is not None else "") + ")")
    if figures:
        for fig, (module, needs) in FIGURES.items():
            if all(t in results for t in needs):
                written = importlib.import_module(module).main(results)
                print(f"{fig}: " + ", ".join(runner.shown(p) for p in written))
    from reproductions import claims

    if write:
        from reproductions import report

        verdicts = claims.write()
        print(f"claims: {runner.shown(runner.TABLES_DIR / 'claims.csv')} ({claims.summary(verdicts)})")
        print(f"report: {runner.shown(report.write())}")
    else:
        stale += claims.stale()
    counts = {p: runner.measure_counts(p) for n in tables
              for p in importlib.import_module(TABLES[n]).SPEC.presets}
    if args.check:  # a difference from the golden counts is confirmed by counting again, not read from a cache
        golden = runner.load_golden()
        for name, c in counts.items():
            if name in golden and (golden[name]["params"], golden[name]["madds"]) != (c["params"], c["madds"]):
                counts[name] = runner.recount(name)
    if args.update_golden:
        runner.update_golden(counts)
        print(f"golden counts updated for {len(counts)} presets: {runner.shown(runner.GOLDEN_FILE)}")
    if args.check:
        failures, known = runner.check(results, counts)
        failures += [f"{path} differs from what the code produces: run `python run_all.py` and commit it"
                     for path in stale]
        for line in known:
            print(f"known finding: {line}")
        for line in failures:
            print(f"CHECK FAILED: {line}", file=sys.stderr)
        if failures:
            print(f"check: {len(failures)} failure(s)", file=sys.stderr)
            return 1
        print(f"check passed: {len(counts)} presets equal their golden counts; {len(known)} cells off the "
              "paper are recorded findings; the tables on disk are what the code produces")
    return 0


def check_folders(args) -> None:
    """Before any library loads or any work starts: the output folders this run writes (--output-dir,
    else $AXIAL_DEEPLAB_OUTPUT_DIR, else the repository) and the cache folder can be written;
    UsageError if not.  (--check and --smoke-test write no outputs.)"""
    if not (args.check or args.smoke_test):
        if args.output_dir is not None:
            where, output = "--output-dir", Path(args.output_dir)
        elif os.environ.get("AXIAL_DEEPLAB_OUTPUT_DIR"):
            where, output = "AXIAL_DEEPLAB_OUTPUT_DIR", Path(os.environ["AXIAL_DEEPLAB_OUTPUT_DIR"])
        else:
            where, output = "the output folder", Path(__file__).resolve().parent
        check_writable([output / "tables", output / "figures", output / "report"], where)
    check_writable([CACHE_ROOT], "the cache folder; AXIAL_DEEPLAB_CACHE_DIR moves it")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse_arguments(argv)
        check_folders(args)
        backend.choose(args.backend)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except backend.BackendError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except SystemExit as exit_:  # --help
        return int(exit_.code or 0)

    from data.coco_panoptic import DatasetError
    from reproductions import runner
    from runtime.files import WriteError

    try:
        if args.output_dir is not None:
            runner.use_output_dir(args.output_dir)
        return run_counts(args) if args.fidelity == "count" else run_trained(args)
    except (runner.ReproductionError, WriteError, DatasetError, backend.BackendError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        processes.interrupt_reported.set()
        print(processes.INTERRUPTED, file=sys.stderr, flush=True)
        return 130


if __name__ == "__main__":
    processes.exit_promptly_on_interrupt()  # Ctrl-C ends the run within a second, on either backend
    code = main()
    if processes.interrupt_reported.is_set():
        processes.exit_after_interrupt(code)
    sys.exit(code)
