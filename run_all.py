"""Run the Axial-DeepLab reproduction suite.

    python run_all.py                          # every available table and figure, count fidelity
    python run_all.py --tables 1,9 --check     # two tables, then the CI comparison of counts
    python run_all.py --tables 1 --fidelity count
    python run_all.py --tables 1 --fidelity proxy              # small offline training runs, 3 seeds
    python run_all.py --tables 1 --fidelity full --data-dir /data [--strategy mirrored]

Writes tables/table<N>.csv (long form: table,row,metric,unit,reported,measured,
fidelity,delta,rel_delta,status,note) and tables/table<N>.md, and with --figures
(or when no --tables is given) the figures under figures/.  Counts are cached
under .cache/counts/ and recomputed when the model code changes.  The proxy and full
fidelities write tables/table<N>.<fidelity>.csv/.md (reproductions/trained.py); their
runs resume from checkpoints under .cache/experiments/ and are cached when finished.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from models import presets  # noqa: E402
from reproductions import runner  # noqa: E402
from training.engine import PRECISIONS, STRATEGIES  # noqa: E402
from training.experiments import PROXY_SEEDS  # noqa: E402

# One reproduction module per paper table.
TABLES = {n: f"reproductions.table{n}" for n in range(1, 10)}
# Figures: (module, tables whose results it plots).
FIGURES = {
    "Fig. 3": ("reproductions.figure3", (1, 9)),
    "Figs. 4/10 (scale stress, cost)": ("reproductions.scale_stress", ()),
    "Tab. 7 span ablation": ("reproductions.span_figure", (7,)),
    "M-Adds breakdown": ("reproductions.breakdown_figure", (6, 8)),
}


def parse_tables(text: str | None) -> list[int]:
    if text is None:
        return sorted(TABLES)
    chosen = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or not 1 <= int(part) <= 9:
            raise runner.ReproductionError(f"unknown table {part!r}: the paper has tables 1-9")
        chosen.append(int(part))
    return sorted(set(chosen))


def shown(path) -> str:
    """A path as printed: relative to the repository when inside it."""
    try:
        return str(path.relative_to(runner.ROOT))
    except ValueError:
        return str(path)


def parse_seeds(text: str | None) -> tuple[int, ...]:
    if text is None:
        return PROXY_SEEDS
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() for p in parts):
        raise runner.ReproductionError(f"--seeds takes comma-separated non-negative integers, got {text!r}")
    return tuple(dict.fromkeys(int(p) for p in parts))


def run_trained(args, tables: list[int]) -> int:
    """The proxy and full fidelities: every chosen table's declared experiments."""
    from reproductions import report, trained

    if args.fidelity == "full" and not args.data_dir:
        raise runner.ReproductionError("--fidelity full needs --data-dir (a folder holding imagenet/, coco/, "
                                       "cityscapes/, mapillary/; see README)")
    seeds = parse_seeds(args.seeds)
    specs = [importlib.import_module(TABLES[n]).SPEC for n in tables]
    if args.tables is None:  # everything: the tables that declare experiments at this fidelity
        specs = [s for s in specs if trained.declared(s, args.fidelity)]
    for spec in specs:
        trained.experiments_of(spec, args.fidelity)  # fail before any training if one is undeclared
    for spec in specs:
        df = trained.run_trained_table(spec, args.fidelity, seeds, args.data_dir, not args.quiet,
                                       args.strategy, args.precision, args.smoke_test)
        if args.smoke_test:
            print(f"table {spec.table} smoke test (2 steps of batch 2, not results; nothing written):")
            for _, r in df.iterrows():
                print(f"  {r['row']} {r['metric']}: {r['measured']} (seeds {r['seeds']})")
            continue
        status = ", ".join(f"{k} {v}" for k, v in df["status"].value_counts().items())
        print(f"table {spec.table}: {shown(runner.TABLES_DIR / trained.output_stem(spec, args.fidelity))}.csv "
              f"({status})")
    if not args.smoke_test:
        print(f"report: {shown(report.write())}")
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Reproduce the tables and figures of Axial-DeepLab (ECCV 2020): measured "
                    "numbers next to the paper's, per cell, written to tables/ and figures/.",
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
    parser.add_argument("--fidelity", choices=runner.FIDELITIES, default="count",
                        help="count (default), proxy or full")
    parser.add_argument("--data-dir", help="full fidelity: folder holding imagenet/, coco/, cityscapes/, "
                                           "mapillary/ (see README, 'Full fidelity')")
    parser.add_argument("--seeds", default=None, metavar="S[,S...]",
                        help="training seeds (default 0,1,2; proxy needs at least 3)")
    parser.add_argument("--strategy", choices=STRATEGIES, default="default",
                        help="tf.distribute strategy for training (multi-worker reads TF_CONFIG)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="auto: mixed_bfloat16 on TPU, mixed_float16 on tensor-core GPUs, else float32")
    parser.add_argument("--smoke-test", action="store_true",
                        help="training fidelities: 2 steps of batch 2 per experiment and seed, to check the "
                             "code path end to end; prints the metrics and writes no table")
    parser.add_argument("--check", action="store_true",
                        help="CI comparison: exit non-zero if a count differs from the golden "
                             "counts or a cell is outside tolerance and not a recorded finding")
    parser.add_argument("--update-golden", action="store_true",
                        help="record the measured counts as reproductions/golden_counts.json "
                             "(on purpose, in the commit that changes a model)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        tables = parse_tables(args.tables)
        if args.fidelity != "count":
            if args.check or args.update_golden:
                raise runner.ReproductionError("--check and --update-golden compare counts: use --fidelity count")
            return run_trained(args, tables)
        figures = args.figures or args.tables is None
        # Count every pass the run needs in one pool of workers before any table is written.
        passes = [(p.model, size) for n in tables
                  for p in map(presets.get, importlib.import_module(TABLES[n]).SPEC.presets)
                  for size in p.inference_runs()]
        if figures:
            passes += [job for module, needs in FIGURES.values() if all(t in tables for t in needs)
                       for job in getattr(importlib.import_module(module), "passes", list)()]
        runner.prefetch(passes, progress=not args.quiet)
        results = {}
        for n in tables:
            module = importlib.import_module(TABLES[n])
            results[n] = runner.run_table(module.SPEC, args.fidelity, progress=not args.quiet)
            df = results[n]
            err = runner.mean_abs_rel_error(df, "M-Adds")
            status = ", ".join(f"{k} {v}" for k, v in df["status"].value_counts().items())
            print(f"table {n}: tables/table{n}.csv ({status}"
                  + (f"; M-Adds mean |rel. error| {100 * err:.2f} %" if err is not None else "") + ")")
        if figures:
            for fig, (module, needs) in FIGURES.items():
                if all(t in results for t in needs):
                    written = importlib.import_module(module).main(results)
                    print(f"{fig}: " + ", ".join(str(p.relative_to(runner.ROOT)) for p in written))
        from reproductions import report

        print(f"report: {shown(report.write())}")
        counts = {p: runner.measure_counts(p) for n in tables
                  for p in importlib.import_module(TABLES[n]).SPEC.presets}
        if args.update_golden:
            runner.update_golden(counts)
            print(f"golden counts updated for {len(counts)} presets: "
                  f"{runner.GOLDEN_FILE.relative_to(runner.ROOT)}")
        if args.check:
            failures, known = runner.check(results, counts)
            for line in known:
                print(f"known finding: {line}")
            for line in failures:
                print(f"CHECK FAILED: {line}", file=sys.stderr)
            if failures:
                print(f"check: {len(failures)} failure(s)", file=sys.stderr)
                return 1
            print(f"check passed: {len(counts)} presets equal their golden counts; "
                  f"{len(known)} cells off the paper are recorded findings")
        return 0
    except runner.ReproductionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
