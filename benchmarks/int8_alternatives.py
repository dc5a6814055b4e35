"""Alternatives to SRM's int8 statistics in a ResNet-50: what each costs and how accurate it is.

`python benchmarks/int8_alternatives.py [--rounds 25] [--repeat-check] [--write] [--size 224]`

ResNet-50 (`deploy_bench.build`, SRM's channel-wise weights randomised) at 224x224, converted to
int8 TFLite (calibrated on 16 images of `deploy_bench._data(16, size, seed=1)`), run by LiteRT
with XNNPACK at batch 1, one thread. Six files:

- `plain`, `se`, `srm`: `keras_recalib.export.convert_tflite(model, path, "int8", ...)`, the
  package's int8 files (SRM's statistics in two passes: the mean, then the mean squared
  deviation);
- `srm one-pass`: the same with SRM's statistics traced in one pass (mean(x^2) - mean^2):
  `ops._tensorflow._TFLITE_MOMENTS["tflite_int8"]` mapped to `_one_pass_moments` during the
  conversion, in this process only;
- `srm island`, `srm one-pass + island`: every SQRT of SRM's std and the ADD (of epsilon)
  feeding it left in float. A calibrate-only conversion, then TensorFlow's non-public
  `tensorflow.lite.python.convert.mlir_quantize(calibrated, denylisted_nodes=[...])`. The
  package does not do this: the file then has float ops (and QUANTIZE/DEQUANTIZE pairs) inside
  an int8 file, which its int8 contract refuses; measured here to know what it would buy.

Per file: CPU time over plain, over SE and over the package's SRM, paired per interleaved round
(`_common.interleaved`, `paired_ratio`: median and 95 % interval), XNNPACK partitions and the ops
left outside XNNPACK (`deploy_bench.delegation`), cosine against Keras on 4 held-out inputs
(`verify_tflite`) and whether the file meets the package's int8 contract. `--repeat-check`
measures twice with fresh interpreters and flags ratios whose intervals do not overlap.

A stress case prices one-pass statistics: every BatchNormalization of the SRM model gets random
gamma, beta and moving variance, so that channel means are of the order of their stds, and the
package's SRM file and the one-pass file are compared with Keras (cosine). Prints a markdown table
(with the CPU and its instruction-set flags); `--write` also writes it to
`benchmarks/INT8_ALTERNATIVES.md`. Nothing is asserted. `--size 64 --rounds 6` is a smoke test.
"""

import argparse
import contextlib
import datetime
import os
import pathlib
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import deploy_bench as db  # noqa: E402
from _common import (  # noqa: E402
    configure_tensorflow,
    cpu_model,
    format_ratio,
    interleaved,
    intervals_overlap,
    isa_flags,
    paired_ratio,
    quiet_environment,
)

# name: (Keras model, one-pass statistics, SQRT + ADD left in float)
VARIANTS = {
    "plain": ("plain", False, False),
    "se": ("se", False, False),
    "srm": ("srm", False, False),
    "srm one-pass": ("srm", True, False),
    "srm island": ("srm", False, True),
    "srm one-pass + island": ("srm", True, True),
}
BASELINES = ("plain", "se", "srm")
OUTPUT = os.path.join(HERE, "INT8_ALTERNATIVES.md")


@contextlib.contextmanager
def one_pass_int8():
    """SRM's int8 statistics traced in one pass (mean(x^2) - mean^2) while the block runs."""
    from keras_recalib.ops import _tensorflow

    saved = _tensorflow._TFLITE_MOMENTS["tflite_int8"]
    _tensorflow._TFLITE_MOMENTS["tflite_int8"] = _tensorflow._one_pass_moments
    try:
        yield
    finally:
        _tensorflow._TFLITE_MOMENTS["tflite_int8"] = saved


def float_islands(calibrated):
    """Names of the tensors to keep in float: every SQRT's output and that of the ADD feeding it."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=calibrated)
    it.allocate_tensors()
    ops = it._get_ops_details()
    names = {t["index"]: t["name"] for t in it.get_tensor_details()}
    producer = {t: op for op in ops for t in op["outputs"]}
    deny = []
    for op in ops:
        if op["op_name"] == "SQRT":
            deny.append(names[op["outputs"][0]])
            source = producer.get(op["inputs"][0])
            if source is not None and source["op_name"] == "ADD":
                deny.append(names[source["outputs"][0]])
    return deny


def convert_island(model, path, size, calibration):
    """The package's int8 conversion with SQRT and ADD denylisted (non-public TensorFlow API)."""
    import tensorflow as tf
    from tensorflow.lite.python import convert as tf_convert

    from keras_recalib import ops
    from keras_recalib.export import _convert, _flatbuffer

    with tempfile.TemporaryDirectory() as tmp:
        with ops.traced_for("tflite_int8"):
            saved = _convert.export_saved_model(model, pathlib.Path(tmp) / "sm", (size, size, 3))
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.representative_dataset = _convert._representative_dataset(calibration)
        converter._experimental_calibrate_only = True
        with _convert.quiet_native_stderr():
            calibrated = converter.convert()
            quantized = tf_convert.mlir_quantize(
                calibrated, denylisted_nodes=float_islands(calibrated)
            )
    path.write_bytes(_flatbuffer.with_metadata(quantized, _convert.RECORD_NAME, b"int8"))


