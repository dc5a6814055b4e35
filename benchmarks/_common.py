"""Shared helpers of the benchmark suite: threads, interleaved timing, machine facts."""

import json
import math
import os
import platform
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"}


def quiet_environment():
    """Silences TensorFlow's start-up chatter; call before importing TensorFlow."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)


def configure_tensorflow(threads):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    # Calls must return only once the work is done (the default on CPU; made explicit).
    tf.config.experimental.set_synchronous_execution(True)
    return tf


def configure_torch(threads):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # only settable once, before any parallel work
        pass
    return torch


def interleaved(functions, warmup, repeats, budget_s=None, log=None):
    """Times every callable of `functions` (name -> callable) in interleaved rounds.

    Each function runs `warmup` times first (tracing, compilation, allocator warm-up); then
    `repeats` rounds call each function once, the starting function rotating every round, so
    that load changes on a shared machine hit all functions alike. A function slower than
    `budget_s / repeats` per call gets fewer rounds (at least 6, the fewest whose median
    has a 95 % interval; the estimate is the last warm-up call's time). Every call records its wall
    time and the process's CPU time (all threads: with one thread, the work itself, unaffected
    by time spent waiting for a core that another job holds). Returns name -> {"wall": [s],
    "cpu": [s]}, sample i of every function coming from round i.
    """
    names = list(functions)
    estimate = {}
    for name in names:
        start = time.perf_counter()
        for _ in range(max(warmup, 1)):
            t0 = time.perf_counter()
            functions[name]()
            estimate[name] = time.perf_counter() - t0
        if log:
            log(f"    warm {name}: {time.perf_counter() - start:.1f}s")
    rounds = {name: repeats for name in names}
    if budget_s:
        for name in names:
            rounds[name] = max(6, min(repeats, int(budget_s / max(estimate[name], 1e-9))))
    samples = {name: {"wall": [], "cpu": []} for name in names}
    for r in range(max(rounds.values())):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            if len(samples[name]["wall"]) >= rounds[name]:
                continue
            c0, t0 = time.process_time(), time.perf_counter()
            functions[name]()
            t1, c1 = time.perf_counter(), time.process_time()
            samples[name]["wall"].append(t1 - t0)
            samples[name]["cpu"].append(c1 - c0)
    return samples


def summary(samples):
    """Median, quartiles and every sample (ms) of one function's wall and CPU times."""
    out = {}
    for clock in ("wall", "cpu"):
        values = np.asarray(samples[clock], float) * 1e3
        out[clock] = {
            "median_ms": float(np.median(values)),
            "q1_ms": float(np.percentile(values, 25)),
            "q3_ms": float(np.percentile(values, 75)),
            "samples_ms": [round(float(v), 4) for v in values],
        }
    out["median_ms"] = out["wall"]["median_ms"]  # the figure a user waits for
    return out


def median_interval(values, confidence=0.95):
    """The sample median and a distribution-free confidence interval for the population
    median: order statistics k and n + 1 - k, the widest pair whose binomial coverage is at
    least `confidence` (e.g. n = 15 gives the 4th and 12th smallest, 96.5 %). Returns
    (median, low, high); low and high are None with fewer than 6 samples, which cannot cover
    95 %."""
    values = sorted(float(v) for v in values)
    n = len(values)
    median = float(np.median(values))
    best = None
    for k in range(1, n // 2 + 1):
        # P(X < k) for X ~ Binomial(n, 1/2), the chance that the interval misses on one side.
        tail = sum(math.comb(n, i) for i in range(k)) / 2**n
        if 1 - 2 * tail >= confidence:
            best = k
    if best is None:
        return median, None, None
    return median, values[best - 1], values[n - best]


def paired_ratio(samples, name, baseline, clock="cpu", confidence=0.95):
    """The ratio of `name`'s time to `baseline`'s, round by round (both ran in the same
    interleaved round, so a slow moment of the machine cancels), summarised by the median and
    its confidence interval (`median_interval`). `samples` is `interleaved`'s result; rounds
    that only one of the two ran are dropped. Returns {"ratio", "low", "high", "n", "clock"}."""
    a, b = samples[name][clock], samples[baseline][clock]
    n = min(len(a), len(b))
    ratios = [a[i] / b[i] for i in range(n) if b[i] > 0]
    median, low, high = median_interval(ratios, confidence)
    return {"ratio": median, "low": low, "high": high, "n": len(ratios), "clock": clock}


def format_ratio(r, percent=False, digits=2, missing="-"):
    """The one way the benchmarks print a `paired_ratio` result: `1.07 [1.05, 1.11]`, or as an
    overhead `+7.0% [+5.0, +11.0]` with `percent`; `[no CI]` where there was no interval and
    `missing` for None."""
    if r is None:
        return missing
    if percent:
        value = f"{100 * (r['ratio'] - 1):+.1f}%"
        bounds = (f"{100 * (r[k] - 1):+.1f}" for k in ("low", "high"))
    else:
        value = f"{r['ratio']:.{digits}f}"
        bounds = (f"{r[k]:.{digits}f}" for k in ("low", "high"))
    if r["low"] is None:
        return f"{value} [no CI]"
    return f"{value} [{', '.join(bounds)}]"


def intervals_overlap(first, second):
    """Whether two `paired_ratio` results agree: their intervals overlap. An interval that
    could not be formed (too few samples) never agrees."""
    if None in (first["low"], first["high"], second["low"], second["high"]):
        return False
    return first["low"] <= second["high"] and second["low"] <= first["high"]


def load_average():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


ISA_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)


def isa_flags():
    """Which of the instruction-set extensions that decide float and int8 kernel speed
    (oneDNN, XNNPACK) the CPU reports, in /proc/cpuinfo's spelling: {flag: bool}."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    present = set(line.split(":", 1)[1].split())
                    return {flag: flag in present for flag in ISA_FLAGS}
    except OSError:
        pass
    return {}


def package_versions(names):
    from importlib import metadata

    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine_info(threads):
    return {
        "cpu": cpu_model(),
        "isa_flags": isa_flags(),
        "logical_cpus": os.cpu_count(),
        "threads": threads,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": package_versions(
            ["tensorflow", "keras", "numpy", "torch", "ai-edge-litert", "keras_recalib"]
        ),
        "onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)"),
    }


def run_json_subprocess(argv, env=None, timeout=None):
    """Runs a helper script that prints one JSON object on its last stdout line."""
    full_env = dict(os.environ)
    full_env.update(QUIET_ENV)
    if env:
        full_env.update(env)
    proc = subprocess.run(
        argv, capture_output=True, text=True, env=full_env, timeout=timeout, check=False
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout)[-2000:]
        raise RuntimeError(f"{' '.join(argv[:2])} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(lines[-1])


def load_runs(paths):
    """The result JSON files at `paths`, one per run, for a section's `markdown(runs)`."""
    runs = []
    for path in paths:
        with open(path) as f:
            runs.append(json.load(f))
    return runs
