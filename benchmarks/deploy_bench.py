"""Model level: where users deploy, and what training costs.

Deployment: ResNet-50 (`keras_recalib.models.resnet50`) plain, + SE, + ECA, + SRM and + the
statistics-free floor gate, and MobileNetV2 (`keras.applications.MobileNetV2(weights=None)`)
plain and with `insert_recalibration(model, "se"/"eca"/"srm")`, each in Keras graph mode
(`tf.function`), XLA (`jit_compile=True`), and TFLite float32 and int8 run by the LiteRT
interpreter with its default XNNPACK delegate. Every group (one model family, one runtime, one
batch and thread count) is timed interleaved; every variant's CPU time is divided by the plain
model's round by round (`_common.paired_ratio`).

Training: step time (graph, XLA) and the peak tensor memory of a training step, measured in a
fresh subprocess per model with TensorFlow's BFC allocator on the CPU
(`TF_CPU_ALLOCATOR_USE_BFC=true`, which makes `tf.config.experimental.get_memory_info("CPU:0")`
report allocator statistics; the default CPU allocator reports zeros).

TFLite conversions are not timed: `prepare()` converts in subprocesses, two at a time, into a
cache folder (`benchmarks/.cache/`, keyed by the package's source hash, the model, its input
size and the quantization), so the two runs of `run.py --repeat-check` convert once.
"""

import argparse
import collections
import concurrent.futures
import glob
import hashlib
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _common import (  # noqa: E402
    configure_tensorflow,
    interleaved,
    paired_ratio,
    quiet_environment,
    run_json_subprocess,
    summary,
)

NUM_CLASSES = 1000
FAMILIES = {
    "resnet50": ("plain", "floor", "se", "eca", "srm"),
    "mobilenetv2": ("plain", "se", "eca", "srm"),
}
RUNTIMES = ("graph", "xla", "tflite_float32", "tflite_int8")
QUANTIZATIONS = ("float32", "int8")
TRAIN_VARIANTS = ("plain", "floor", "se", "srm", "srm_lean")
# Training-step peak memory: this many fresh processes per variant, this many steps each.
MEMORY_PROCESSES = 2
MEMORY_STEPS = 6
CACHE = os.path.join(HERE, ".cache", "tflite")


def _pixel_gate(**kwargs):
    import keras
    import tensorflow as tf

    class PixelGate(keras.layers.Layer):
        """`x * sigmoid(x[:, :1, :1, :])`: a data-dependent per-(batch, channel) gate computed
        from one pixel, i.e. the product every gate module pays without any statistics; the
        model-level floor."""

        def call(self, x):
            return x * tf.sigmoid(x[:, :1, :1, :])

    return PixelGate(**kwargs)


def has_memory_lean():
    """Whether `resnet50(..., memory_lean=True)` exists in this checkout."""
    from keras_recalib.models import resnet50

    try:
        resnet50("srm", memory_lean=True, num_classes=10, input_shape=(32, 32, 3))
    except TypeError:
        return False
    except ValueError as error:
        # Without the option the keyword reaches the module, which refuses it by name.
        if "Unrecognized keyword arguments" in str(error):
            return False
        raise
    return True


def build(family, variant, size):
    import keras

    import keras_recalib as kr
    from keras_recalib.models import insert_recalibration, resnet50

    keras.utils.set_random_seed(0)
    shape = (size, size, 3)
    if family == "resnet50":
        if variant == "srm_lean":
            model = resnet50("srm", num_classes=NUM_CLASSES, input_shape=shape, memory_lean=True)
        else:
            module = {"plain": None, "floor": _pixel_gate}.get(variant, variant)
            model = resnet50(module, num_classes=NUM_CLASSES, input_shape=shape)
    else:
        # Logits, as ResNet-50's: a softmax over 1000 classes of a random network is about
        # 1/1000 everywhere, which int8 rounds to zero, so its cosine would say nothing.
        base = keras.applications.MobileNetV2(
            weights=None, input_shape=shape, classes=NUM_CLASSES, classifier_activation=None
        )
        model = base if variant == "plain" else insert_recalibration(base, variant)
    # SRM's official initialisation (zero channel-wise weights) makes its gate a constant
    # until trained; random weights make the statistics matter for the accuracy checks.
    rng = np.random.default_rng(0)
    for layer in model._flatten_layers():
        if isinstance(layer, kr.StyleRecalibration):
            layer.cfc.assign(rng.normal(0.0, 1.0, layer.cfc.shape).astype("float32"))
    return model


