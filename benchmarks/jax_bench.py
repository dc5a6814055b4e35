"""SRM and SE on the JAX backend against the `x * g` floor, at ResNet-50's stage shapes.

Run in its own process with `KERAS_BACKEND=jax` (`run.py` does so through
`_common.run_json_subprocess`): `python benchmarks/jax_bench.py --threads N [--quick]`
prints one JSON object on its last stdout line.

Each layer runs through `layer.stateless_call` inside `jax.jit`: the forward pass in inference
(`training=False`), and forward plus backward in training (`jax.vjp` with respect to the input
and the trainable weights, an upstream gradient of ones' shape, the updated BN statistics
returned as the TensorFlow benchmark's assignments would be). The floor is `x * g` with a
per-(batch, channel) `g`, differentiated with respect to `x` and `g`. Times are CPU and wall
per call in interleaved rounds, one group per shape and direction, each sample a run of calls
(as many as make the floor's sample 10 ms of CPU time) divided by their number; every ratio
is a round-paired CPU-time ratio with its 95 % interval (`_common.paired_ratio`).

Threads: XLA's CPU client sizes its thread pool from `PJRT_NPROC` (default: every core);
`--xla_cpu_multi_thread_eigen=false` alone leaves that pool in use. The script sets
`PJRT_NPROC=N` (and turns Eigen's threading off for one thread) before importing JAX, and
records how the CPU time spread over the process's threads, from /proc, as the check.
"""

import argparse
import inspect
import json
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import format_ratio, interleaved, load_runs, paired_ratio, summary  # noqa: E402

# ResNet-50's four stage outputs: (height = width, channels).
STAGES = ((56, 256), (28, 512), (14, 1024), (7, 2048))
LAYERS = ("srm", "se")
DIRECTIONS = ("fwd", "fwdbwd")
DIRECTION_TITLES = {"fwd": "forward (inference)", "fwdbwd": "forward + backward"}


def set_threads(threads):
    """Environment for an XLA CPU client with `threads` threads; call before importing JAX."""
    os.environ.setdefault("PJRT_NPROC", str(threads))
    if threads == 1:
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_cpu_multi_thread_eigen" not in flags:
            os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()


def thread_ticks():
    """CPU clock ticks (user + system) of every thread of this process: {thread id: ticks}."""
    ticks = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        ticks[tid] = int(fields[11]) + int(fields[12])
    return ticks


def _tensors(shape, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype("float32")
    dy = rng.standard_normal(shape).astype("float32")
    g = rng.uniform(0.1, 0.9, (shape[0], 1, 1, shape[-1])).astype("float32")
    return x, dy, g


def group(shape, direction, seed=0):
    """name -> zero-argument callable (blocking until the result is ready)."""
    import jax
    import keras

    import keras_recalib as kr

    x_np, dy_np, g_np = _tensors(shape, seed)
    x, dy, g = jax.numpy.asarray(x_np), jax.numpy.asarray(dy_np), jax.numpy.asarray(g_np)
    functions = {}
    if direction == "fwd":
        floor = jax.jit(lambda t, gate: t * gate)
        functions["floor"] = lambda: jax.block_until_ready(floor(x, g))
    else:
        floor = jax.jit(lambda t, gate, up: jax.vjp(lambda a, b: a * b, t, gate)[1](up))
        functions["floor"] = lambda: jax.block_until_ready(floor(x, g, dy))
    for name in LAYERS:
        keras.utils.set_random_seed(seed)
        layer = kr.get(name)
        layer.build(shape)
        functions[name] = _layer_function(jax, layer, direction, x, dy)
    return functions


def _layer_function(jax, layer, direction, x, dy):
    # stateless_call passes keywords through unfiltered (Keras' __call__ drops a `training`
    # that `call` does not take; SE's does not).
    takes_training = "training" in inspect.signature(layer.call).parameters
    kw = {"training": direction == "fwdbwd"} if takes_training else {}
    trainable = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]
    if direction == "fwd":
        forward = jax.jit(lambda tv, ntv, t: layer.stateless_call(tv, ntv, t, **kw)[0])
        return lambda: jax.block_until_ready(forward(trainable, non_trainable, x))

    def step(tv, ntv, t, up):
        def apply(a, weights):
            return layer.stateless_call(weights, ntv, a, **kw)

        _, backward, updated = jax.vjp(apply, t, tv, has_aux=True)
        return backward(up), updated

    step = jax.jit(step)
    return lambda: jax.block_until_ready(step(trainable, non_trainable, x, dy))


