"""`keras-recalib demo`.

The demo trains a small CIFAR-style ResNet with SRM and the same network without it (plus any
other modules asked for) on the embedded texture-style dataset (`keras_recalib.data`) or on the
user's image folder, evaluates them, exports each to a SavedModel and to TFLite float32 and int8,
verifies the files in the LiteRT interpreter, plots the gates, and prints one table.
"""

import datetime
import json
import pathlib
import sys
import time

import numpy as np

from keras_recalib.cli import CommandError

# CIFAR ResNets are 6n + 2 deep; 8 and 14 are small enough for quick runs and tests.
DEPTHS = (8, 14, 20, 32, 44, 56, 110)


def _say(message):
    print(message, file=sys.stderr, flush=True)


def _positive(name, minimum=1):
    def parse(text):
        import argparse

        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be >= {minimum}, got {value}")
        return value

    return parse


def add_demo_arguments(parser):
    parser.add_argument(
        "--out", metavar="DIR", help="output folder (default: a new keras_recalib_demo_* folder)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="allow writing into a non-empty --out"
    )
    parser.add_argument(
        "--recalibration",
        metavar="NAMES",
        default="",
        help="extra modules to compare, comma-separated (e.g. se,eca); SRM and the plain "
        "network always run",
    )
    parser.add_argument(
        "--data", metavar="DIR", help="your own image folder, one sub-folder per class"
    )
    parser.add_argument("--epochs", type=_positive("--epochs"), default=4)
    parser.add_argument("--steps", type=_positive("--steps"), help="cap on steps per epoch")
    parser.add_argument(
        "--samples",
        type=_positive("--samples", 60),
        default=3600,
        help="embedded dataset size (80%% train, 20%% held out)",
    )
    parser.add_argument("--depth", type=int, choices=DEPTHS, default=20)
    parser.add_argument("--image-size", type=_positive("--image-size", 16), default=32)
    parser.add_argument("--batch-size", type=_positive("--batch-size"), default=64)
    parser.add_argument("--seed", type=int, default=0)


def _prepare_out(path, overwrite):
    if path is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = pathlib.Path.cwd() / f"keras_recalib_demo_{stamp}"
    path = pathlib.Path(path)
    if path.exists() and not path.is_dir():
        raise CommandError(f"--out {path} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise CommandError(f"--out {path} is not empty; pass --overwrite to write into it")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise CommandError(f"cannot write to --out {path}: {error.strerror or error}") from None
    return path


def _modules(text):
    import keras_recalib as kr

    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in kr.available()]
    if unknown:
        raise CommandError(
            f"unknown module(s) {', '.join(unknown)} in --recalibration; valid: "
            + ", ".join(kr.available())
        )
    ordered = ["none", "srm"]
    return ordered + [n for n in names if n not in ordered]


def _embedded_data(samples, image_size, seed):
    from keras_recalib.data import CLASS_NAMES, style_textures

    x, y = style_textures(samples, image_size=image_size, seed=seed)
    split = int(len(x) * 0.8)
    return (x[:split], y[:split]), (x[split:], y[split:]), list(CLASS_NAMES)


def _folder_data(folder, image_size, seed):
    import keras

    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise CommandError(f"--data {folder} is not a folder")
    try:
        train, held_out = keras.utils.image_dataset_from_directory(
            folder,
            validation_split=0.2,
            subset="both",
            seed=seed,
            image_size=(image_size, image_size),
            batch_size=256,
            verbose=False,
        )
        classes = list(train.class_names)

        def arrays(dataset):
            xs, ys = [], []
            for images, labels in dataset:
                xs.append(np.asarray(images, np.float32))
                ys.append(np.asarray(labels, np.int32))
            if not xs:
                return np.zeros((0, image_size, image_size, 3), np.float32), np.zeros(0, np.int32)
            return np.concatenate(xs), np.concatenate(ys)

        train_arrays, held_arrays = arrays(train), arrays(held_out)
    except CommandError:
        raise
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CommandError(f"cannot read images from --data {folder}: {first}") from None
    if len(classes) < 2:
        raise CommandError(
            f"--data {folder} needs at least two class sub-folders, found {len(classes)}"
        )
    if len(train_arrays[0]) == 0 or len(held_arrays[0]) == 0:
        raise CommandError(f"--data {folder} has too few images to hold some out")
    return train_arrays, held_arrays, classes


