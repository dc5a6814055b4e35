"""`keras-recalib export`: a .keras model to a SavedModel and/or a verified .tflite file."""

import argparse
import pathlib

import numpy as np

from keras_recalib._quantization import QUANTIZATIONS
from keras_recalib._table import format_table
from keras_recalib.cli._common import (
    CommandError,
    existing_file,
    existing_path,
    first_line,
    load_inputs,
    load_model,
    output_file,
    output_folder,
    say,
    single_input_shape,
)

HELP = "Export a .keras model to SavedModel, TFLite and/or ONNX, and verify the files."


def add_arguments(parser):
    parser.add_argument(
        "model", metavar="MODEL.keras", type=existing_file("MODEL.keras"), help="the Keras model"
    )
    parser.add_argument(
        "--saved-model",
        metavar="DIR",
        type=_saved_model_folder,
        help="write a SavedModel here (its parent folder must exist)",
    )
    parser.add_argument(
        "--tflite",
        metavar="FILE",
        type=output_file("--tflite"),
        help="write a .tflite file here (its folder must exist)",
    )
    parser.add_argument(
        "--onnx",
        metavar="FILE",
        type=output_file("--onnx"),
        help="write an .onnx file here (its folder must exist; needs keras_recalib[onnx])",
    )
    parser.add_argument(
        "--quantize",
        choices=list(QUANTIZATIONS),
        default="none",
        help="; ".join(f"{name}: {spec.summary}" for name, spec in QUANTIZATIONS.items()),
    )
    parser.add_argument(
        "--calibration-data",
        metavar="DIR_OR_NPZ",
        type=existing_path("--calibration-data"),
        help="int8 calibration inputs (and --verify inputs): a .npz (array 'x', 'inputs' or the "
        "first array) or a folder of images (fed as float pixels 0-255, resized to the input)",
    )
    parser.add_argument(
        "--input-shape", metavar="H,W,C", help="fix the spatial size of the export (e.g. 224,224,3)"
    )
    parser.add_argument(
        "--int8-io", action="store_true", help="with int8: integer input and output tensors"
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="run the .tflite in LiteRT and the .onnx in ONNX Runtime, and compare with Keras",
    )


def _saved_model_folder(text):
    """A new folder, an empty one, or a SavedModel to replace: never a folder of other files,
    which the SavedModel would be mixed into."""
    output_folder("--saved-model")(text)
    path = pathlib.Path(text)
    if path.is_dir() and any(path.iterdir()) and not (path / "saved_model.pb").is_file():
        raise argparse.ArgumentTypeError(
            f"{text} is a folder with files and no SavedModel in it; give a new or empty folder"
        )
    return text


def _parse_shape(text):
    if text is None:
        return None
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise CommandError(f"--input-shape must be H,W,C with positive integers, got {text!r}")
    return shape


def _check_arguments(args):
    """Every check that needs no model, before the model loads."""
    if not (args.saved_model or args.tflite or args.onnx):
        raise CommandError("nothing to do: pass --saved-model DIR, --tflite FILE or --onnx FILE")
    if args.verify and not (args.tflite or args.onnx):
        raise CommandError("--verify needs --tflite FILE or --onnx FILE")
    spec = QUANTIZATIONS[args.quantize]
    if spec.needs_representative_data and not args.calibration_data:
        raise CommandError(f"--quantize {spec.name} needs --calibration-data DIR_OR_NPZ")
    if args.int8_io and not spec.integer_io:
        raise CommandError(f"--int8-io does not apply with --quantize {spec.name}")
    return _parse_shape(args.input_shape)


