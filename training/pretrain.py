"""ImageNet pretraining of a panoptic model's backbone, whose weights then initialise it (Sec. 4;
issue #26, part 2).

    python -m training.pretrain axial-deeplab-s-imagenet --data-dir DATA [--strategy ...] [--smoke-test]

trains the preset (an "imagenet-init" preset of models/presets.py) by the paper's ImageNet recipe
(training/experiments.py imagenet_full) on DATA/imagenet/, evaluates its Top-1, and prints the
weights file to pass to `run_all.py --fidelity full --init-from`.  Runs resume and are cached as
every training here (keyed by configuration, under .cache/experiments/).
"""

from __future__ import annotations

import sys

from runtime.cli import OneLineParser, UsageError
from training.recipe import PRECISIONS, STRATEGIES


def make_parser():
    parser = OneLineParser(prog="python -m training.pretrain", description=__doc__.split("\n\n")[0])
    parser.add_argument("preset", help="an ImageNet initialisation preset, e.g. axial-deeplab-s-imagenet")
    parser.add_argument("--data-dir", required=True, help="folder holding imagenet/ (see README, 'Full fidelity')")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strategy", choices=STRATEGIES, default="default")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto")
    parser.add_argument("--smoke-test", action="store_true",
                        help="2 steps of batch 2 at 65 x 65, evaluated on 8 images, in a temporary folder: "
                             "the path, not a result")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def pretraining_experiment(name: str, smoke_test: bool = False):
    """The ImageNet experiment of an "imagenet-init" preset (UsageError for any other name)."""
    import dataclasses

    from models import presets
    from training import experiments

    try:
        preset = presets.get(name)
    except KeyError:
        preset = None
    if preset is None or preset.origin != "imagenet-init":
        known = ", ".join(sorted(n for n, p in presets.PRESETS.items() if p.origin == "imagenet-init"))
        raise UsageError(f"{name!r} is not an ImageNet initialisation preset; they are: {known}")
    experiment = experiments.imagenet_full(name)
    if smoke_test:
        experiment = dataclasses.replace(experiment, input_size=(65, 65), recipe=dataclasses.replace(
            experiment.recipe, batch_size=2, warmup_steps=0, crop_size=(65, 65)))
    return experiment


def main(argv=None) -> int:
    try:
        args = make_parser().parse_args(argv)
        experiment = pretraining_experiment(args.preset, args.smoke_test)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except SystemExit as exit_:  # --help
        return int(exit_.code or 0)
    from reproductions import trained
    from training import experiments
    from training.engine import TrainingError

    try:
        if args.smoke_test:
            with trained.temporary_cache():
                result = experiments.run(experiment, args.seed, args.data_dir, not args.quiet, args.strategy,
                                         args.precision, max_steps=trained.SMOKE_STEPS,
                                         max_eval=trained.SMOKE_EVAL_IMAGES)
            print(f"{args.preset} smoke test (not a result; nothing kept): Top-1 {result['metrics']['Top-1']:.2f}")
            return 0
        result = experiments.run(experiment, args.seed, args.data_dir, not args.quiet, args.strategy, args.precision)
    except (experiments.ExperimentError, TrainingError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    run_folder = experiments.workdir(trained._with_seed(experiment, args.seed), args.seed, args.data_dir)
    weights = run_folder / "checkpoints" / f"ckpt-{experiment.recipe.steps}.weights.h5"
    print(f"{args.preset}: Top-1 {result['metrics']['Top-1']:.2f} after {result['steps']} steps")
    print(f"initialise a panoptic run from it: python run_all.py --fidelity full --init-from {weights} ...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