def _data(batch, size, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, size, size, 3)).astype("float32")
    y = rng.integers(0, NUM_CLASSES, batch).astype("int32")
    return x, y


def group(samples, baseline, extra_pairs=()):
    """One interleaved group's JSON: every function's wall and CPU times, and the paired CPU
    ratio of every function to `baseline` (plus `extra_pairs` (name, other)); wall-time ratios
    are kept apart (`wall_ratios`), shown but not repeat-checked: with two threads or a busy
    machine wall time also measures waiting for a core."""
    pairs = [(n, baseline) for n in samples if n != baseline] + list(extra_pairs)
    pairs = [(a, b) for a, b in pairs if a in samples and b in samples]
    return {
        "times": {k: summary(v) for k, v in samples.items()},
        "ratios": {_label(a, b, baseline): paired_ratio(samples, a, b, "cpu") for a, b in pairs},
        "wall_ratios": {
            _label(a, b, baseline): paired_ratio(samples, a, b, "wall") for a, b in pairs
        },
    }


def _label(name, other, baseline):
    return name if other == baseline else f"{name}/{other}"


# ---- TFLite conversion cache ------------------------------------------------------------


def source_hash():
    """sha256 of the package's Python sources, of the model builders here and of
    TensorFlow's version."""
    import inspect
    from importlib import metadata

    root = os.path.dirname(HERE)
    files = sorted(glob.glob(os.path.join(root, "keras_recalib", "**", "*.py"), recursive=True))
    digest = hashlib.sha256(metadata.version("tensorflow").encode())
    for path in files:
        with open(path, "rb") as f:
            digest.update(os.path.relpath(path, root).encode() + b"\0" + f.read())
    for function in (_pixel_gate, build, _data):
        digest.update(inspect.getsource(function).encode())
    return digest.hexdigest()[:16]


def cache_path(family, variant, quantization, size, calibration, key):
    name = f"{family}-{variant}-{size}px-{quantization}"
    if quantization == "int8":
        name += f"-cal{calibration}"
    return os.path.join(CACHE, f"{name}-{key}.tflite")


def prepare(config, log, memory=True):
    """Untimed work, in subprocesses two at a time: TFLite conversions missing from the cache
    and the training-memory probes. Returns ({family/variant/quantization: path},
    {variant: memory figures})."""
    key = source_hash()
    os.makedirs(CACHE, exist_ok=True)
    paths, jobs = {}, []
    for family, variants in config.families.items():
        for variant in variants:
            missing = []
            for q in QUANTIZATIONS:
                path = cache_path(family, variant, q, config.size, config.calibration, key)
                paths[f"{family}/{variant}/{q}"] = path
                if not os.path.exists(path):
                    missing.append(q)
            if missing:
                argv = [sys.executable, os.path.abspath(__file__), "convert"]
                argv += ["--family", family, "--variant", variant, "--size", str(config.size)]
                argv += ["--quantization", ",".join(missing), "--key", key]
                argv += ["--calibration", str(config.calibration)]
                jobs.append((f"convert {family}/{variant}", argv, None))
    for variant in config.train_variants if memory else ():
        argv = [sys.executable, os.path.abspath(__file__), "memory", "--variant", variant]
        argv += ["--batch", str(config.train_batch), "--size", str(config.train_size)]
        argv += ["--steps", str(MEMORY_STEPS)]
        for process in range(MEMORY_PROCESSES):
            label = f"memory {variant} {process}"
            jobs.append((label, argv, {"TF_CPU_ALLOCATOR_USE_BFC": "true"}))
    log(f"  {len(jobs)} untimed subprocesses (conversions missing from the cache, memory probes)")

    def work(job):
        start = time.perf_counter()
        out = run_json_subprocess(job[1], env=job[2])
        log(f"    {job[0]}: {time.perf_counter() - start:.0f}s")
        return out

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        done = list(pool.map(work, jobs))
    processes = {}
    for (label, _, _), info in zip(jobs, done, strict=True):
        if label.startswith("memory ") and "unavailable" not in info:
            processes.setdefault(label.split()[1], []).append(info)
    return paths, {variant: pool_memory(runs) for variant, runs in processes.items()}


def pool_memory(processes):
    """One variant's step peaks from several processes: every step's peak above the resident
    memory, pooled, with their median, minimum and maximum (bytes)."""
    peaks = sorted(p for info in processes for p in info["step_peaks_bytes"])
    return {
        "step_peak_bytes": int(np.median(peaks)),
        "step_peak_min_bytes": peaks[0],
        "step_peak_max_bytes": peaks[-1],
        "step_peaks_bytes": peaks,
        "processes": processes,
    }


