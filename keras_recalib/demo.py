"""The demo experiment: CIFAR-style ResNets with and without recalibration modules, several seeds.

`run_experiment(DemoConfig(...))` builds the task (by default `keras_recalib.data.
texture_patches`: texture recognition on patches of real photographs with a camera's photometric
variation), trains every module of `config.modules` once per seed with one fixed recipe, measures
held-out accuracy, compares every module with the plain network against the seed-to-seed spread,
optionally exports the first seed's networks (SavedModel, TFLite float32 and int8, verified in
the LiteRT interpreter), and returns the results as a dictionary (the `results.json` schema,
docs/demo.md). `keras-recalib demo` (keras_recalib/cli/demo.py) is its command line.

The recipe: AdamW, a linear learning-rate warm-up then a cosine decay to zero over a fixed
number of epochs, weight decay on convolution and dense kernels only. Batch normalisation's
scale and offset, biases and every parameter of SRM are left out of the weight decay, as SRM's
official training does for SRM (hyunjaelee410/style-based-recalibration-module `imagenet.py`,
`srm_param`s get `weight_decay=0`).

Nothing here imports TensorFlow or Keras at module level (the command line builds its parser
from this module's defaults).
"""

import dataclasses
import math
import os
import platform
import sys
import time

import numpy as np

__all__ = [
    "DEFAULT_MODULES",
    "SCHEMA",
    "TASKS",
    "BarProgress",
    "DataError",
    "DemoConfig",
    "LineProgress",
    "build_demo_model",
    "compare",
    "format_results",
    "run_experiment",
]

SCHEMA = "keras_recalib.demo/1"
TASKS = ("textures", "style_textures")
DEFAULT_MODULES = ("none", "srm", "se", "eca")
# CIFAR ResNets are 6n + 2 deep.
DEPTHS = (8, 14, 20, 32, 44, 56, 110)
PARAMETER_CONVENTION = (
    "trainable parameters, as PyTorch counts them (batch-norm moving statistics excluded)"
)
CRITERION = (
    "a module's difference from the plain network exceeds the seed spread when "
    "|mean difference| > 2 * pooled std, pooled std = sqrt((std_a^2 + std_b^2) / 2), "
    "std = sample standard deviation of held-out accuracy over the seeds; a difference within "
    "25% of that threshold either way is reported as borderline (too close to call: float "
    "rounding on another CPU can move it across)"
)
# How close to the threshold, relative to it, a difference is too close to call.
BORDERLINE = 0.25


