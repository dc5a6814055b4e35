"""Per-layer speed of the working tree against an earlier revision, in one process.

`python benchmarks/compare_revisions.py REV [--stages all]` copies the package as it was at git
revision REV under another name (`keras_recalib_rev`), builds every layer from both copies with
the same weights and inputs, and times them in interleaved rounds (graph mode and XLA, forward
and forward + backward). The measure is the process's CPU time per call (TensorFlow on one
thread by default), which other processes on a shared machine barely move, where wall time
can double; each round times old and new back to back, and the table gives the median of the
per-round ratios new / old with their interquartile range. A refactoring that should change no speed
(issue 14's seam) should give ratios around 1.
"""

import argparse
import os
import pathlib
import re
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from _common import configure_tensorflow, machine_info, quiet_environment  # noqa: E402

STAGES = {"56": (56, 256), "28": (28, 512), "14": (14, 1024), "7": (7, 2048)}
ALIAS = "keras_recalib_rev"


def checkout_package(revision, folder):
    """The package at `revision`, importable as `keras_recalib_rev` from `folder`."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "keras_recalib"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    package = pathlib.Path(folder) / ALIAS
    (pathlib.Path(folder) / "keras_recalib").rename(package)
    for path in package.rglob("*.py"):
        text = path.read_text()
        path.write_text(re.sub(r"\bkeras_recalib\b", ALIAS, text))
    sys.path.insert(0, str(folder))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revision", help="git revision to compare against, e.g. HEAD~3")
    parser.add_argument("--stages", default="28,7", help="comma-separated of 56,28,14,7 or all")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--layers", default="", help="comma-separated short names (default all)")
    args = parser.parse_args(argv)

    quiet_environment()
    tf = configure_tensorflow(args.threads)
    import numpy as np

    import keras_recalib as new
    from keras_recalib._table import format_table

    folder = tempfile.mkdtemp(prefix="keras_recalib_rev_")
    checkout_package(args.revision, folder)
    import keras_recalib_rev as old

    stages = list(STAGES) if args.stages == "all" else args.stages.split(",")
    names = [n for n in args.layers.split(",") if n] or new.available()
    info = machine_info(args.threads)
    print(f"{info['cpu']}, {args.threads} thread(s), batch {args.batch}, {args.repeats} rounds")
    print(f"new: working tree; old: {args.revision}")
    rows = []
    for stage in stages:
        size, channels = STAGES[stage]
        shape = (args.batch, size, size, channels)
        rng = np.random.default_rng(0)
        x = tf.constant(rng.standard_normal(shape).astype("float32"))
        dy = tf.constant(rng.standard_normal(shape).astype("float32"))
        for name in names:
            layers = {}
            for label, package in (("old", old), ("new", new)):
                layer = package.get(name)
                layer.build(shape)
                layers[label] = layer
            for variable_old, variable_new in zip(
                layers["old"].weights, layers["new"].weights, strict=True
            ):
                variable_old.assign(variable_new)
            for mode, jit in (("graph", False), ("xla", True)):
                for direction in ("fwd", "fwdbwd"):
                    calls = {
                        label: _call(tf, layer, jit, direction, x, dy)
                        for label, layer in layers.items()
                    }
                    ratios = _paired_ratios(calls, args.repeats)
                    q1, median, q3 = np.percentile(ratios, [25, 50, 75])
                    rows.append(
                        (
                            f"{size}x{size}x{channels}",
                            name,
                            mode,
                            direction,
                            f"{median:.3f}",
                            f"[{q1:.3f}, {q3:.3f}]",
                        )
                    )
                    print(" ".join(rows[-1]), flush=True)
    header = ("stage", "layer", "mode", "pass", "new / old CPU time (median)", "IQR")
    print()
    print(format_table(header, rows, markdown=True, align="lllrrr"))
    return 0


def _call(tf, layer, jit, direction, x, dy):
    if direction == "fwd":
        fn = tf.function(lambda t: layer(t, training=False), jit_compile=jit)
        return lambda: fn(x)

    def step(t, u):
        with tf.GradientTape() as tape:
            tape.watch(t)
            y = layer(t, training=True)
        return tape.gradient(y, [t, *layer.trainable_variables], output_gradients=u)

    fn = tf.function(step, jit_compile=jit)
    return lambda: fn(x, dy)


def _paired_ratios(calls, repeats):
    import time

    clock = time.process_time
    for call in calls.values():  # tracing, compilation, warm-up
        call()
        call()
    ratios = []
    for r in range(repeats):
        order = ["old", "new"] if r % 2 == 0 else ["new", "old"]
        seconds = {}
        for label in order:
            start = clock()
            calls[label]()
            seconds[label] = clock() - start
        ratios.append(seconds["new"] / seconds["old"])
    return ratios


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