def memory_ratio(memory, variant, baseline="plain"):
    """`variant`'s step peak over `baseline`'s, in `paired_ratio`'s format: the ratio of the
    medians, and as its interval the extreme range (lowest peak over the baseline's highest,
    highest over its lowest) of every measured step: the peaks cannot be paired, and the
    spread between processes (the executor's order differs) is larger than within one."""
    if variant not in memory or baseline not in memory:
        return None
    a, b = memory[variant], memory[baseline]
    return {
        "ratio": a["step_peak_bytes"] / b["step_peak_bytes"],
        "low": a["step_peak_min_bytes"] / b["step_peak_max_bytes"],
        "high": a["step_peak_max_bytes"] / b["step_peak_min_bytes"],
        "n": min(len(a["step_peaks_bytes"]), len(b["step_peaks_bytes"])),
        "clock": "memory",
    }


def _convert(args):
    configure_tensorflow(1)
    from keras_recalib.export import convert_tflite, verify_tflite

    model = build(args.family, args.variant, args.size)
    # Checked against Keras on inputs the calibration did not see.
    held_out = _data(4, args.size, seed=2)[0]
    out = {}
    for q in args.quantization.split(","):
        # Random calibration images: int8 scales then come from noise, not photographs,
        # which changes the values but not the ops or their cost.
        calibration = _data(args.calibration, args.size, seed=1)[0] if q == "int8" else None
        path = cache_path(args.family, args.variant, q, args.size, args.calibration, args.key)
        start = time.perf_counter()
        # From the Keras model, as users convert: convert_tflite traces it for TFLite (and for
        # int8 activations), which a SavedModel written for TensorFlow would not be.
        convert_tflite(
            model,
            path + ".part",
            quantization=None if q == "float32" else q,
            representative_data=calibration,
            input_shape=(args.size, args.size, 3),
        )
        seconds = round(time.perf_counter() - start, 1)
        report = verify_tflite(model, path + ".part", held_out, repeats=1)
        check = {
            "seconds": seconds,
            "max_abs_error": float(report.max_abs_error),
            "cosine": float(report.cosine_similarity),
            "meets_contract": bool(report.meets_contract),
        }
        with open(path + ".json", "w") as f:  # kept next to the cached file
            json.dump(check, f)
        os.replace(path + ".part", path)  # a killed conversion leaves no half file
        out[q] = {"path": path, **check}
    print(json.dumps(out))


# ---- TFLite delegation -------------------------------------------------------------------


def interpreter(path, threads):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path), num_threads=threads)


def delegation(path):
    """Which ops of a .tflite file XNNPACK runs and which stay on TFLite's builtin kernels.

    After `allocate_tensors()` the interpreter's node list holds every op of the file plus one
    `DELEGATE` node per XNNPACK partition; the replaced ops stay listed but no longer run.
    Walking back from the graph outputs, a tensor that a DELEGATE node produces is the
    delegate's, any other comes from an op that still runs on its own: those are the builtin
    ops. (`_get_ops_details` is LiteRT's only view of the executed graph; the file's own op
    list is `keras_recalib.export.tflite_ops`.)
    """
    it = interpreter(path, 1)
    it.allocate_tensors()
    ops = it._get_ops_details()
    by_delegate, by_op = {}, {}
    for op in ops:
        target = by_delegate if op["op_name"] == "DELEGATE" else by_op
        for t in op["outputs"]:
            target[int(t)] = op
    executed, seen = {}, set()
    stack = [int(d["index"]) for d in it.get_output_details()]
    while stack:
        t = stack.pop()
        if t in seen:
            continue
        seen.add(t)
        op = by_delegate.get(t) or by_op.get(t)
        if op is None or op["index"] in executed:
            continue
        executed[op["index"]] = op
        stack.extend(int(i) for i in op["inputs"] if i >= 0)
    builtin = collections.Counter(
        f"{o['op_name']} ({np.dtype(o['operand_types'][0]).name if o['operand_types'] else '-'})"
        for o in executed.values()
        if o["op_name"] != "DELEGATE"
    )
    file_ops = sum(o["op_name"] != "DELEGATE" for o in ops)
    check = {}
    if os.path.exists(str(path) + ".json"):  # the conversion's comparison with Keras
        with open(str(path) + ".json") as f:
            check = json.load(f)
    return {
        "check": check,
        "file_ops": file_ops,
        "xnnpack_partitions": sum(o["op_name"] == "DELEGATE" for o in executed.values()),
        "xnnpack_ops": file_ops - sum(builtin.values()),
        "builtin_ops": dict(sorted(builtin.items())),
    }


