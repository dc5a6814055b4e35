"""Backward compatibility: every committed artifact in saved_models/ still loads with the
current code and reproduces the outputs stored when it was generated."""

import json
import pathlib

import keras
import numpy as np
import pytest

import keras_recalib as kr
from keras_recalib import export

ROOT = pathlib.Path(__file__).resolve().parents[1] / "saved_models"
MANIFEST = json.loads((ROOT / "manifest.json").read_text())
NAMES = sorted(MANIFEST["artifacts"])


def stored(name):
    with np.load(ROOT / name / "data.npz") as data:
        return {k: data[k] for k in data.files}


def test_every_layer_has_a_golden_artifact():
    covered = {name.removeprefix("layer_") for name in NAMES}
    assert set(kr.available()) <= covered


def test_artifacts_stay_small():
    total = sum(f.stat().st_size for f in ROOT.rglob("*") if f.is_file())
    assert total < 6 * 2**20, f"saved_models/ holds {total / 2**20:.1f} MiB"


@pytest.mark.parametrize("name", NAMES)
def test_keras_file_reproduces_outputs(name):
    data = stored(name)
    model = keras.saving.load_model(ROOT / name / "model.keras", safe_mode=True)
    np.testing.assert_allclose(
        model(data["x"], training=False), data["keras"], rtol=1e-5, atol=1e-5
    )


@pytest.mark.tensorflow_only
@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_saved_model_reproduces_outputs(name):
    import tensorflow as tf

    data = stored(name)
    loaded = tf.saved_model.load(str(ROOT / name / "saved_model"))
    (out,) = loaded.signatures["serving_default"](tf.constant(data["x"])).values()
    np.testing.assert_allclose(out, data["keras"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_tflite_files_reproduce_outputs(name):
    data = stored(name)
    # TFLite's float kernels sum in another order than TensorFlow's: 1e-5 relative to the
    # output's scale.
    scale = max(1.0, float(np.max(np.abs(data["keras"]))))
    np.testing.assert_allclose(
        export.run_tflite(ROOT / name / "float32.tflite", data["x"]),
        data["keras"],
        rtol=0,
        atol=1e-5 * scale,
    )
    int8 = export.run_tflite(ROOT / name / "int8.tflite", data["x"])
    # Integer kernels are deterministic; allow one output quantization step across platforms.
    levels = np.unique(data["int8"])
    step = float(np.min(np.diff(levels))) if len(levels) > 1 else 0.0
    np.testing.assert_allclose(int8, data["int8"], rtol=0, atol=step * 1.01 + 1e-7)
