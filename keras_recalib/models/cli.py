"""`keras-recalib zoo`: every module's parameters and MACs on a ResNet, like the papers' tables."""

from keras_recalib.cli import CommandError, register_command

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
        type=int,
        default=224,
        metavar="N",
        help="square input size in pixels (default 224)",
    )
    parser.add_argument(
        "--num-classes", type=int, default=1000, metavar="N", help="classes (default 1000)"
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


def _delta(count):
    return f"{count:+,}"


def run(args):
    import keras_recalib
    from keras_recalib.models import resnet_complexity
    from keras_recalib.models.resnet import RESNET_DEPTHS

    if args.depth not in RESNET_DEPTHS:
        raise CommandError(
            f"--depth must be one of {', '.join(map(str, RESNET_DEPTHS))}, got {args.depth}"
        )
    if args.input_size < 32:
        raise CommandError(f"--input-size must be at least 32, got {args.input_size}")
    if args.num_classes < 1:
        raise CommandError(f"--num-classes must be at least 1, got {args.num_classes}")
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
    rows = [("module", "params", "+params", "MACs", "+MACs")]
    rows.append(("none", _millions(base.params), "", _giga(base.macs), ""))
    notes = []
    for name in names:
        try:
            cost = resnet_complexity(args.depth, name, args.num_classes, shape)
        except Exception as error:  # one module failing must not hide the others
            rows.append((name, "n/a", "", "n/a", ""))
            notes.append(f"{name}: {type(error).__name__}: {str(error).splitlines()[0]}")
            continue
        rows.append(
            (
                name,
                _millions(cost.params),
                _delta(cost.params - base.params),
                _giga(cost.macs),
                f"{(cost.macs - base.macs) / 1e6:+.2f}M",
            )
        )
        if name in _NOT_BRANCH_MODULES:
            notes.append(f"{name}: {_NOT_BRANCH_MODULES[name]}")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        print("  ".join(cells).rstrip())
        if index == 0:
            print("  ".join("-" * w for w in widths))
    for note in notes:
        print(f"note: {note}")
    skipped = [name for name in _NOT_BRANCH_MODULES if name in available and name not in names]
    if skipped:
        print(f"not shown (ask with --modules): {', '.join(skipped)}")
    return 0


register_command(
    "zoo",
    "Parameters and multiply-adds of every module on a ResNet (default ResNet-50, 224x224).",
    add_arguments,
    run,
)
