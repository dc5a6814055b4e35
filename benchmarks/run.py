"""The benchmark suite: `python benchmarks/run.py [--quick] [--repeat-check]`.

Sections, each in a fresh subprocess (TensorFlow's thread count is fixed per process):
`layers` (every layer over the `x * g` floor, 1 thread), `deploy` (ResNet-50 and MobileNetV2
with SE / ECA / SRM / a floor gate in Keras graph, XLA, TFLite float32 and int8; 1 and 2
threads), `train` (ResNet-50 training-step time and peak memory), `peers` (PyTorch peers,
`peers_bench.py`) and `jax` (`jax_bench.py`) where those modules exist, and `kecam` with
`--with-kecam`. Every ratio is a paired CPU-time ratio with a 95 % confidence interval
(`_common.paired_ratio`); `--repeat-check` runs the suite twice and flags every ratio whose two
intervals do not overlap. Writes `results.json` and `RESULTS.md` (`report.py`). Benchmarks are
not tests: nothing here asserts a timing.
"""

import argparse
import dataclasses
import datetime
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _common import (  # noqa: E402
    QUIET_ENV,
    configure_tensorflow,
    load_average,
    machine_info,
    quiet_environment,
    run_json_subprocess,
)

KECAM_VENV = os.path.join(HERE, ".venv-kecam")
KECAM_PACKAGE = "keras-cv-attention-models==1.4.3"
SECTIONS = ("layers", "deploy", "train", "peers", "jax", "kecam")
# The thread counts each section runs at: 1 thread is the primary figure (CPU time of one
# thread is the work itself, whatever else the machine runs); 2 threads for the batch
# figures a 2-core deployment would use.
THREADS = {"layers": (1,), "deploy": (1, 2), "train": (2,), "peers": (1,), "jax": (1,)}


@dataclasses.dataclass
class Config:
    quick: bool
    threads: int = 1
    warmup: int = 2
    rounds: int = 15  # 15 rounds: a 96.5 % interval from order statistics 4 and 12
    layer_batch: int = 2
    layer_stages: tuple = ((56, 256), (28, 512), (14, 1024), (7, 2048))
    layer_budget_s: float = 3.0
    size: int = 224
    families: dict = dataclasses.field(default_factory=dict)
    # (batch, threads): batch 1 at 1 and 2 threads, batch 8 at 2 threads.
    deploy_settings: tuple = ((1, 1), (1, 2), (8, 2))
    # XLA compiles every model once per batch size and thread count (10-30 s each on this
    # VM): only the primary setting, batch 1 on 1 thread.
    xla_settings: tuple = ((1, 1),)
    calibration: int = 8
    train_batch: int = 4
    train_size: int = 224
    train_rounds: int = 9  # 9 rounds: 96.1 % from order statistics 2 and 8
    train_variants: tuple = ()
    train_xla_variants: tuple = ("plain", "srm", "srm_lean")
    tflite_paths: dict = dataclasses.field(default_factory=dict)
    verbose_log: object = None

    @property
    def repeats(self):  # the name the older section modules use
        return self.rounds

    @property
    def budget_s(self):
        return self.layer_budget_s


def make_config(quick):
    from deploy_bench import FAMILIES, TRAIN_VARIANTS

    if not quick:
        return Config(quick=False, families=dict(FAMILIES), train_variants=TRAIN_VARIANTS)
    # Tiny shapes and 6 rounds (the fewest that give a 95 % interval): every code path runs.
    return Config(
        quick=True,
        warmup=2,  # the first call traces or compiles: the second is the time estimate
        rounds=6,
        layer_batch=1,
        layer_stages=((8, 64),),
        layer_budget_s=0.5,
        size=32,
        # Fewer models (TFLite conversion takes minutes per model): each code path once.
        families={"resnet50": ("plain", "floor", "se", "srm"), "mobilenetv2": ("plain", "eca")},
        train_variants=("plain", "srm", "srm_lean"),
        deploy_settings=((1, 1), (1, 2), (2, 2)),
        xla_settings=((1, 1), (2, 2)),
        calibration=2,
        train_batch=2,
        train_size=32,
        train_rounds=6,
    )


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run (< 2 min, tiny shapes, every code path); writes benchmarks/quick/",
    )
    parser.add_argument(
        "--repeat-check",
        action="store_true",
        help="run the suite twice (run1/, run2/) and flag ratios whose intervals do not overlap",
    )
    parser.add_argument("--skip", default="", help="comma-separated: " + ",".join(SECTIONS))
    parser.add_argument("--with-kecam", action="store_true", help="add kecam's SE and ECA")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite RESULTS.md from the last --repeat-check's run1/ and run2/ (after editing "
        "benchmarks/NOTES.md); times nothing",
    )
    parser.add_argument(
        "--convert-only",
        action="store_true",
        help="only fill the TFLite cache (benchmarks/.cache/; minutes per model, untimed)",
    )
    parser.add_argument(
        "--out",
        help="output folder (default: benchmarks/, or benchmarks/quick/ with --quick so that a "
        "smoke run never overwrites the full results)",
    )
    parser.add_argument("--verbose", action="store_true")
    # Internal: one section in this process.
    parser.add_argument("--section", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _flags(args):
    flags = ["--quick"] if args.quick else []
    if args.skip:
        flags += ["--skip", args.skip]
    if args.with_kecam:
        flags.append("--with-kecam")
    if args.verbose:
        flags.append("--verbose")
    return flags


def _stream(argv, log, env=None):
    """Runs a section subprocess: its log lines (starting with "[") pass through, its last
    stdout line is its JSON result."""
    import tempfile

    full_env = dict(os.environ, **QUIET_ENV, **(env or {}))
    # stdout (the JSON, often larger than a pipe's buffer) goes to a file: reading stderr
    # line by line while the child blocks on a full stdout pipe would deadlock.
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE, text=True, env=full_env)
        tail = []
        for line in proc.stderr:
            if line.startswith("["):
                log("  " + line.rstrip().split("] ", 1)[-1])
            tail = (tail + [line])[-40:]
        proc.wait()
        out.seek(0)
        stdout = out.read()
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"exit {proc.returncode}: " + "".join(tail)[-2000:])
    return json.loads(lines[-1])


