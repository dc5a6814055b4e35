"""`keras-recalib zoo`: every module's parameters and MACs on a ResNet, like the papers' tables."""

from keras_recalib._table import format_table
from keras_recalib.cli._common import CommandError, first_line, positive_int

HELP = "Parameters and multiply-adds of every module on a ResNet (default ResNet-50, 224x224)."

# Layers of the package that are not meant to sit on a residual branch: listed only on request.
_NOT_BRANCH_MODULES = {
    "scconv": "a convolution: SCNet replaces each block's 3x3 convolution with it",
}


def add_arguments(parser):
    parser.add_argument(
        "--depth", type=int, default=50, help="ResNet depth: 18, 34, 50, 101 or 152 (default 50)"
    )
    parser.add_argument(
        "--input-size",
        type=positive_int("--input-size", 32),
        default=224,
        metavar="N",
        help="square input size in pixels, at least 32 (default 224)",
    )
    parser.add_argument(
        "--num-classes",
        type=positive_int("--num-classes"),
        default=1000,
        metavar="N",
        help="classes (default 1000)",
    )
    parser.add_argument(
        "--modules",
        metavar="NAMES",
        help="comma-separated module names (default: every branch module available)",
    )


def _millions(count):
    return f"{count / 1e6:.2f}M"


def _giga(count):
    return f"{count / 1e9:.3f}G"


def run(args):
    import keras_recalib
    from keras_recalib.models import resnet_complexity
    from keras_recalib.models.resnet import RESNET_DEPTHS

    if args.depth not in RESNET_DEPTHS:
        raise CommandError(
            f"--depth must be one of {', '.join(map(str, RESNET_DEPTHS))}, got {args.depth}"
        )
    available = keras_recalib.available()
    if args.modules:
        names = [name.strip().lower() for name in args.modules.split(",") if name.strip()]
        unknown = [name for name in names if name not in available]
        if unknown:
            raise CommandError(
                f"unknown module {', '.join(unknown)}; available: {', '.join(available)}"
            )
    else:
        names = [name for name in available if name not in _NOT_BRANCH_MODULES]

    shape = (args.input_size, args.input_size, 3)
    base = resnet_complexity(args.depth, None, args.num_classes, shape)
    print(
        f"ResNet-{args.depth}, {args.input_size}x{args.input_size} input, "
        f"{args.num_classes} classes: one module after the last batch normalisation of each "
        "residual branch (default arguments)."
    )
    print(
        "Parameters: trainable (as PyTorch counts). MACs: convolutions and dense layers of the "
        "network plus each module's products and summed elements (keras_recalib.models.complexity)."
    )
    rows = [("none", _millions(base.params), "", _giga(base.macs), "")]
    notes = []
    for name in names:
        try:
            cost = resnet_complexity(args.depth, name, args.num_classes, shape)
        except Exception as error:  # one module failing must not hide the others
            rows.append((name, "n/a", "", "n/a", ""))
            notes.append(f"{name}: {type(error).__name__}: {first_line(error)}")
            continue
        rows.append(
            (
                name,
                _millions(cost.params),
                f"{cost.params - base.params:+,}",
                _giga(cost.macs),
                f"{(cost.macs - base.macs) / 1e6:+.2f}M",
            )
        )
        if name in _NOT_BRANCH_MODULES:
            notes.append(f"{name}: {_NOT_BRANCH_MODULES[name]}")
    print(format_table(("module", "params", "+params", "MACs", "+MACs"), rows))
    for note in notes:
        print(f"note: {note}")
    skipped = [name for name in _NOT_BRANCH_MODULES if name in available and name not in names]
    if skipped:
        print(f"not shown (ask with --modules): {', '.join(skipped)}")
    return 0