def build_demo_model(name, depth, num_classes, image_size):
    """Pixels in [0, 255] -> logits: rescaling, then a CIFAR ResNet with module `name`."""
    import keras

    from keras_recalib import models

    inputs = keras.Input((image_size, image_size, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(inputs)
    body = models.cifar_resnet(
        depth,
        recalibration=None if name == "none" else name,
        num_classes=num_classes,
        input_shape=(image_size, image_size, 3),
    )
    label = "plain" if name == "none" else name
    return keras.Model(inputs, body(x), name=f"demo_resnet{depth}_{label}")


def _keras_latency_ms(model, sample, repeats=30):
    import tensorflow as tf

    fn = tf.function(lambda t: model(t, training=False))
    fn(sample)
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(sample).numpy()
        timings.append(time.perf_counter() - start)
    return float(np.median(timings) * 1e3)


def _train_one(name, args, data, out):
    import keras

    from keras_recalib import export, inspect

    (x_train, y_train), (x_test, y_test), classes = data
    keras.utils.set_random_seed(args.seed)
    model = build_demo_model(name, args.depth, len(classes), args.image_size)
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    _say(f"\n== {model.name}: training ({model.count_params():,} parameters)")
    steps = args.steps
    if steps is not None:
        steps = min(steps, int(np.ceil(len(x_train) / args.batch_size)))
    start = time.perf_counter()
    if steps is None:
        model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, verbose=1)
    else:
        import tensorflow as tf

        dataset = (
            tf.data.Dataset.from_tensor_slices((x_train, y_train))
            .shuffle(len(x_train), seed=args.seed)
            .batch(args.batch_size)
            .repeat()
        )
        # The dataset is shuffled above; Keras' own shuffle does not apply to datasets.
        model.fit(dataset, epochs=args.epochs, steps_per_epoch=steps, verbose=1, shuffle=False)
    train_seconds = time.perf_counter() - start
    logits = model.predict(x_test, batch_size=256, verbose=0)
    accuracy = float(np.mean(logits.argmax(1) == y_test))

    folder = out / model.name
    folder.mkdir(exist_ok=True)
    _say(f"== {model.name}: exporting and converting")
    model.save(folder / "model.keras")
    saved_model = export.export_saved_model(model, folder / "saved_model")
    # Both conversions start from that SavedModel instead of exporting it again.
    export.convert_tflite(str(saved_model), folder / "float32.tflite")
    export.convert_tflite(
        str(saved_model),
        folder / "int8.tflite",
        quantization="int8",
        representative_data=x_train[:128],
    )
    verify = x_test[:128]
    float_report = export.verify_tflite(model, folder / "float32.tflite", verify)
    int8_report = export.verify_tflite(model, folder / "int8.tflite", verify)
    int8_accuracy = float(
        np.mean(export.run_tflite(folder / "int8.tflite", x_test).argmax(1) == y_test)
    )
    row = {
        "model": model.name,
        "module": name,
        "parameters": int(model.count_params()),
        "accuracy": accuracy,
        "int8_accuracy": int8_accuracy,
        "train_seconds": train_seconds,
        "keras_latency_ms": _keras_latency_ms(model, x_test[:1]),
        "tflite_float32_latency_ms": float_report.median_latency_ms,
        "tflite_int8_latency_ms": int8_report.median_latency_ms,
        "keras_file_kib": (folder / "model.keras").stat().st_size / 1024,
        "tflite_float32_kib": float_report.file_size_bytes / 1024,
        "tflite_int8_kib": int8_report.file_size_bytes / 1024,
        "tflite_float32_max_abs_error": float_report.max_abs_error,
        "tflite_float32_top1_agreement": float_report.top1_agreement,
        "tflite_int8_cosine": int8_report.cosine_similarity,
        "tflite_int8_top1_agreement": int8_report.top1_agreement,
        "int8_fully_quantized": int8_report.fully_int8,
    }
    if name != "none":
        results = inspect.gates(model, x_test[:256])
        inspect.plot_gates(results, folder / "gates.png", title=model.name)
        (folder / "gates.txt").write_text(inspect.summary(results) + "\n")
        row["gates_plot"] = str(folder / "gates.png")
    return row


TABLE = [
    ("model", "module", "{}"),
    ("params", "parameters", "{:,}"),
    ("acc", "accuracy", "{:.3f}"),
    ("int8 acc", "int8_accuracy", "{:.3f}"),
    ("train s", "train_seconds", "{:.1f}"),
    ("keras ms", "keras_latency_ms", "{:.2f}"),
    ("tflite ms", "tflite_float32_latency_ms", "{:.2f}"),
    ("int8 ms", "tflite_int8_latency_ms", "{:.2f}"),
    (".keras KiB", "keras_file_kib", "{:.0f}"),
    ("f32 KiB", "tflite_float32_kib", "{:.0f}"),
    ("int8 KiB", "tflite_int8_kib", "{:.0f}"),
    ("f32 max err", "tflite_float32_max_abs_error", "{:.1e}"),
    ("f32 top1 agree", "tflite_float32_top1_agreement", "{:.3f}"),
    ("int8 cos", "tflite_int8_cosine", "{:.4f}"),
]


def format_table(rows):
    cells = [[title for title, _, _ in TABLE]]
    for row in rows:
        cells.append([fmt.format(row[key]) for _, key, fmt in TABLE])
    widths = [max(len(line[i]) for line in cells) for i in range(len(TABLE))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run_demo(args):
    modules = _modules(args.recalibration)
    out = _prepare_out(args.out, args.overwrite)
    if args.data:
        data = _folder_data(args.data, args.image_size, args.seed)
        source = f"image folder {args.data}"
    else:
        data = _embedded_data(args.samples, args.image_size, args.seed)
        source = "embedded texture-style dataset (keras_recalib.data.style_textures)"
    (x_train, _), (x_test, _), classes = data
    _say(
        f"data: {source}: {len(x_train)} training and {len(x_test)} held-out images, "
        f"{len(classes)} classes; output: {out}"
    )
    rows = [_train_one(name, args, data, out) for name in modules]
    table = format_table(rows)
    (out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / "results.txt").write_text(table + "\n")
    print(f"\nheld-out accuracy, speed and export on {source} (output in {out})")
    print(table)
    return 0