def run_section(args):
    """`--section NAME --threads N`: one section in this process; prints its JSON."""
    quiet_environment()
    started = time.time()
    config = make_config(args.quick)
    config.threads = args.threads
    if args.state and os.path.exists(args.state):
        with open(args.state) as f:
            config.tflite_paths = json.load(f)["tflite_paths"]

    def log(message):
        print(f"[{time.time() - started:6.0f}s] {message}", file=sys.stderr, flush=True)

    config.verbose_log = log if args.verbose else None
    if args.section == "peers":
        from _common import configure_torch

        # Both frameworks run in this section: both get the thread count before they start.
        configure_torch(config.threads)
        configure_tensorflow(config.threads)
        import peers_bench

        out = peers_bench.run(config, log)
    else:
        configure_tensorflow(config.threads)
        if args.section == "layers":
            import layers_bench

            out = layers_bench.run(config, log)
        elif args.section == "deploy":
            import deploy_bench

            out = deploy_bench.deploy(config, log)
        elif args.section == "train":
            import deploy_bench

            out = deploy_bench.train(config, log)
        else:
            raise ValueError(f"Unknown section. Received: section={args.section!r}")
    print(json.dumps(out))


def ensure_kecam_venv(log):
    """Creates `benchmarks/.venv-kecam` on first use: a virtualenv that sees this
    environment's TensorFlow (through a .pth file) and adds tf-keras and kecam."""
    python = os.path.join(KECAM_VENV, "bin", "python")
    if os.path.exists(os.path.join(KECAM_VENV, ".ready")):
        return python
    import sysconfig
    from importlib import metadata

    log(f"  creating {KECAM_VENV}")
    subprocess.run([sys.executable, "-m", "venv", "--clear", KECAM_VENV], check=True)
    site = subprocess.run(
        [python, "-c", "import site; print(site.getsitepackages()[0])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    with open(os.path.join(site, "_keras_recalib_parent.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    # tf-keras must match the TensorFlow minor version; kecam's own requirements (pillow,
    # ftfy, ...) are not needed by the two modules benchmarked.
    tf_minor = ".".join(metadata.version("tensorflow").split(".")[:2])
    proc = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", f"tf-keras~={tf_minor}.0"]
        + [KECAM_PACKAGE],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError("pip install failed: " + (proc.stderr or proc.stdout)[-1500:])
    open(os.path.join(KECAM_VENV, ".ready"), "w").close()
    return python


def run_kecam(config, log):
    python = ensure_kecam_venv(log)
    argv = [python, os.path.join(HERE, "kecam_bench.py"), "--threads", "1"]
    argv += ["--batch", str(config.layer_batch), "--warmup", str(config.warmup)]
    argv += ["--repeats", str(config.rounds)]
    return run_json_subprocess(argv, env={"TF_USE_LEGACY_KERAS": "1"})


def single_run(args, log):
    import deploy_bench
    import report

    started = time.time()
    config = make_config(args.quick)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if not args.with_kecam:
        skip.add("kecam")
    out_dir = args.out or (os.path.join(HERE, "quick") if args.quick else HERE)
    os.makedirs(out_dir, exist_ok=True)
    results = {
        "command": "python benchmarks/run.py" + "".join(" " + f for f in _flags(args)),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": {
            k: v
            for k, v in dataclasses.asdict(config).items()
            if k not in ("verbose_log", "tflite_paths")
        },
        "machine": machine_info({k: list(v) for k, v in THREADS.items()}),
        "load_average": {"start": load_average()},
        "sections": {},
        "skipped": sorted(skip),
    }
    sections = results["sections"]
    state = os.path.join(out_dir, ".state.json")
    if {"deploy", "train"} - skip:
        log("prepare (untimed)")
        paths, memory = deploy_bench.prepare(config, log)
        with open(state, "w") as f:
            json.dump({"tflite_paths": paths}, f)
        if "train" not in skip:
            ratios = {v: deploy_bench.memory_ratio(memory, v) for v in memory if v != "plain"}
            sections["train"] = {"memory": memory, "memory_ratios": ratios}
    base = [sys.executable, os.path.abspath(__file__), "--state", state] + _flags(args)

    def section(name, threads, env=None):
        argv = base + ["--section", name, "--threads", str(threads)]
        return _stream(argv, log, env)

    for name in ("layers", "deploy", "train", "peers", "jax", "kecam"):
        if name in skip:
            continue
        if name in ("peers", "jax") and not os.path.exists(os.path.join(HERE, f"{name}_bench.py")):
            sections[name] = {"skipped": f"benchmarks/{name}_bench.py does not exist"}
            log(f"{name}: skipped ({name}_bench.py does not exist)")
            continue
        log(name)
        start = time.time()
        try:
            if name == "deploy":
                entry = {"settings": {}, "delegates": {}}
                for threads in THREADS["deploy"]:
                    part = section("deploy", threads)
                    entry["settings"].update(part["settings"])
                    entry["delegates"].update(part["delegates"])
            elif name == "train":
                entry = sections.get("train", {})
                entry.update(section("train", THREADS["train"][0]))
            elif name == "jax":
                argv = [sys.executable, os.path.join(HERE, "jax_bench.py")]
                argv += ["--threads", str(THREADS["jax"][0])] + (["--quick"] if args.quick else [])
                entry = run_json_subprocess(argv, env={"KERAS_BACKEND": "jax"})
            elif name == "kecam":
                entry = run_kecam(config, log)
            else:
                entry = section(name, THREADS[name][0])
        except Exception as error:  # noqa: BLE001 - a failed section is reported, not fatal
            entry = {"error": str(error)}
            log(f"  {name} failed: {str(error)[-500:]}")
        entry["duration_s"] = round(time.time() - start, 1)
        entry["load_average_end"] = load_average()
        sections[name] = entry
    results["load_average"]["end"] = load_average()
    results["duration_s"] = round(time.time() - started, 1)
    if os.path.exists(state):
        os.remove(state)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    report.write([results], out_dir)
    log(f"wrote {os.path.join(out_dir, 'RESULTS.md')} ({results['duration_s']:.0f}s)")
    return results


def repeat_check(args, log):
    """Two full runs in fresh subprocesses (`run1/`, `run2/`), then RESULTS.md from both."""
    import report

    out_dir = args.out or (os.path.join(HERE, "quick") if args.quick else HERE)
    runs = []
    for i in (1, 2):
        folder = os.path.join(out_dir, f"run{i}")
        log(f"run {i} -> {folder}")
        argv = [sys.executable, os.path.abspath(__file__), "--out", folder] + _flags(args)
        subprocess.run(argv, check=True)
        with open(os.path.join(folder, "results.json")) as f:
            runs.append(json.load(f))
    report.write(runs, out_dir)
    flagged = report.disagreements(runs)
    total = len(report.collect_ratios(runs[0]))
    log(f"wrote {os.path.join(out_dir, 'RESULTS.md')}")
    if flagged:
        print(f"FLAGGED: {len(flagged)} of {total} ratios disagree between the two runs:")
        for path in flagged:
            print(f"  {path}")
        return 1
    print(f"OK: all {total} ratios agree between the two runs")
    return 0


def main(argv=None):
    args = parse_args(argv)
    if args.section:
        run_section(args)
        return 0
    quiet_environment()
    started = time.time()

    def log(message):
        print(f"[{time.time() - started:6.0f}s] {message}", flush=True)

    if args.convert_only:
        import deploy_bench

        deploy_bench.prepare(make_config(args.quick), log, memory=False)
        return 0
    if args.repeat_check:
        return repeat_check(args, log)
    if args.report_only:
        import report

        out_dir = args.out or (os.path.join(HERE, "quick") if args.quick else HERE)
        runs = []
        for i in (1, 2):
            with open(os.path.join(out_dir, f"run{i}", "results.json")) as f:
                runs.append(json.load(f))
        log(f"wrote {report.write(runs, out_dir)}")
        return 0
    single_run(args, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