def convert(model, path, size, calibration, one_pass, island):
    from keras_recalib.export import convert_tflite

    with one_pass_int8() if one_pass else contextlib.nullcontext():
        if island:
            convert_island(model, path, size, calibration)
        else:
            convert_tflite(model, path, "int8", calibration, input_shape=(size, size, 3))


def convert_all(folder, size):
    from keras_recalib.export import verify_tflite

    calibration = db._data(16, size, seed=1)[0]
    held_out = db._data(4, size, seed=2)[0]
    models = {name: db.build("resnet50", name, size) for name in BASELINES}
    files = {}
    for name, (base, one_pass, island) in VARIANTS.items():
        path = pathlib.Path(folder) / f"{name.replace(' ', '_')}.tflite"
        convert(models[base], path, size, calibration, one_pass, island)
        report = verify_tflite(models[base], path, held_out, repeats=1)
        files[name] = {"path": str(path), "cosine": report.cosine_similarity}
        files[name].update(contract=report.meets_contract, **db.delegation(path))
    return files


def stress(folder, size):
    """Cosine against Keras of SRM in two passes (the package) and in one, with BN outputs whose
    channel means are of the order of their stds."""
    import keras

    from keras_recalib.export import verify_tflite

    model = db.build("resnet50", "srm", size)
    rng = np.random.default_rng(3)
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, c).astype("float32"))
            layer.beta.assign(rng.normal(0.0, 1.0, c).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, c).astype("float32"))
    calibration = db._data(16, size, seed=1)[0]
    held_out = db._data(4, size, seed=2)[0]
    rows = []
    for name, one_pass in (("srm", False), ("srm one-pass", True)):
        path = pathlib.Path(folder) / f"stress_{name.replace(' ', '_')}.tflite"
        convert(model, path, size, calibration, one_pass, False)
        report = verify_tflite(model, path, held_out, repeats=1)
        rows.append([name, f"{report.cosine_similarity:.5f}", _yes(report.meets_contract)])
    return rows


def time_files(files, size, rounds):
    x = db._data(1, size)[0]
    functions, keep = {}, []
    for name, entry in files.items():
        it = db.interpreter(entry["path"], 1)
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], x)
        keep.append(it)
        functions[name] = it.invoke
    samples = interleaved(functions, 3, rounds)
    return {(a, b): paired_ratio(samples, a, b) for a in files for b in BASELINES if a != b}


def _yes(flag):
    return "yes" if flag else "no"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--repeat-check", action="store_true")
    parser.add_argument("--write", action="store_true", help=f"also write {OUTPUT}")
    parser.add_argument("--size", type=int, default=224, help="input size (64: smoke test)")
    args = parser.parse_args()
    quiet_environment()
    configure_tensorflow(1)
    from keras_recalib._table import format_table

    runs = 2 if args.repeat_check else 1
    with tempfile.TemporaryDirectory() as folder:
        files = convert_all(folder, args.size)
        results = [time_files(files, args.size, args.rounds) for _ in range(runs)]
        stress_rows = stress(folder, args.size)
    rows, flagged = [], 0
    for name, entry in files.items():
        row = [name]
        for base in BASELINES:
            if name == base:
                row.append("1")
                continue
            cells = [format_ratio(r[name, base], digits=3) for r in results]
            agree = runs == 1 or intervals_overlap(results[0][name, base], results[1][name, base])
            flagged += not agree
            row.append(" / ".join(cells) + ("" if agree else " (!)"))
        outside = ", ".join(f"{k} x{v}" for k, v in entry["builtin_ops"].items()) or "none"
        row += [entry["xnnpack_partitions"], outside, f"{entry['cosine']:.5f}"]
        rows.append(row + [_yes(entry["contract"])])
    head = ["variant", "/ plain", "/ SE", "/ SRM (package)", "XNNPACK partitions"]
    head += ["ops outside XNNPACK", "cosine vs Keras", "int8 contract"]
    flags = ", ".join(k for k, v in isa_flags().items() if v)
    lines = [f"CPU: {cpu_model()}; flags: {flags}; 1 thread, batch 1, {args.size}x{args.size}"]
    lines += ["", format_table(head, rows, markdown=True), ""]
    lines += ["Stress case (random BN gamma, beta, moving variance: channel means ~ stds):", ""]
    head = ["variant", "cosine vs Keras", "int8 contract"]
    lines.append(format_table(head, stress_rows, markdown=True))
    if args.repeat_check:
        lines += ["", f"{flagged} ratios did not reproduce (marked (!))"]
    text = "\n".join(lines)
    print(text)
    if args.write:
        command = " ".join(["python benchmarks/int8_alternatives.py", *sys.argv[1:]])
        intro = (
            f"# SRM's int8 alternatives in ResNet-50\n\nOutput of `{command}` "
            f"({datetime.date.today()}; run 1 / run 2 where repeated). CPU-time ratios, paired "
            "per interleaved round, median [95 % interval]; see the script's docstring.\n\n"
        )
        with open(OUTPUT, "w") as f:
            f.write(intro + text + "\n")


if __name__ == "__main__":
    main()
