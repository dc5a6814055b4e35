"""Training-step peak memory and time of `resnet50(..., memory_lean=True)` against the normal
SRM-ResNet-50 and the plain ResNet-50.

Each model runs in a fresh subprocess (the allocator's statistics and TensorFlow's thread pools
are per process) with TensorFlow's BFC allocator on the CPU (`TF_CPU_ALLOCATOR_USE_BFC=true`,
which makes `tf.config.experimental.get_memory_info("CPU:0")` report allocator statistics; the
default CPU allocator reports zeros), as `models_bench.py` measures. A training step is a
`tf.function` (graph mode, no XLA) of the forward pass, the loss, the gradient and an SGD
update. Reported per model: the step's allocator peak above what is resident between steps
(weights, optimizer slots, caches; median of the measured steps), and the median process CPU
time and wall time of a step.

    python benchmarks/lean_probe.py                      # plain, srm, srm lean; batch 8, 224
    python benchmarks/lean_probe.py --models srm,srm-lean --steps 3 --size 112

`measure(model_name, memory_lean, batch, size, threads, steps, jit)` runs one model in the
calling process (call it in a fresh process: the allocator statistics are per process);
`probe(...)` runs it in a subprocess and returns its dict.
"""

import argparse
import json
import os
import subprocess
import sys
import time

for _key, _value in (("TF_CPP_MIN_LOG_LEVEL", "2"), ("KERAS_BACKEND", "tensorflow")):
    os.environ.setdefault(_key, _value)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from deploy_bench import NUM_CLASSES, _train_step  # noqa: E402

# name -> (recalibration, memory_lean)
MODELS = {
    "plain": (None, False),
    "srm": ("srm", False),
    "srm-lean": ("srm", True),
}
_ENV = {
    "TF_CPU_ALLOCATOR_USE_BFC": "true",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "KERAS_BACKEND": "tensorflow",
}


def measure(model_name, memory_lean, batch=8, size=224, threads=1, steps=5, jit=False):
    """Peak memory and step times of one ResNet-50 training step, in this process.

    `model_name` is the recalibration (`"plain"` or None for the plain network, or a module
    name such as `"srm"`); `jit` compiles the step with XLA. The BFC allocator must have been
    selected before TensorFlow was imported (`TF_CPU_ALLOCATOR_USE_BFC=true`); without it the
    memory figures are zero.
    """
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras

    from keras_recalib.models import resnet50

    recalibration = None if model_name in (None, "plain") else model_name
    keras.utils.set_random_seed(0)
    model = resnet50(
        recalibration,
        num_classes=NUM_CLASSES,
        input_shape=(size, size, 3),
        memory_lean=memory_lean,
    )
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((batch, size, size, 3)).astype("float32"))
    y = tf.constant(rng.integers(0, NUM_CLASSES, batch).astype("int32"))
    # The benchmark suite's training step (forward, loss, gradients, SGD-momentum update).
    step = _train_step(tf, keras, model, jit)

    step(x, y).numpy()  # trace, allocate optimizer slots and oneDNN caches
    resident = tf.config.experimental.get_memory_info("CPU:0")["current"]
    peaks, cpu, wall = [], [], []
    for _ in range(steps):
        tf.config.experimental.reset_memory_stats("CPU:0")
        c0, w0 = time.process_time(), time.perf_counter()
        step(x, y).numpy()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
        peaks.append(tf.config.experimental.get_memory_info("CPU:0")["peak"] - resident)
    return {
        "model": model_name or "plain",
        "memory_lean": bool(memory_lean),
        "batch": batch,
        "size": size,
        "threads": threads,
        "steps": steps,
        "jit": bool(jit),
        "resident_bytes": int(resident),
        "step_peak_bytes": int(np.median(peaks)),
        "step_peaks_bytes": [int(p) for p in peaks],
        "step_cpu_s": float(np.median(cpu)),
        "step_wall_s": float(np.median(wall)),
        "steps_cpu_s": cpu,
        "steps_wall_s": wall,
    }


def probe(model_name, memory_lean, batch=8, size=224, threads=1, steps=5, jit=False, timeout=1800):
    """`measure(...)` in a fresh subprocess with the BFC allocator; its dict."""
    env = dict(os.environ, **_ENV)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--one",
        json.dumps([model_name, memory_lean, batch, size, threads, steps, jit]),
    ]
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"probe of {model_name!r} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _table(results):
    plain = next((r for r in results if r["model"] == "plain"), None)
    srm = next((r for r in results if r["model"] != "plain" and not r["memory_lean"]), None)
    rows = []
    for r in results:
        label = r["model"] + (" memory_lean" if r["memory_lean"] else "")
        row = [
            label,
            f"{r['step_peak_bytes'] / 2**20:.1f}",
            f"{r['step_cpu_s']:.3f}",
            f"{r['step_wall_s']:.3f}",
        ]
        for base in (plain, srm):
            if base is None or base is r:
                row += ["", ""]
                continue
            row += [
                f"{r['step_peak_bytes'] / base['step_peak_bytes'] - 1:+.1%}",
                f"{r['step_cpu_s'] / base['step_cpu_s'] - 1:+.1%}",
            ]
        rows.append(row)
    header = [
        "model",
        "step peak MiB",
        "step CPU s",
        "step wall s",
        "peak vs plain",
        "CPU vs plain",
        "peak vs srm",
        "CPU vs srm",
    ]
    from keras_recalib._table import format_table

    return format_table(header, rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="plain,srm,srm-lean", help="of " + ",".join(MODELS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--jit", action="store_true", help="XLA (jit_compile=True) steps")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(*json.loads(args.one))))
        return
    results = []
    for name in args.models.split(","):
        if name not in MODELS:
            parser.error(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
        recalibration, lean = MODELS[name]
        print(f"probing {name} ...", file=sys.stderr, flush=True)
        results.append(
            probe(recalibration, lean, args.batch, args.size, args.threads, args.steps, args.jit)
        )
    print(_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