# ---- timed sections ----------------------------------------------------------------------


def deploy(config, log):
    """The deployment groups of this process's thread count (`config.threads`)."""
    import tensorflow as tf

    settings = [s for s in config.deploy_settings if s[1] == config.threads]
    paths = config.tflite_paths
    out = {"settings": {}, "delegates": {}}
    for family, variants in config.families.items():
        models = {v: build(family, v, config.size) for v in variants}
        for batch, threads in settings:
            setting = f"batch {batch}, {threads} thread{'s' if threads > 1 else ''}"
            x = tf.constant(_data(batch, config.size)[0])
            for runtime in RUNTIMES:
                if runtime == "xla" and (batch, threads) not in config.xla_settings:
                    continue  # each XLA compilation of a model costs 10-30 s here
                functions, keep = {}, []
                for variant, model in models.items():
                    if runtime.startswith("tflite"):
                        it = interpreter(paths[f"{family}/{variant}/{runtime[7:]}"], threads)
                        detail = it.get_input_details()[0]
                        it.resize_tensor_input(detail["index"], list(x.shape), strict=False)
                        it.allocate_tensors()
                        it.set_tensor(detail["index"], x.numpy())
                        keep.append(it)
                        functions[variant] = it.invoke
                    else:
                        fn = tf.function(
                            lambda t, m=model: m(t, training=False),
                            jit_compile=runtime == "xla",
                        )
                        functions[variant] = (lambda f, t: lambda: f(t))(fn, x)
                log(f"  {family}, {setting}, {runtime}")
                samples = interleaved(
                    functions, config.warmup, config.rounds, log=config.verbose_log
                )
                extra = [("srm", "se")] if "se" in functions else []
                entry = group(samples, "plain", extra)
                out["settings"].setdefault(setting, {}).setdefault(family, {})[runtime] = entry
    if config.threads == 1:  # delegation does not depend on the thread count: recorded once
        for label, path in paths.items():
            out["delegates"][label] = delegation(path)
    return out


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


def train(config, log):
    """Training-step times of ResNet-50 plain / floor / SE / SRM (/ SRM memory-lean), graph
    and XLA, one interleaved group per mode."""
    import keras
    import tensorflow as tf

    lean = has_memory_lean()
    variants = [v for v in config.train_variants if v != "srm_lean" or lean]
    x_np, y_np = _data(config.train_batch, config.train_size)
    x, y = tf.constant(x_np), tf.constant(y_np)
    models = {v: build("resnet50", v, config.train_size) for v in variants}
    out = {"batch": config.train_batch, "size": config.train_size, "variants": variants}
    out.update(memory_processes=MEMORY_PROCESSES, memory_steps=MEMORY_STEPS)
    for mode in ("graph", "xla"):
        functions = {}
        for variant, model in models.items():
            if mode == "xla" and variant not in config.train_xla_variants:
                continue  # compiling a training step under XLA costs about a minute here
            step = _train_step(tf, keras, model, mode == "xla")
            functions[variant] = (lambda f: lambda: f(x, y))(step)
        log(f"  training step, {mode}")
        samples = interleaved(functions, config.warmup, config.train_rounds, log=config.verbose_log)
        extra = [("srm_lean", "srm")] if "srm_lean" in functions else []
        out[mode] = group(samples, "plain", extra)
    return out


def _memory_probe(args):
    import resource

    tf = configure_tensorflow(1)
    import keras

    if args.variant == "srm_lean" and not has_memory_lean():
        print(json.dumps({"unavailable": "resnet50(..., memory_lean=True) does not exist"}))
        return
    model = build("resnet50", args.variant, args.size)
    x_np, y_np = _data(args.batch, args.size)
    x, y = tf.constant(x_np), tf.constant(y_np)
    step = _train_step(tf, keras, model, jit=False)
    step(x, y)  # trace, allocate optimizer slots and oneDNN caches
    resident = tf.config.experimental.get_memory_info("CPU:0")["current"]
    peaks = []
    for _ in range(args.steps):  # the peak depends on the executor's order: several steps
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
    quiet_environment()
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["memory", "convert"])
    parser.add_argument("--family", default="resnet50", choices=list(FAMILIES))
    parser.add_argument("--variant", required=True)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--quantization", default="float32", help="comma-separated")
    parser.add_argument("--key")
    parser.add_argument("--calibration", type=int, default=8)
    parser.add_argument("--steps", type=int, default=MEMORY_STEPS)
    arguments = parser.parse_args()
    (_memory_probe if arguments.command == "memory" else _convert)(arguments)
