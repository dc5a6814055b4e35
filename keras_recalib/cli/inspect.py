"""`keras-recalib inspect`: the gates of a model's recalibration layers on some images."""

from keras_recalib._table import format_table
from keras_recalib.cli._common import (
    CommandError,
    existing_file,
    existing_path,
    first_line,
    load_inputs,
    load_model,
    output_file,
    single_input_shape,
)

HELP = "Print and plot the gates of a model's recalibration layers on some images."


def add_arguments(parser):
    parser.add_argument(
        "model", metavar="MODEL.keras", type=existing_file("MODEL.keras"), help="the Keras model"
    )
    parser.add_argument(
        "--images",
        metavar="DIR_OR_NPZ",
        type=existing_path("--images"),
        required=True,
        help="the inputs: a .npz (array 'x', 'inputs' or the first array) or a folder of images "
        "(fed as float pixels 0-255, resized to the model's input)",
    )
    parser.add_argument(
        "--plot",
        metavar="PNG",
        type=output_file("--plot"),
        help="write the gate plots here (needs matplotlib)",
    )


def _rows(results):
    import numpy as np

    from keras_recalib import inspect

    rows = []
    for entry in results:
        if entry.gate is None:
            rows.append((entry.name, entry.kind, "-", "-", "-", "-", "-"))
            continue
        corr = inspect.channel_correlation(entry.gate)
        off_diagonal = corr[~np.eye(len(corr), dtype=bool)]
        mean_corr = float(np.mean(np.abs(off_diagonal))) if off_diagonal.size else 0.0
        gate = entry.gate
        rows.append(
            (
                entry.name,
                entry.kind,
                f"{gate.mean():.3f}",
                f"{gate.std():.3f}",
                f"{gate.min():.3f}",
                f"{gate.max():.3f}",
                f"{mean_corr:.3f}",
            )
        )
    return rows


def run(args):
    from keras_recalib import inspect

    model = load_model(args.model)
    images = load_inputs(args.images, single_input_shape(model, "inspect"), "--images")
    try:
        results = inspect.gates(model, images)
    except ValueError as error:
        raise CommandError(first_line(error)) from None
    print(f"{len(results)} recalibration layers, {len(images)} images")
    header = ("layer", "kind", "gate mean", "std", "min", "max", "|channel corr|")
    print(format_table(header, _rows(results), align="llrrrrr"))
    if args.plot:
        try:
            inspect.plot_gates(results, args.plot, title=model.name)
        except (ImportError, ValueError, OSError) as error:
            raise CommandError(first_line(error)) from None
        print(f"plot written to {args.plot}")
    return 0