def run(args):
    fixed_shape = _check_arguments(args)
    spec = QUANTIZATIONS[args.quantize]

    from keras_recalib import export
    from keras_recalib.models import trainable_parameters

    say(f"[1/4] loading {args.model}")
    model = load_model(args.model)
    declared = single_input_shape(model, "export")
    data_shape = fixed_shape or declared
    data = None
    if args.calibration_data:
        data = load_inputs(args.calibration_data, data_shape, "--calibration-data")
        sample = tuple(data.shape[1:])
        if len(sample) != len(data_shape) or any(
            d is not None and d != s for d, s in zip(data_shape, sample, strict=True)
        ):
            raise CommandError(
                f"calibration samples have shape {sample}, the model expects {data_shape}"
            )
    # PyTorch's count (trainable) first; the rest is mostly batch-norm moving statistics.
    trainable = trainable_parameters(model)
    rows = [
        (
            "model",
            f"{args.model} ({trainable:,} trainable parameters, "
            f"{model.count_params() - trainable:,} non-trainable values)",
        )
    ]

    if args.saved_model:
        say(f"[2/4] exporting SavedModel to {args.saved_model}")
        try:
            export.export_saved_model(model, args.saved_model, fixed_shape)
        except ValueError as error:
            raise CommandError(str(error)) from None
        size = sum(
            f.stat().st_size for f in pathlib.Path(args.saved_model).rglob("*") if f.is_file()
        )
        rows.append(("SavedModel", f"{args.saved_model} ({size / 1024:.1f} KiB)"))
    else:
        say("[2/4] SavedModel: skipped")

    if args.verify and data is None:
        if None in data_shape:
            raise CommandError(
                "--verify without --calibration-data needs a known input size: "
                "pass --input-shape H,W,C"
            )
        data = np.random.default_rng(0).normal(size=(16, *data_shape)).astype("float32")
        rows.append(("verify inputs", "16 random normal samples (no calibration data)"))

    reports = []
    if args.tflite:
        say(f"[3/4] converting to TFLite ({args.quantize}) -> {args.tflite}")
        io_type = "int8" if args.int8_io else "float32"
        try:
            export.convert_tflite(
                model,
                args.tflite,
                quantization=spec.name,
                # Calibration data also serves verification; conversion takes it only where
                # the mode calibrates.
                representative_data=data if spec.needs_representative_data else None,
                input_shape=fixed_shape,
                inference_input_type=io_type,
                inference_output_type=io_type,
            )
        except ValueError as error:  # includes TFLiteConversionError (Flex ops)
            raise CommandError(first_line(error)) from None
        if args.verify:
            say("      verifying in the LiteRT interpreter")
            report = export.verify_tflite(model, args.tflite, data[-64:], quantization=spec.name)
            reports.append((f"the {spec.name} TFLite file", report, spec))
            rows.extend(report.rows())
        else:
            size = pathlib.Path(args.tflite).stat().st_size
            rows.append(("tflite", f"{args.tflite} ({size / 1024:.1f} KiB)"))
    else:
        say("[3/4] TFLite: skipped")

    if args.onnx:
        say(f"[4/4] exporting ONNX -> {args.onnx}")
        try:
            export.export_onnx(model, args.onnx, input_shape=fixed_shape)
            if args.verify:
                say("      verifying in ONNX Runtime")
                report = export.verify_onnx(model, args.onnx, data[-64:])
                reports.append(("the ONNX file", report, QUANTIZATIONS["none"]))
                rows.extend(report.rows())
        except ValueError as error:
            raise CommandError(first_line(error)) from None
        if not args.verify:
            size = pathlib.Path(args.onnx).stat().st_size
            rows.append(("onnx", f"{args.onnx} ({size / 1024:.1f} KiB)"))
    else:
        say("[4/4] ONNX: skipped")

    print(format_table(("export", "result"), rows, align="ll"))
    failed = [(what, rules) for what, report, rules in reports if not report.meets_contract]
    for what, rules in failed:
        inside = ", integer ops inside" if rules.integer_inside else ""
        say(f"error: {what} does not meet its contract (cosine >= {rules.min_cosine}{inside})")
    return 1 if failed else 0
