"""Regenerates the golden artifacts in saved_models/ (the backward-compatibility promise).

    python saved_models/generate.py                        # every artifact
    python saved_models/generate.py layer_srm layer_se     # only these

For each entry: a tiny model around one layer with fixed, seeded random weights (or a small
SRM ResNet trained briefly on the embedded style data), saved as `model.keras`,
`saved_model/`, `float32.tflite` and `int8.tflite`, plus `data.npz` with inputs and the outputs
this release computes. `tests/test_golden.py` loads every committed artifact with the current
code and must reproduce those outputs. Regenerate only on a deliberate format change, and say
so in the commit.
"""

import json
import os
import pathlib
import shutil
import sys
import zlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_recalib as kr  # noqa: E402
from keras_recalib import export  # noqa: E402
from keras_recalib._table import format_table  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
CHANNELS = 8
SPATIAL = 12

# Short name -> constructor arguments for an 8-channel map (widths kept >= 1).
LAYERS = {
    "srm": {},
    "se": {"reduction": 4},
    "eca": {},
    "cbam": {"reduction": 4},
    "ge": {},
    "simam": {},
    "sge": {"groups": 4},
    "scconv": {},
    "ca": {},
    "triplet": {},
}


def fix_weights(model, seed):
    """Deterministic, well-conditioned weights (positive variances and BN scales)."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        name = variable.path.split("/")[-1]
        shape = tuple(variable.shape)
        if "variance" in name or "gamma" in name:
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(scale=0.3, size=shape)
        variable.assign(value.astype(variable.dtype))


def noise_images(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, SPATIAL, SPATIAL, 3)) * rng.uniform(0.5, 2.0, (n, 1, 1, 3))
    return (x + rng.normal(scale=0.5, size=(n, 1, 1, 3))).astype("float32")


def style_images(n, seed):
    return kr.data.style_textures(n, image_size=SPATIAL, seed=seed)[0] / 127.5 - 1.0


def layer_entry(name, kwargs, seed):
    """A 3x3 conv to 8 channels, the layer, a 1x1 conv; fixed random weights."""
    inputs = keras.Input((SPATIAL, SPATIAL, 3), name="image")
    x = keras.layers.Conv2D(CHANNELS, 3, padding="same", name="stem")(inputs)
    x = kr.get(name, **kwargs)(x)
    outputs = keras.layers.Conv2D(4, 1, name="head")(x)
    model = keras.Model(inputs, outputs, name=f"golden_{name}")
    fix_weights(model, seed)
    return model, noise_images


def resnet_entry(seed):
    """A small SRM ResNet trained briefly on the embedded style data, so that its weights and
    moving statistics are those of a real (if short) training run rather than random."""
    from keras_recalib import models

    model = models.cifar_resnet(
        8,
        recalibration="srm",
        num_classes=len(kr.data.CLASS_NAMES),
        input_shape=(SPATIAL, SPATIAL, 3),
    )
    x, y = kr.data.style_textures(512, image_size=SPATIAL, seed=seed)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x / 127.5 - 1.0, y, batch_size=64, epochs=3, verbose=0, shuffle=False)
    return model, style_images


def entries():
    found = {
        f"layer_{name}": (lambda seed, n=name, k=kwargs: layer_entry(n, k, seed))
        for name, kwargs in LAYERS.items()
        if name in kr.available()
    }
    found["srm_cifar_resnet8"] = resnet_entry
    return found


def generate(name, build, seed):
    target = HERE / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir()
    keras.utils.set_random_seed(seed)
    model, images = build(seed)
    calibration, x = images(64, seed), images(8, seed + 1)
    model.save(target / "model.keras")
    export.export_saved_model(model, target / "saved_model")
    export.convert_tflite(model, target / "float32.tflite")
    export.convert_tflite(
        model, target / "int8.tflite", quantization="int8", representative_data=calibration
    )
    expected = np.asarray(model(x, training=False))
    int8 = export.run_tflite(target / "int8.tflite", x)
    np.savez_compressed(target / "data.npz", x=x, keras=expected, int8=int8)
    # The README's int8 figures: 64 held-out images, not the 8 stored ones.
    held_out = images(64, seed + 2)
    int8_report = export.verify_tflite(model, target / "int8.tflite", held_out)
    float_report = export.verify_tflite(model, target / "float32.tflite", held_out)
    return {
        "model": model.name,
        "seed": seed,
        "float32_max_abs_error": float(f"{float_report.max_abs_error:.3g}"),
        "int8_cosine": round(int8_report.cosine_similarity, 5),
        "int8_max_abs_error": float(f"{int8_report.max_abs_error:.3g}"),
        "int8_fully_quantized": int8_report.fully_int8,
        "int8_kib": round(int8_report.file_size_bytes / 1024, 1),
        "float32_kib": round(float_report.file_size_bytes / 1024, 1),
    }


def markdown_table(manifest):
    """The per-artifact figures as the Markdown table in docs/export.md."""
    header = [
        "artifact",
        "float32 max abs error",
        "int8 cosine",
        "int8 max abs error",
        "fully int8",
        "float32 KiB",
        "int8 KiB",
    ]
    rows = [
        [
            name,
            f"{entry['float32_max_abs_error']:.1e}",
            f"{entry['int8_cosine']:.4f}",
            f"{entry['int8_max_abs_error']:.3f}",
            "yes" if entry["int8_fully_quantized"] else "no",
            entry["float32_kib"],
            entry["int8_kib"],
        ]
        for name, entry in sorted(manifest["artifacts"].items())
    ]
    return format_table(header, rows, markdown=True, align="l" * len(header))


def main(argv):
    available = entries()
    names = argv or sorted(available)
    unknown = sorted(set(names) - set(available))
    if unknown:
        raise SystemExit(f"unknown artifacts {unknown}; known: {sorted(available)}")
    manifest_path = HERE / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest.setdefault("artifacts", {})
    for name in names:
        print(f"generating {name}", flush=True)
        # A seed from the name alone: adding an artifact never changes another one's weights.
        seed = zlib.crc32(name.encode()) % 10_000
        manifest["artifacts"][name] = generate(name, available[name], seed=seed)
    manifest["generated_with"] = {
        "keras_recalib": kr.__version__,
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
    }
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    print(markdown_table(manifest))


if __name__ == "__main__":
    main(sys.argv[1:])