class DataError(ValueError):
    """The task's data cannot be made or read (a bad image folder, missing photographs)."""


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """What the demo trains and how.

    Attributes:
        task: `"textures"` (real photographs, `data.texture_patches`) or `"style_textures"`
            (procedurally generated, `data.style_textures`); ignored when `data` is given.
        data: a folder of images, one sub-folder per class (read with
            `keras.utils.image_dataset_from_directory`, 80 % training, 20 % held out), or None.
        modules: module names, `"none"` for the plain network; the first is the baseline of the
            comparisons.
        seeds: number of seeds (0, 1, ..., seeds - 1). A seed fixes the initial weights and the
            order of the batches; the data do not change with it (`data_seed`).
        epochs, batch_size: the fixed budget. Batches are full (the remainder is dropped).
        warmup_epochs: linear warm-up from 0 to `learning_rate`, then cosine decay to 0.
        learning_rate, weight_decay: AdamW's (decoupled weight decay).
        depth: CIFAR ResNet depth, 6n + 2.
        image_size: patch or image height and width.
        train_per_class, held_out_per_class: images per class of the generated tasks.
        data_seed: seed of the generated data and of the folder split.
        export: export, convert and verify the first seed's networks (SavedModel, TFLite
            float32 and int8) and plot their gates; needs `out`.
    """

    task: str = "textures"
    data: str | None = None
    modules: tuple = DEFAULT_MODULES
    seeds: int = 3
    epochs: int = 8
    warmup_epochs: float = 1.0
    learning_rate: float = 2e-3
    weight_decay: float = 0.05
    batch_size: int = 64
    depth: int = 8
    image_size: int = 16
    train_per_class: int = 640
    held_out_per_class: int = 300
    data_seed: int = 0
    export: bool = True

    @classmethod
    def quick(cls, **overrides):
        """A first look: the plain network and SRM, 3 seeds, fewer epochs, no export."""
        settings = dict(modules=("none", "srm"), epochs=5, train_per_class=512, export=False)
        settings.update(overrides)
        return cls(**settings)

    def validate(self):
        """Raises ValueError naming the first bad attribute."""
        if self.data is None and self.task not in TASKS:
            raise ValueError(
                f"Argument `task` must be one of {', '.join(TASKS)}. Received: task={self.task!r}"
            )
        for name in ("seeds", "epochs", "batch_size", "train_per_class", "held_out_per_class"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"Argument `{name}` must be an integer >= 1. Received: {name}={value!r}"
                )
        if self.depth not in DEPTHS:
            raise ValueError(
                f"Argument `depth` must be one of {', '.join(map(str, DEPTHS))}. "
                f"Received: depth={self.depth!r}"
            )
        if not isinstance(self.image_size, int) or self.image_size < 8:
            raise ValueError(
                f"Argument `image_size` must be an integer >= 8. "
                f"Received: image_size={self.image_size!r}"
            )
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError(
                "Argument `warmup_epochs` must be >= 0 and less than `epochs`. "
                f"Received: warmup_epochs={self.warmup_epochs!r}"
            )
        if not self.learning_rate > 0 or not self.weight_decay >= 0:
            raise ValueError(
                "Arguments `learning_rate` (> 0) and `weight_decay` (>= 0) are out of range. "
                f"Received: learning_rate={self.learning_rate!r}, "
                f"weight_decay={self.weight_decay!r}"
            )
        modules = tuple(self.modules)
        if not modules or len(set(modules)) != len(modules):
            raise ValueError(
                f"Argument `modules` must name distinct modules. Received: modules={modules!r}"
            )


# --- data ---------------------------------------------------------------------------------------


def _task_data(config):
    """`(train, held_out, classes, source)`."""
    from keras_recalib import data

    if config.data is not None:
        return _folder_data(config.data, config.image_size, config.data_seed)
    if config.task == "textures":
        try:
            train, held_out, classes = data.texture_patches(
                config.train_per_class,
                config.held_out_per_class,
                patch_size=config.image_size,
                seed=config.data_seed,
            )
        except (ImportError, FileNotFoundError) as error:
            raise DataError(str(error)) from None
        source = (
            f"{config.image_size}x{config.image_size} patches of scikit-image's texture "
            f"photographs ({', '.join(classes)}) with camera variation; train and held-out "
            "patches from disjoint regions"
        )
        return train, held_out, classes, source
    classes = len(data.CLASS_NAMES)
    per_class = config.train_per_class + config.held_out_per_class
    x, y = data.style_textures(per_class * classes, config.image_size, seed=config.data_seed)
    split = config.train_per_class * classes
    source = "procedurally generated style textures (keras_recalib.data.style_textures)"
    return (x[:split], y[:split]), (x[split:], y[split:]), list(data.CLASS_NAMES), source


def _folder_data(folder, image_size, seed):
    import keras

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
    except Exception as error:
        lines = [line for line in str(error).splitlines() if line.strip()]
        raise DataError(
            f"Cannot read images from the folder: {lines[0] if lines else type(error).__name__}"
            f". Received: data={str(folder)!r}"
        ) from None
    if len(classes) < 2:
        raise DataError(
            f"The image folder needs at least two class sub-folders, found {len(classes)}. "
            f"Received: data={str(folder)!r}"
        )
    if len(train_arrays[0]) == 0 or len(held_arrays[0]) == 0:
        raise DataError(
            f"The image folder has too few images to hold some out. Received: data={str(folder)!r}"
        )
    return train_arrays, held_arrays, classes, f"image folder {folder}"


# --- models and the recipe ----------------------------------------------------------------------


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