def _calls_per_sample(floor, target_s=0.01, most=64):
    """How many calls one timed sample makes: the floor's CPU time per sample at least
    `target_s`, so that a sample is not a single call of a millisecond (timer and scheduler
    noise) and the ratio is of the same kernels run back to back."""
    floor()  # compile
    start = time.process_time()
    floor()
    per_call = max(time.process_time() - start, 1e-5)
    return int(min(most, max(1, -(-target_s // per_call))))


def _repeated(fn, calls):
    def call():
        for _ in range(calls):
            fn()

    return call


def shape_label(shape):
    return "x".join(str(s) for s in shape[1:])


def run(threads, quick):
    import jax
    import keras

    import keras_recalib

    if keras.backend.backend() != "jax":
        raise RuntimeError(
            "jax_bench.py times the JAX backend: run it with KERAS_BACKEND=jax. "
            f"Received: backend={keras.backend.backend()!r}"
        )
    batch, warmup, repeats = (2, 1, 3) if quick else (4, 2, 21)
    shapes = [(batch, size, size, channels) for size, channels in STAGES]
    result = {
        "backend": "jax",
        "batch": batch,
        "shapes": [list(s) for s in shapes],
        "threads": threads,
        "environment": {k: os.environ.get(k) for k in ("PJRT_NPROC", "XLA_FLAGS")},
        "versions": {
            "jax": jax.__version__,
            "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else None,
            "keras": keras.__version__,
            "keras_recalib": keras_recalib.__version__,
        },
        "devices": [str(d) for d in jax.devices()],
        "clock": "cpu",
        "timings": {},
        "ratios": {},
    }
    start = time.perf_counter()
    result["calls_per_sample"], result["kernel"] = {}, {}
    for shape in shapes:
        for direction in DIRECTIONS:
            key = f"{direction}/{shape_label(shape)}"
            functions = group(shape, direction)
            calls = _calls_per_sample(functions["floor"])
            result["calls_per_sample"][key] = calls
            before = resource.getrusage(resource.RUSAGE_SELF)
            samples = interleaved(
                {name: _repeated(fn, calls) for name, fn in functions.items()}, warmup, repeats
            )
            after = resource.getrusage(resource.RUSAGE_SELF)
            # Kernel time and page faults (fresh output buffers) vary between processes at
            # the largest shape; recorded so that a disagreeing rerun can be told apart.
            user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
            result["kernel"][key] = {
                "system_cpu_share": round(system / max(user + system, 1e-9), 3),
                "minor_faults": after.ru_minflt - before.ru_minflt,
            }
            samples = {
                name: {clock: [t / calls for t in times] for clock, times in clocks.items()}
                for name, clocks in samples.items()
            }
            result["timings"][key] = {k: summary(v) for k, v in samples.items()}
            for name in LAYERS:
                result["ratios"][f"{name}/{key}"] = paired_ratio(samples, name, "floor")
    result["wall_s"] = round(time.perf_counter() - start, 1)
    result["thread_check"] = thread_check(group(shapes[0], "fwdbwd")["srm"])
    return result


def thread_check(fn, cpu_s=1.0):
    """How the CPU time of calls of a compiled `fn`, `cpu_s` seconds of it (clock ticks are
    1/100 s), spread over the process's threads: with one thread, the busiest one does
    nearly all of it."""
    fn()  # compile outside the measurement
    before = thread_ticks()
    cpu, wall, calls = time.process_time(), time.perf_counter(), 0
    while time.process_time() - cpu < cpu_s:
        fn()
        calls += 1
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    after = thread_ticks()
    spent = sorted((after[t] - before.get(t, 0) for t in after), reverse=True)
    total = sum(spent) or 1
    return {
        "busiest_thread_share": round(spent[0] / total, 3),
        "threads_over_5_percent": sum(1 for s in spent if s / total > 0.05),
        "calls": calls,
        "cpu_s": round(cpu, 2),
        "wall_s": round(wall, 2),
    }


def markdown(runs):
    """The RESULTS.md section: SRM / floor and SE / floor on JAX, one column per run."""
    from keras_recalib._table import format_table

    first = runs[0]
    titles = [f"run {i + 1}" for i in range(len(runs))] if len(runs) > 1 else [""]
    header = ["direction", "shape (H x W x C)"]
    for name in LAYERS:
        header += [f"{name.upper()} / floor{(' ' + t) if t else ''}" for t in titles]
    rows = []
    for direction in DIRECTIONS:
        for shape in first["shapes"]:
            key = f"{direction}/{shape_label(shape)}"
            cells = [DIRECTION_TITLES[direction], shape_label(shape)]
            for name in LAYERS:
                cells += [
                    format_ratio(run["ratios"].get(f"{name}/{key}"), missing="n/a") for run in runs
                ]
            rows.append(cells)
    check = first["thread_check"]
    lines = [
        f"### JAX backend: SRM and SE against the `x * g` floor (batch {first['batch']}, "
        f"{first['threads']} thread{'s' if first['threads'] != 1 else ''})",
        "",
        "`jax.jit` of `layer.stateless_call`; median of round-paired CPU-time ratios with its "
        "95 % interval. The floor is `x * g` with a per-(batch, channel) `g` (forward + "
        "backward: gradients for `x` and `g`). The TensorFlow section above gives the same "
        "ratios at the same stage shapes.",
        "",
        format_table(header, rows, markdown=True, align="ll" + "r" * (len(header) - 2)),
        "",
        f"- Threads: `PJRT_NPROC={first['environment']['PJRT_NPROC']}`, "
        f"`XLA_FLAGS={first['environment']['XLA_FLAGS'] or ''}`; the busiest thread did "
        f"{check['busiest_thread_share']:.0%} of the CPU time (run 1).",
        f"- Versions: jax {first['versions']['jax']}, keras {first['versions']['keras']}.",
    ]
    faulting = [
        f"{key} in run {i + 1} ({entry['system_cpu_share']:.0%} system time, "
        f"{entry['minor_faults']} page faults)"
        for i, run in enumerate(runs)
        for key, entry in run.get("kernel", {}).items()
        if entry["system_cpu_share"] > 0.2
    ]
    if faulting:
        lines.append(
            "- Page-fault bound (fresh output buffers; the whole group pays, the floor most "
            "in proportion, so its ratios are low): " + "; ".join(faulting) + "."
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--quick", action="store_true", help="batch 2, 3 rounds")
    parser.add_argument("--markdown", nargs="*", help="render these result files and exit")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(load_runs(args.markdown)))
        return
    set_threads(args.threads)
    os.environ.setdefault("KERAS_BACKEND", "jax")
    result = run(args.threads, args.quick)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
