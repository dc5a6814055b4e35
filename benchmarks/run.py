"""The benchmark suite: `python benchmarks/run.py [--quick]`.

Times every `keras_recalib` layer against the memory-bandwidth floor (`x * g`), the seed's
TensorFlow SRM, the official PyTorch SRM and SE (eager and `torch.compile`), kecam's SE and
ECA (in their own legacy-Keras virtualenv), and SRM-ResNet-50 against plain ResNet-50 in
Keras, XLA and TFLite; writes `benchmarks/results.json`, `benchmarks/RESULTS.md` and
`benchmarks/results.png`. Benchmarks are not tests: nothing here asserts a timing.
"""

import argparse
import dataclasses
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _common import (  # noqa: E402
    configure_tensorflow,
    configure_torch,
    load_average,
    machine_info,
    quiet_environment,
    run_json_subprocess,
)

KECAM_VENV = os.path.join(HERE, ".venv-kecam")
KECAM_PACKAGE = "keras-cv-attention-models==1.4.3"


@dataclasses.dataclass
class Config:
    quick: bool
    threads: int
    batch: int
    warmup: int
    repeats: int
    budget_s: float
    model_batch: int
    model_size: int
    model_repeats: int
    calibration_samples: int
    torch: bool
    torch_compile: bool
    xla_training: bool
    tflite_int8: bool
    conversion_workers: int
    model_names: tuple
    verbose_log: object = None


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small batch, few repeats")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads (all)")
    parser.add_argument("--batch", type=int, help="layer batch size (16; quick 2)")
    parser.add_argument("--model-batch", type=int, help="ResNet-50 batch (8; quick 2)")
    parser.add_argument("--model-size", type=int, help="ResNet-50 input size (224; quick 64)")
    parser.add_argument(
        "--skip", default="", help="comma-separated sections to skip: layers,kecam,models"
    )
    parser.add_argument("--no-torch-compile", action="store_true")
    parser.add_argument(
        "--out",
        help="output folder (default: benchmarks/, or benchmarks/quick/ with --quick so that a "
        "smoke run never overwrites the full results)",
    )
    parser.add_argument("--verbose", action="store_true")
    return parser.parse_args(argv)


def make_config(args):
    quick = args.quick
    try:
        import torch  # noqa: F401

        has_torch = True
    except ImportError:
        has_torch = False
    return Config(
        quick=quick,
        threads=args.threads,
        batch=args.batch or (2 if quick else 16),
        warmup=1 if quick else 2,
        repeats=3 if quick else 7,
        budget_s=0.5 if quick else 2.5,
        model_batch=args.model_batch or (2 if quick else 8),
        model_size=args.model_size or (64 if quick else 224),
        model_repeats=3 if quick else 11,
        calibration_samples=2 if quick else 8,
        torch=has_torch,
        # --quick leaves out what costs compile time rather than run time.
        torch_compile=has_torch and not args.no_torch_compile and not quick,
        xla_training=not quick,
        tflite_int8=not quick,
        conversion_workers=max(1, min(2, args.threads)),
        model_names=("plain", "srm") if quick else ("plain", "floor", "srm"),
    )


def ensure_kecam_venv(log):
    """Creates `benchmarks/.venv-kecam` on first use: a virtualenv that sees this
    environment's TensorFlow (through a .pth file) and adds tf-keras and kecam."""
    python = os.path.join(KECAM_VENV, "bin", "python")
    if os.path.exists(os.path.join(KECAM_VENV, ".ready")):
        return python
    import tensorflow as tf

    log(f"  creating {KECAM_VENV}")
    subprocess.run([sys.executable, "-m", "venv", "--clear", KECAM_VENV], check=True)
    site = subprocess.run(
        [python, "-c", "import site; print(site.getsitepackages()[0])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    import sysconfig

    with open(os.path.join(site, "_keras_recalib_parent.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    # tf-keras must match the TensorFlow minor version; kecam's own requirements (pillow,
    # ftfy, ...) are not needed by the two modules benchmarked.
    tf_minor = ".".join(tf.__version__.split(".")[:2])
    proc = subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            f"tf-keras~={tf_minor}.0",
            KECAM_PACKAGE,
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError("pip install failed: " + (proc.stderr or proc.stdout)[-1500:])
    open(os.path.join(KECAM_VENV, ".ready"), "w").close()
    return python


def run_kecam(config, log):
    try:
        python = ensure_kecam_venv(log)
    except Exception as error:  # noqa: BLE001 - recorded in the report
        return {"error": f"installation failed: {error}"}
    argv = [
        python,
        os.path.join(HERE, "kecam_bench.py"),
        "--threads",
        str(config.threads),
        "--batch",
        str(config.batch),
        "--warmup",
        str(config.warmup),
        "--repeats",
        str(config.repeats),
    ]
    try:
        return run_json_subprocess(argv, env={"TF_USE_LEGACY_KERAS": "1"})
    except Exception as error:  # noqa: BLE001 - recorded in the report
        return {"error": str(error)}


def main(argv=None):
    args = parse_args(argv)
    quiet_environment()
    started = time.time()
    config = make_config(args)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    def log(message):
        print(f"[{time.time() - started:6.0f}s] {message}", flush=True)

    config.verbose_log = log if args.verbose else None
    configure_tensorflow(config.threads)
    if config.torch:
        configure_torch(config.threads)

    import layers_bench
    import models_bench
    import report

    results = {
        "command": "python benchmarks/run.py" + (" --quick" if config.quick else ""),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "config": {k: v for k, v in dataclasses.asdict(config).items() if k != "verbose_log"},
        "machine": machine_info(config.threads),
        "load_average_start": load_average(),
    }
    if "layers" not in skip:
        log("layers")
        results["layers"] = layers_bench.run(config, log)
    if "kecam" not in skip:
        log("kecam")
        results["kecam"] = run_kecam(config, log)
    if "models" not in skip:
        log("models")
        keras_results = models_bench.keras_timings(config, log)
        with tempfile.TemporaryDirectory(prefix="keras_recalib_bench_") as folder:
            paths, seconds, memory = models_bench.untimed(config, folder, log)
            tflite = models_bench.tflite_timings(config, paths, seconds, log)
        results["models"] = {
            "batch": config.model_batch,
            "size": config.model_size,
            "names": list(config.model_names),
            "keras": keras_results,
            "tflite": tflite,
            "memory": memory,
        }
    results["load_average_end"] = load_average()
    results["duration_s"] = round(time.time() - started, 1)
    args.out = args.out or (os.path.join(HERE, "quick") if config.quick else HERE)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    report.write(results, args.out)
    log(f"wrote {os.path.join(args.out, 'RESULTS.md')}")


if __name__ == "__main__":
    main()