def _no_weight_decay(model):
    """Variables left out of the weight decay: all of SRM's, batch norm's scale and offset, and
    biases (SE's `fc1_bias` and `fc2_bias` included)."""
    from keras_recalib.inspect import recalibration_layers
    from keras_recalib.layers import StyleRecalibration

    srm = {
        id(variable)
        for layer in recalibration_layers(model)
        if isinstance(layer, StyleRecalibration)
        for variable in layer.trainable_weights
    }
    return [
        v
        for v in model.trainable_variables
        if id(v) in srm or v.name in ("gamma", "beta", "bias") or v.name.endswith("_bias")
    ]


def _optimizer(config, steps_per_epoch, model):
    import keras

    total = config.epochs * steps_per_epoch
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else config.learning_rate,
        decay_steps=total - warmup,
        warmup_target=config.learning_rate if warmup else None,
        warmup_steps=warmup,
    )
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay)
    optimizer.exclude_from_weight_decay(var_list=_no_weight_decay(model))
    return optimizer


# --- progress -----------------------------------------------------------------------------------


def _clock(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class _Progress:
    """What `run_experiment` reports while it runs; this base class reports nothing."""

    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stdout
        self.total_steps = 1
        self.done_steps = 0
        self.start = time.perf_counter()

    def begin(self, total_steps):
        self.total_steps = max(1, total_steps)
        self.done_steps = 0
        self.start = time.perf_counter()

    def eta(self):
        if not self.done_steps:
            return "?"
        elapsed = time.perf_counter() - self.start
        return _clock(elapsed / self.done_steps * (self.total_steps - self.done_steps))

    def steps(self, count, label, logs):
        self.done_steps += count

    def epoch(self, label, epoch, epochs, logs):
        pass

    def note(self, text):
        pass

    def end(self):
        pass


class LineProgress(_Progress):
    """One line per epoch (for logs and pipes: no progress bars, no escape codes)."""

    def epoch(self, label, epoch, epochs, logs):
        print(
            f"{label} epoch {epoch}/{epochs}: loss {logs.get('loss', float('nan')):.4f}, "
            f"train accuracy {logs.get('accuracy', float('nan')):.3f} "
            f"({_clock(time.perf_counter() - self.start)} elapsed, training ETA {self.eta()})",
            file=self.stream,
            flush=True,
        )

    def note(self, text):
        print(text, file=self.stream, flush=True)


class BarProgress(_Progress):
    """One bar over all seeds and models with an ETA, redrawn in place (for terminals)."""

    width = 28

    def steps(self, count, label, logs):
        super().steps(count, label, logs)
        done = self.done_steps / self.total_steps
        filled = int(done * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        loss = logs.get("loss", float("nan"))
        self.stream.write(
            f"\r[{bar}] {done:4.0%} {label} loss {loss:.3f} "
            f"{_clock(time.perf_counter() - self.start)} ETA {self.eta()}\x1b[K"
        )
        self.stream.flush()

    def note(self, text):
        self.stream.write(f"\r{text}\x1b[K\n")
        self.stream.flush()

    def end(self):
        self.stream.write("\n")
        self.stream.flush()


def _callback(progress, label, epochs):
    import keras

    class Report(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            progress.steps(1, label, logs or {})

        def on_epoch_end(self, epoch, logs=None):
            progress.epoch(label, epoch + 1, epochs, logs or {})

    return Report()


# --- training -----------------------------------------------------------------------------------


class _Trainer:
    """One compiled network per module, trained once per seed.

    Tracing the training step costs several CPU seconds (mostly building the optimizer's update
    graph), more than an epoch of this demo. A seed therefore does not get a new model: its
    initial weights are drawn by building a fresh network under that seed and copied into the
    compiled one, and the optimizer's state is reset to zeros; what is trained is the same as
    with a new model and a new optimizer.
    """

    def __init__(self, module, config, num_classes, steps_per_epoch):
        import keras

        self.module, self.config = module, config
        self.num_classes = num_classes
        self.model = build_demo_model(module, config.depth, num_classes, config.image_size)
        self.model.compile(
            optimizer=_optimizer(config, steps_per_epoch, self.model),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        self.model.optimizer.build(self.model.trainable_variables)
        self.steps_per_epoch = steps_per_epoch

    def train(self, seed, train, progress, label):
        import keras
        import tensorflow as tf

        config = self.config
        keras.utils.set_random_seed(seed)
        fresh = build_demo_model(self.module, config.depth, self.num_classes, config.image_size)
        self.model.set_weights(fresh.get_weights())
        del fresh
        for variable in self.model.optimizer.variables:
            variable.assign(np.zeros(variable.shape, variable.dtype))
        x, y = train
        batches = (
            tf.data.Dataset.from_tensor_slices((x, y))
            .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
            .batch(config.batch_size, drop_remainder=True)
            .repeat()
            .prefetch(2)
        )
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        history = self.model.fit(
            batches,
            epochs=config.epochs,
            steps_per_epoch=self.steps_per_epoch,
            verbose=0,
            shuffle=False,  # the dataset is shuffled above, with the seed
            callbacks=[_callback(progress, label, config.epochs)],
        )
        seconds = time.perf_counter() - start_wall
        cpu_seconds = time.process_time() - start_cpu
        epochs = [
            {"loss": float(loss), "accuracy": float(accuracy)}
            for loss, accuracy in zip(
                history.history["loss"], history.history["accuracy"], strict=True
            )
        ]
        return epochs, seconds, cpu_seconds

    def held_out_accuracy(self, held_out):
        x, y = held_out
        logits = self.model.predict(x, batch_size=256, verbose=0)
        finite = bool(np.all(np.isfinite(logits)))
        return float(np.mean(logits.argmax(1) == y)), finite


# --- statistics ---------------------------------------------------------------------------------


def _summary(values):
    values = np.asarray(values, np.float64)
    return {
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if len(values) > 1 else None,
        "min": float(values.min()),
        "max": float(values.max()),
    }


def compare(baseline, other, baseline_name="none", other_name="srm"):
    """How `other`'s per-seed accuracies differ from `baseline`'s, against the seed spread.

    The difference exceeds the spread when |mean difference| > 2 * pooled std (`CRITERION`).

    Args:
        baseline, other: held-out accuracies, one per seed, in the same seed order.
        baseline_name, other_name: module names for the verdict.

    Returns:
        A dict: `module`, `baseline`, `mean_difference`, `per_seed_differences`, `pooled_std`
        (None for one seed), `threshold` (2 * pooled std, or None), `exceeds_spread` (bool, or
        None for one seed), `borderline` (the difference lies within `BORDERLINE` of the
        threshold, relative to it, so the verdict could flip on another machine; None for one
        seed) and `verdict` (a sentence).
    """
    a, b = np.asarray(baseline, np.float64), np.asarray(other, np.float64)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError(
            "Arguments `baseline` and `other` need one accuracy per seed each, as many. "
            f"Received: baseline={list(a)}, other={list(b)}"
        )
    difference = float(b.mean() - a.mean())
    shown = {"none": "the plain network"}
    names = (shown.get(other_name, other_name.upper()), shown.get(baseline_name, baseline_name))
    if len(a) > 1:
        pooled = float(np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2))
        threshold = 2 * pooled
        exceeds = bool(abs(difference) > threshold)
        borderline = bool(abs(abs(difference) - threshold) <= BORDERLINE * threshold)
        if borderline:
            verdict = (
                f"{names[0]} differs from {names[1]} by {difference:+.4f}, close to twice the "
                f"seed spread ({threshold:.4f}): too close to call with {len(a)} seeds (more "
                "seeds, --seeds, would decide)."
            )
        elif exceeds:
            better = "higher" if difference > 0 else "lower"
            verdict = (
                f"{names[0]} is {better} than {names[1]} by {abs(difference):.4f}, more than "
                f"twice the seed spread ({threshold:.4f}): a difference these runs support."
            )
        else:
            verdict = (
                f"{names[0]} differs from {names[1]} by {difference:+.4f}, within twice the "
                f"seed spread ({threshold:.4f}): no difference can be claimed from these runs."
            )
    else:
        pooled = threshold = exceeds = borderline = None
        verdict = (
            f"{names[0]} differs from {names[1]} by {difference:+.4f} with one seed: no spread "
            "to judge it against."
        )
    return {
        "module": other_name,
        "baseline": baseline_name,
        "mean_difference": difference,
        "per_seed_differences": [float(d) for d in b - a],
        "pooled_std": pooled,
        "threshold": threshold,
        "exceeds_spread": exceeds,
        "borderline": borderline,
        "verdict": verdict,
    }


# --- export -------------------------------------------------------------------------------------


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


def _export(model, module, train, held_out, folder):
    from keras_recalib import export, inspect

    (x_train, _), (x_test, y_test) = train, held_out
    folder.mkdir(parents=True, exist_ok=True)
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
    int8_logits = export.run_tflite(folder / "int8.tflite", x_test)
    row = {
        "folder": str(folder),
        "int8_accuracy": float(np.mean(int8_logits.argmax(1) == y_test)),
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
        "gates_plot": None,
    }
    if module != "none":
        results = inspect.gates(model, x_test[:256])
        inspect.plot_gates(results, folder / "gates.png", title=model.name)
        (folder / "gates.txt").write_text(inspect.summary(results) + "\n")
        row["gates_plot"] = str(folder / "gates.png")
    return row


# --- the experiment -----------------------------------------------------------------------------


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment():
    """The machine and the versions a result was produced with."""
    import keras
    import tensorflow as tf

    import keras_recalib

    try:
        from importlib.metadata import version

        skimage_version = version("scikit-image")
    except Exception:  # not installed: only the style_textures task and --data then
        skimage_version = None
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "cpu_count": cores,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "scikit_image": skimage_version,
        "keras_recalib": keras_recalib.__version__,
    }


def run_experiment(config=None, out=None, progress=None):
    """Trains, evaluates and compares every module of `config` over its seeds.

    Args:
        config: a `DemoConfig`. Defaults to `DemoConfig()`.
        out: a folder for `results.json` and, with `config.export`, the exported networks; None
            writes nothing (then `config.export` must be False).
        progress: a `LineProgress` or `BarProgress`, or None for silence.

    Returns:
        The results dictionary (schema `SCHEMA`, described in docs/demo.md).
    """
    import json
    import pathlib

    import keras

    from keras_recalib.models.complexity import trainable_parameters

    config = config or DemoConfig()
    config.validate()
    if config.export and out is None:
        raise ValueError(
            "Exporting needs an output folder. Received: out=None with config.export=True"
        )
    progress = progress or _Progress()
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    train, held_out, classes, source = _task_data(config)
    steps_per_epoch = len(train[0]) // config.batch_size
    if steps_per_epoch < 1:
        raise DataError(
            f"The training set ({len(train[0])} images) is smaller than one batch. "
            f"Received: batch_size={config.batch_size}"
        )
    seeds = list(range(config.seeds))
    progress.begin(len(config.modules) * len(seeds) * config.epochs * steps_per_epoch)
    progress.note(
        f"data: {source}: {len(train[0])} training and {len(held_out[0])} held-out images, "
        f"{len(classes)} classes; {len(config.modules)} models x {len(seeds)} seeds x "
        f"{config.epochs} epochs"
    )
    models = []
    for module in config.modules:
        trainer = _Trainer(module, config, len(classes), steps_per_epoch)
        entry = {
            "module": module,
            "name": trainer.model.name,
            "parameters": trainable_parameters(trainer.model),
            "runs": [],
            "export": None,
        }
        for seed in seeds:
            label = f"{module} seed {seed}"
            epochs, seconds, cpu_seconds = trainer.train(seed, train, progress, label)
            accuracy, finite_logits = trainer.held_out_accuracy(held_out)
            finite = finite_logits and all(math.isfinite(e["loss"]) for e in epochs)
            entry["runs"].append(
                {
                    "seed": seed,
                    "accuracy": accuracy,
                    "final_loss": epochs[-1]["loss"],
                    "final_train_accuracy": epochs[-1]["accuracy"],
                    "finite": finite,
                    "epochs": epochs,
                    "train_seconds": seconds,
                    "train_cpu_seconds": cpu_seconds,
                }
            )
            progress.note(f"{label}: held-out accuracy {accuracy:.3f}")
            if config.export and seed == seeds[0]:
                progress.note(f"{module}: exporting, converting and verifying (seed {seed})")
                entry["export"] = _export(
                    trainer.model, module, train, held_out, pathlib.Path(out) / trainer.model.name
                )
        entry["accuracy"] = _summary([run["accuracy"] for run in entry["runs"]])
        models.append(entry)
        keras.backend.clear_session()
    baseline = models[0]
    comparisons = [
        compare(
            [r["accuracy"] for r in baseline["runs"]],
            [r["accuracy"] for r in entry["runs"]],
            baseline["module"],
            entry["module"],
        )
        for entry in models[1:]
    ]
    progress.end()
    config_record = dataclasses.asdict(config)
    config_record["modules"] = list(config.modules)
    config_record["seeds"] = seeds
    results = {
        "schema": SCHEMA,
        "config": config_record,
        "data": {
            "task": "folder" if config.data is not None else config.task,
            "source": source,
            "classes": list(classes),
            "train_images": int(len(train[0])),
            "held_out_images": int(len(held_out[0])),
            "image_size": config.image_size,
        },
        "environment": environment(),
        "parameter_convention": PARAMETER_CONVENTION,
        "criterion": CRITERION,
        "models": models,
        "comparisons": comparisons,
        "timing": {
            "wall_seconds": time.perf_counter() - start_wall,
            "cpu_seconds": time.process_time() - start_cpu,
        },
    }
    if out is not None:
        out = pathlib.Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        (out / "results.txt").write_text(format_results(results) + "\n")
    return results


# --- tables -------------------------------------------------------------------------------------


def _label(module):
    return "plain" if module == "none" else module


def format_results(results, markdown=False):
    """The accuracy table, the verdicts and (when exported) the export table, as text."""
    from keras_recalib._table import format_table

    comparisons = {c["module"]: c for c in results["comparisons"]}
    rows = []
    for entry in results["models"]:
        summary = entry["accuracy"]
        spread = "" if summary["std"] is None else f" ± {summary['std']:.3f}"
        comparison = comparisons.get(entry["module"])
        if comparison is None:
            versus = "baseline"
        elif comparison["exceeds_spread"] is None:
            versus = f"{comparison['mean_difference']:+.3f}"
        else:
            word = "exceeds" if comparison["exceeds_spread"] else "within"
            versus = f"{comparison['mean_difference']:+.3f} ({word} 2x spread)"
            if comparison["borderline"]:
                versus = f"{comparison['mean_difference']:+.3f} (borderline: too close to call)"
        rows.append(
            [
                _label(entry["module"]),
                f"{entry['parameters']:,}",
                f"{summary['mean']:.3f}{spread}",
                " ".join(f"{run['accuracy']:.3f}" for run in entry["runs"]),
                versus,
            ]
        )
    baseline = _label(results["models"][0]["module"])
    header = ["model", "params", "held-out acc", "per seed", f"vs {baseline}"]
    lines = [format_table(header, rows, markdown=markdown, align="lrrrl")]
    lines.append("")
    # In Markdown, consecutive lines would run into one paragraph.
    lines += [("- " if markdown else "") + c["verdict"] for c in results["comparisons"]]
    exported = [e for e in results["models"] if e["export"] is not None]
    if exported:
        columns = [
            ("int8 acc", "int8_accuracy", "{:.3f}"),
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
        export_rows = [
            [_label(e["module"])] + [fmt.format(e["export"][key]) for _, key, fmt in columns]
            for e in exported
        ]
        lines.append("")
        lines.append(f"Export of seed {results['config']['seeds'][0]}:")
        if markdown:
            lines.append("")
        lines.append(
            format_table(["model"] + [title for title, _, _ in columns], export_rows, markdown)
        )
    return "\n".join(lines)
