"""Shared helpers of the benchmark suite: threads, interleaved timing, machine facts."""

import json
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
    `budget_s / repeats` per call gets fewer rounds (at least 3). Returns name -> list of
    seconds.
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
            rounds[name] = max(3, min(repeats, int(budget_s / max(estimate[name], 1e-9))))
    samples = {name: [] for name in names}
    for r in range(max(rounds.values())):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            if len(samples[name]) >= rounds[name]:
                continue
            t0 = time.perf_counter()
            functions[name]()
            samples[name].append(time.perf_counter() - t0)
    return samples


def summary(seconds):
    values = np.asarray(seconds, float) * 1e3
    return {
        "median_ms": float(np.median(values)),
        "min_ms": float(values.min()),
        "q1_ms": float(np.percentile(values, 25)),
        "q3_ms": float(np.percentile(values, 75)),
        "samples_ms": [round(float(v), 4) for v in values],
    }


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
