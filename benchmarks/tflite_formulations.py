"""SRM's TFLite formulations, one layer at a time: what tracing for TFLite buys.

`python benchmarks/tflite_formulations.py [--rounds 15] [--repeat-check]`

At ResNet-50's four stage shapes, batch 1, one thread, in the LiteRT interpreter with XNNPACK,
float32 and int8: SRM converted from the Keras model (`convert_tflite(model)`, traced for
TFLite: MEANs; one pass in float, two in int8) against SRM converted from a SavedModel written
by `export_saved_model` (traced for TensorFlow: whole-map average poolings, two passes), the
`x * g` floor (the product every gate pays, with a gate from one pixel) and SE. Every figure
is a CPU-time ratio over the floor, paired per interleaved round, with its 95 % interval;
`--repeat-check` measures twice (fresh interpreters) and flags ratios whose intervals do not
overlap. Also each file's agreement with Keras (max error in float32, cosine in int8). Prints
a markdown table; nothing is asserted.
"""

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
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

STAGES = ((56, 256), (28, 512), (14, 1024), (7, 2048))
VARIANTS = ("se", "srm_pooled", "srm")


def _models(shape, keras, kr):
    class Floor(keras.layers.Layer):
        def call(self, x):
            return x * keras.ops.sigmoid(x[:, :1, :1, :])

    rng = np.random.default_rng(0)
    models = {}
    for name in ("floor", "se", "srm"):
        keras.utils.set_random_seed(0)
        inputs = keras.Input(shape)
        layer = Floor() if name == "floor" else kr.get(name)
        models[name] = keras.Model(inputs, layer(inputs))
        if name == "srm":  # random channel-wise weights: the statistics matter
            layer.cfc.assign(rng.normal(0.0, 1.0, layer.cfc.shape).astype("float32"))
    return models


def convert_all(shape, folder, keras, kr):
    from keras_recalib import export

    models = _models(shape, keras, kr)
    rng = np.random.default_rng(1)
    # BN-like activations (per-channel offsets and scales), as a gate sees them.
    offsets = rng.normal(0.0, 1.0, shape[-1]).astype("float32")
    scales = rng.uniform(0.5, 2.0, shape[-1]).astype("float32")
    data = rng.standard_normal((12, *shape)).astype("float32") * scales + offsets
    files, checks = {}, {}
    for q in ("float32", "int8"):
        quantization = None if q == "float32" else "int8"
        calibration = data[:8] if q == "int8" else None
        for name in ("floor", "se", "srm"):
            path = os.path.join(folder, f"{name}-{q}.tflite")
            export.convert_tflite(models[name], path, quantization, calibration, input_shape=shape)
            files[f"{name}/{q}"] = path
        saved = export.export_saved_model(models["srm"], os.path.join(folder, "srm_sm"), shape)
        path = os.path.join(folder, f"srm_pooled-{q}.tflite")
        export.convert_tflite(str(saved), path, quantization, calibration)
        files[f"srm_pooled/{q}"] = path
        for name in ("srm", "srm_pooled"):
            report = export.verify_tflite(models["srm"], files[f"{name}/{q}"], data[8:], 1)
            checks[f"{name}/{q}"] = (
                f"{report.max_abs_error:.1e}"
                if q == "float32"
                else f"{report.cosine_similarity:.5f}"
            )
    return files, checks, data[8:9]


def time_files(files, x, rounds):
    from ai_edge_litert.interpreter import Interpreter

    out = {}
    for q in ("float32", "int8"):
        functions, keep = {}, []
        for label, path in files.items():
            if not label.endswith(q):
                continue
            it = Interpreter(model_path=path, num_threads=1)
            it.allocate_tensors()
            it.set_tensor(it.get_input_details()[0]["index"], x)
            keep.append(it)
            functions[label.split("/")[0]] = it.invoke
        samples = interleaved(functions, 3, rounds)
        out[q] = {v: paired_ratio(samples, v, "floor") for v in VARIANTS}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--repeat-check", action="store_true")
    args = parser.parse_args()
    quiet_environment()
    configure_tensorflow(1)
    import keras

    import keras_recalib as kr

    runs = 2 if args.repeat_check else 1
    rows, flagged = [], 0
    flags = ", ".join(k for k, v in isa_flags().items() if v)
    print(f"CPU: {cpu_model()}; flags: {flags}; 1 thread, batch 1\n")
    for height, channels in STAGES:
        shape = (height, height, channels)
        with tempfile.TemporaryDirectory() as folder:
            files, checks, x = convert_all(shape, folder, keras, kr)
            results = [time_files(files, x, args.rounds) for _ in range(runs)]
        for q in ("float32", "int8"):
            row = [f"{height}x{height}x{channels}", q]
            for v in VARIANTS:
                cells = [format_ratio(r[q][v]) for r in results]
                agree = runs == 1 or intervals_overlap(results[0][q][v], results[1][q][v])
                flagged += not agree
                row.append(" / ".join(cells) + ("" if agree else " (!)"))
            row += [checks[f"srm_pooled/{q}"], checks[f"srm/{q}"]]
            rows.append(row)
    head = ["stage", "TFLite", "SE / floor", "SRM pooled / floor", "SRM MEANs / floor"]
    head += ["pooled vs Keras", "MEANs vs Keras"]
    from keras_recalib._table import format_table

    print(format_table(head, rows, markdown=True))
    if args.repeat_check:
        print(f"\n{flagged} ratios did not reproduce (marked (!))")


if __name__ == "__main__":
    main()
