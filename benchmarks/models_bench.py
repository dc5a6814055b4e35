"""Model level: SRM-ResNet-50 against the same builder's plain ResNet-50 and a floor model.

Keras inference and training-step times (graph mode and XLA), TFLite inference with XNNPACK
(float32 and full int8, converted with `keras_recalib.export.convert_tflite`), and the peak
tensor memory of a training step, measured in a fresh subprocess per model with TensorFlow's
BFC allocator on the CPU (`TF_CPU_ALLOCATOR_USE_BFC=true`, which makes
`tf.config.experimental.get_memory_info("CPU:0")` report allocator statistics; the default
CPU allocator reports zeros). The process's peak RSS is recorded too but says little: the
BFC allocator keeps the memory it touched, so RSS is about the same for every model.
"""

import argparse
import concurrent.futures
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # noqa: E402
    configure_tensorflow,
    interleaved,
    quiet_environment,
    run_json_subprocess,
    summary,
)

MODELS = ("plain", "floor", "srm")
NUM_CLASSES = 1000


def _pixel_gate():
    import keras
    import tensorflow as tf

    class PixelGate(keras.layers.Layer):
        """`x * sigmoid(x[:, 0, 0, :])`: a data-dependent per-(batch, channel) gate computed
        from one pixel, i.e. the product every gate module pays without any statistics; the
        model-level floor."""

        def call(self, x):
            return x * tf.sigmoid(x[:, :1, :1, :])

    return PixelGate()


def _build(name, size):
    from keras_recalib.models import resnet50

    recalibration = {"plain": None, "floor": _pixel_gate, "srm": "srm"}[name]
    return resnet50(recalibration, num_classes=NUM_CLASSES, input_shape=(size, size, 3))


def _train_step(tf, keras, model, jit):
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    optimizer.build(model.trainable_variables)

    def step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(
                keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
            )
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    return tf.function(step, jit_compile=jit)


def _data(batch, size, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, size, size, 3)).astype("float32")
    y = rng.integers(0, NUM_CLASSES, batch).astype("int32")
    return x, y


def keras_timings(config, log):
    import keras
    import tensorflow as tf

    x_np, y_np = _data(config.model_batch, config.model_size)
    x, y = tf.constant(x_np), tf.constant(y_np)
    models = {}
    for name in config.model_names:
        keras.utils.set_random_seed(0)
        models[name] = _build(name, config.model_size)
    results = {}
    inference = {}
    for name, model in models.items():
        for mode, jit in (("graph", False), ("xla", True)):
            fn = tf.function(lambda t, m=model: m(t, training=False), jit_compile=jit)
            inference[f"{name}/{mode}"] = (lambda f: lambda: f(x))(fn)
    log("  Keras inference")
    samples = interleaved(inference, config.warmup, config.model_repeats, log=config.verbose_log)
    results["inference"] = {k: summary(v) for k, v in samples.items()}
    training = {}
    for name, model in models.items():
        for mode, jit in (("graph", False), ("xla", True)):
            if jit and not config.xla_training:
                continue
            step = _train_step(tf, keras, model, jit)
            training[f"{name}/{mode}"] = (lambda f: lambda: f(x, y))(step)
    log("  Keras training step")
    samples = interleaved(training, config.warmup, config.model_repeats, log=config.verbose_log)
    results["train_step"] = {k: summary(v) for k, v in samples.items()}
    return results


def _interpreter(path, threads):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # fallback only: tf.lite.Interpreter is deprecated
        from tensorflow.lite import Interpreter
    return Interpreter(model_path=str(path), num_threads=threads)


