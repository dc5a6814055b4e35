"""`keras-recalib demo`: the command line of `keras_recalib.demo.run_experiment`.

Imports neither TensorFlow nor Keras at module level (`--help` answers at once).
"""

import dataclasses
import sys

from keras_recalib.cli._common import CommandError, positive_int, prepare_output_folder
from keras_recalib.demo import DEFAULT_MODULES, DEPTHS, TASKS, DemoConfig

HELP = (
    "Train CIFAR-style ResNets with and without SRM (and SE, ECA) over several seeds on texture "
    "patches of real photographs, compare them against the seed spread, export and verify."
)

_DEFAULT = DemoConfig()
_QUICK = DemoConfig.quick()


def _fraction(name):
    def parse(text):
        import argparse

        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not value >= 0:
            raise argparse.ArgumentTypeError(f"{name} must be >= 0, got {text}")
        return value

    return parse


def add_arguments(parser):
    parser.add_argument(
        "--out", metavar="DIR", help="output folder (default: a new keras_recalib_demo_* folder)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="allow writing into a non-empty --out"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a first look: modules {','.join(_QUICK.modules)}, {_QUICK.epochs} epochs, "
        f"{_QUICK.train_per_class} training patches per class, no export (options given "
        "explicitly still apply)",
    )
    parser.add_argument(
        "--task",
        choices=TASKS,
        default=None,
        help=f"the generated task (default {_DEFAULT.task}: patches of real texture "
        "photographs; style_textures: procedurally generated styles)",
    )
    parser.add_argument(
        "--data",
        metavar="DIR",
        help="train on your own images instead, one sub-folder per class (80%% train, 20%% "
        "held out)",
    )
    parser.add_argument(
        "--modules",
        metavar="NAMES",
        help="comma-separated modules to compare, 'none' for the plain network, the first is "
        f"the baseline (default {','.join(DEFAULT_MODULES)})",
    )
    parser.add_argument(
        "--seeds",
        type=positive_int("--seeds"),
        help=f"number of seeds per module (default {_DEFAULT.seeds})",
    )
    parser.add_argument(
        "--epochs", type=positive_int("--epochs"), help=f"default {_DEFAULT.epochs}"
    )
    parser.add_argument(
        "--batch-size", type=positive_int("--batch-size"), help=f"default {_DEFAULT.batch_size}"
    )
    parser.add_argument(
        "--learning-rate",
        type=_fraction("--learning-rate"),
        help=f"AdamW's peak learning rate (default {_DEFAULT.learning_rate:g})",
    )
    parser.add_argument(
        "--weight-decay",
        type=_fraction("--weight-decay"),
        help=f"AdamW's weight decay on kernels (default {_DEFAULT.weight_decay:g})",
    )
    parser.add_argument(
        "--depth", type=int, choices=DEPTHS, help=f"CIFAR ResNet depth (default {_DEFAULT.depth})"
    )
    parser.add_argument(
        "--image-size",
        type=positive_int("--image-size", 8),
        help=f"patch or image size in pixels (default {_DEFAULT.image_size})",
    )
    parser.add_argument(
        "--train-per-class",
        type=positive_int("--train-per-class"),
        help=f"training images per class of the generated tasks (default "
        f"{_DEFAULT.train_per_class})",
    )
    parser.add_argument(
        "--held-out-per-class",
        type=positive_int("--held-out-per-class"),
        help=f"held-out images per class of the generated tasks (default "
        f"{_DEFAULT.held_out_per_class})",
    )
    parser.add_argument(
        "--no-export",
        action="store_true",
        help="skip the SavedModel/TFLite export and verification of the first seed",
    )


_OPTIONS = {
    "task": "task",
    "data": "data",
    "seeds": "seeds",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "learning_rate": "learning_rate",
    "weight_decay": "weight_decay",
    "depth": "depth",
    "image_size": "image_size",
    "train_per_class": "train_per_class",
    "held_out_per_class": "held_out_per_class",
}


def config_from_args(args):
    """The `DemoConfig` the parsed arguments ask for (CommandError for a bad combination)."""
    import pathlib

    overrides = {
        field: getattr(args, option)
        for option, field in _OPTIONS.items()
        if getattr(args, option) is not None
    }
    if args.modules is not None:
        overrides["modules"] = tuple(n.strip().lower() for n in args.modules.split(",") if n)
    if args.no_export:
        overrides["export"] = False
    if args.data is not None:
        if args.task is not None:
            raise CommandError("--task and --data exclude each other: --data is the task")
        if not pathlib.Path(args.data).is_dir():
            raise CommandError(f"--data {args.data}: no such folder")
    config = DemoConfig.quick(**overrides) if args.quick else DemoConfig(**overrides)
    if config.epochs <= config.warmup_epochs:
        # One epoch or so: no room for a warm-up.
        config = dataclasses.replace(config, warmup_epochs=0.0)
    try:
        config.validate()
    except ValueError as error:
        raise CommandError(str(error).split(" Received: ")[0]) from None
    return config


def run(args):
    config = config_from_args(args)

    import keras_recalib
    from keras_recalib import demo

    unknown = [n for n in config.modules if n != "none" and n not in keras_recalib.available()]
    if unknown:
        raise CommandError(
            f"unknown module(s) {', '.join(unknown)} in --modules; valid: none, "
            + ", ".join(keras_recalib.available())
        )
    out = prepare_output_folder(args.out, args.overwrite, default_prefix="keras_recalib_demo")
    progress = demo.BarProgress() if sys.stdout.isatty() else demo.LineProgress()
    try:
        results = demo.run_experiment(config, out=out, progress=progress)
    except (demo.DataError, ImportError) as error:  # a bad folder, a missing extra
        lines = [line for line in str(error).splitlines() if line.strip()]
        raise CommandError(lines[0] if lines else type(error).__name__) from None
    minutes, seconds = divmod(int(round(results["timing"]["wall_seconds"])), 60)
    print(
        f"\n{results['data']['source']}; held-out accuracy over seeds "
        f"{', '.join(map(str, results['config']['seeds']))} (output in {out}, "
        f"{minutes} min {seconds:02d} s)"
    )
    print(demo.format_results(results))
    return 0
