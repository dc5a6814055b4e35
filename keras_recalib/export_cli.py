"""`keras-recalib export`: a .keras model to a SavedModel and/or a verified .tflite file."""

import pathlib
import sys

import numpy as np

from keras_recalib.cli import CommandError, register_command

QUANTIZE_CHOICES = ("none", "float16", "dynamic", "int8")


def add_arguments(parser):
    parser.add_argument("model", metavar="MODEL.keras", help="the Keras model file")
    parser.add_argument("--saved-model", metavar="DIR", help="write a SavedModel here")
    parser.add_argument("--tflite", metavar="FILE", help="write a .tflite file here")
    parser.add_argument("--quantize", choices=QUANTIZE_CHOICES, default="none")
    parser.add_argument(
        "--calibration-data",
        metavar="DIR_OR_NPZ",
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
        "--verify", action="store_true", help="run the .tflite in LiteRT and compare with Keras"
    )


def _say(message):
    print(message, file=sys.stderr, flush=True)


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


def load_model(path):
    import keras

    import keras_recalib  # noqa: F401  (registers the layers)

    path = pathlib.Path(path)
    if not path.is_file():
        raise CommandError(f"no such model file: {path}")
    try:
        return keras.saving.load_model(path)
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CommandError(f"cannot load {path} as a Keras model: {first}") from None


def load_inputs(source, input_shape, limit=512):
    """Calibration/verification inputs from a .npz file or an image folder."""
    path = pathlib.Path(source)
    if not path.exists():
        raise CommandError(f"no such calibration data: {path}")
    if path.is_file():
        try:
            with np.load(path) as archive:
                names = list(archive.files)
                key = next((k for k in ("x", "inputs") if k in names), names[0] if names else None)
                if key is None:
                    raise CommandError(f"{path} holds no arrays")
                data = np.asarray(archive[key], np.float32)
        except CommandError:
            raise
        except Exception as error:
            raise CommandError(f"cannot read {path} as .npz: {error}") from None
    else:
        import keras

        if input_shape is None or None in input_shape[:2]:
            raise CommandError(
                "an image folder needs a known input size: the model's input is dynamic, "
                "pass --input-shape H,W,C"
            )
        try:
            dataset = keras.utils.image_dataset_from_directory(
                path,
                labels=None,
                image_size=tuple(input_shape[:2]),
                color_mode={1: "grayscale", 3: "rgb", 4: "rgba"}.get(input_shape[2], "rgb"),
                batch_size=64,
                shuffle=False,
                verbose=False,
            )
            data = np.concatenate([np.asarray(batch) for batch in dataset], axis=0)
        except Exception as error:
            first = str(error).strip().splitlines()[0]
            raise CommandError(f"cannot read images from {path}: {first}") from None
    if data.ndim < 2 or len(data) == 0:
        raise CommandError(f"{path}: no samples found")
    return data[:limit]


def run(args):
    if not (args.saved_model or args.tflite):
        raise CommandError("nothing to do: pass --saved-model DIR and/or --tflite FILE")
    if args.verify and not args.tflite:
        raise CommandError("--verify needs --tflite FILE")
    quantization = None if args.quantize == "none" else args.quantize
    if quantization == "int8" and not args.calibration_data:
        raise CommandError("--quantize int8 needs --calibration-data DIR_OR_NPZ")
    if args.int8_io and quantization != "int8":
        raise CommandError("--int8-io applies only with --quantize int8")
    fixed_shape = _parse_shape(args.input_shape)

    from keras_recalib import export

    _say(f"[1/4] loading {args.model}")
    model = load_model(args.model)
    if len(model.inputs) != 1:
        raise CommandError("the CLI exports single-input models; use keras_recalib.export")
    declared = tuple(model.inputs[0].shape[1:])
    data_shape = fixed_shape or declared
    data = None
    if args.calibration_data:
        data = load_inputs(args.calibration_data, data_shape)
        sample = tuple(data.shape[1:])
        if len(sample) != len(data_shape) or any(
            d is not None and d != s for d, s in zip(data_shape, sample, strict=True)
        ):
            raise CommandError(
                f"calibration samples have shape {sample}, the model expects {data_shape}"
            )
    rows = [("model", f"{args.model} ({model.count_params():,} parameters)")]

    if args.saved_model:
        _say(f"[2/4] exporting SavedModel to {args.saved_model}")
        try:
            export.export_saved_model(model, args.saved_model, fixed_shape)
        except ValueError as error:
            raise CommandError(str(error)) from None
        size = sum(
            f.stat().st_size for f in pathlib.Path(args.saved_model).rglob("*") if f.is_file()
        )
        rows.append(("SavedModel", f"{args.saved_model} ({size / 1024:.1f} KiB)"))
    else:
        _say("[2/4] SavedModel: skipped")

    report = None
    if args.tflite:
        _say(f"[3/4] converting to TFLite ({args.quantize}) -> {args.tflite}")
        io_type = "int8" if args.int8_io else "float32"
        try:
            export.convert_tflite(
                model,
                args.tflite,
                quantization=quantization,
                representative_data=data,
                input_shape=fixed_shape,
                inference_input_type=io_type,
                inference_output_type=io_type,
            )
        except ValueError as error:  # includes TFLiteConversionError (Flex ops)
            raise CommandError(str(error).splitlines()[0]) from None
        if args.verify:
            _say("[4/4] verifying in the LiteRT interpreter")
            if data is None:
                if None in data_shape:
                    raise CommandError(
                        "--verify without --calibration-data needs a known input size: "
                        "pass --input-shape H,W,C"
                    )
                data = np.random.default_rng(0).normal(size=(16, *data_shape)).astype("float32")
                rows.append(("verify inputs", "16 random normal samples (no calibration data)"))
            report = export.verify_tflite(model, args.tflite, data[-64:])
            rows.extend(report.rows())
        else:
            _say("[4/4] verification: skipped (pass --verify)")
            size = pathlib.Path(args.tflite).stat().st_size
            rows.append(("tflite", f"{args.tflite} ({size / 1024:.1f} KiB)"))
    else:
        _say("[3/4] TFLite: skipped")

    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k.ljust(width)}  {v}" for k, v in rows))
    if report is not None and quantization == "int8" and not report.fully_int8:
        _say("warning: float ops remain inside the int8 model: " + ", ".join(report.float_ops))
    return 0


register_command("export", "Export a .keras model to SavedModel and/or TFLite.", add_arguments, run)