def untimed(config, folder, log):
    """TFLite conversions (one subprocess per model, every quantization) and training-step
    memory probes (one fresh subprocess per model), two at a time: none of them is timed.

    Returns ({label: path}, {label: conversion seconds}, {model: memory figures}).
    """
    quantizations = "float32,int8" if config.tflite_int8 else "float32"
    jobs = []
    for name in config.model_names:
        jobs.append(
            (
                "convert",
                name,
                [
                    sys.executable,
                    os.path.abspath(__file__),
                    "convert",
                    "--model",
                    name,
                    "--threads",
                    str(config.threads),
                    "--size",
                    str(config.model_size),
                    "--quantization",
                    quantizations,
                    "--folder",
                    folder,
                    "--calibration",
                    str(config.calibration_samples),
                ],
                None,
            )
        )
        jobs.append(
            (
                "memory",
                name,
                [
                    sys.executable,
                    os.path.abspath(__file__),
                    "memory",
                    "--model",
                    name,
                    "--threads",
                    str(config.threads),
                    "--batch",
                    str(config.model_batch),
                    "--size",
                    str(config.model_size),
                ],
                {"TF_CPU_ALLOCATOR_USE_BFC": "true"},
            )
        )
    log(f"  TFLite conversions and memory probes ({len(jobs)} subprocesses, 2 at a time)")
    with concurrent.futures.ThreadPoolExecutor(config.conversion_workers) as pool:
        done = list(pool.map(lambda job: run_json_subprocess(job[2], env=job[3]), jobs))
    paths, seconds, memory = {}, {}, {}
    for (kind, name, _, _), info in zip(jobs, done, strict=True):
        if kind == "convert":
            for quantization, entry in info.items():
                paths[f"{name}/{quantization}"] = entry["path"]
                seconds[f"{name}/{quantization}"] = entry["seconds"]
        else:
            memory[name] = info
    return paths, seconds, memory


def tflite_timings(config, paths, seconds, log):
    """Times every converted file with XNNPACK, interleaved."""
    x_np, _ = _data(config.model_batch, config.model_size)
    functions, interpreters = {}, []
    for label, path in paths.items():
        interpreter = _interpreter(path, config.threads)
        detail = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(detail["index"], list(x_np.shape), strict=False)
        interpreter.allocate_tensors()
        interpreter.set_tensor(detail["index"], x_np)
        interpreters.append(interpreter)
        functions[label] = interpreter.invoke
    log("  TFLite inference")
    samples = interleaved(functions, config.warmup, config.model_repeats, log=config.verbose_log)
    return {
        "inference": {k: summary(v) for k, v in samples.items()},
        "file_bytes": {k: os.path.getsize(p) for k, p in paths.items()},
        "conversion_s": seconds,
    }


def _convert(args):
    quiet_environment()
    configure_tensorflow(args.threads)
    import keras

    from keras_recalib.export import convert_tflite

    keras.utils.set_random_seed(0)
    model = _build(args.model, args.size)
    out = {}
    for quantization in args.quantization.split(","):
        calibration = None
        if quantization != "float32":
            calibration = _data(args.calibration, args.size, seed=1)[0]
        path = os.path.join(args.folder, f"{args.model}_{quantization}.tflite")
        start = time.perf_counter()
        convert_tflite(
            model,
            path,
            quantization=None if quantization == "float32" else quantization,
            representative_data=calibration,
            input_shape=(args.size, args.size, 3),
        )
        out[quantization] = {"path": path, "seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps(out))


def _memory_probe(args):
    import resource

    quiet_environment()
    tf = configure_tensorflow(args.threads)
    import keras

    keras.utils.set_random_seed(0)
    model = _build(args.model, args.size)
    x_np, y_np = _data(args.batch, args.size)
    x, y = tf.constant(x_np), tf.constant(y_np)
    step = _train_step(tf, keras, model, jit=False)
    step(x, y)  # trace, allocate optimizer slots and oneDNN caches
    resident = tf.config.experimental.get_memory_info("CPU:0")["current"]
    peaks = []
    for _ in range(3):  # the peak depends on the inter-op schedule: median of three steps
        tf.config.experimental.reset_memory_stats("CPU:0")
        step(x, y)
        peaks.append(tf.config.experimental.get_memory_info("CPU:0")["peak"])
    peak = int(np.median(peaks))
    print(
        json.dumps(
            {
                "allocator_peak_bytes": peak,
                "allocator_resident_bytes": resident,
                "step_peak_bytes": peak - resident,
                "step_peaks_bytes": [p - resident for p in peaks],
                "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            }
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["memory", "convert"])
    parser.add_argument("--model", choices=MODELS, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--quantization", default="float32", help="comma-separated")
    parser.add_argument("--folder")
    parser.add_argument("--calibration", type=int, default=8)
    arguments = parser.parse_args()
    (_memory_probe if arguments.command == "memory" else _convert)(arguments)
