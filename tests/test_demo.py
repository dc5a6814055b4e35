"""The demo, gate inspection and the embedded dataset (the `inspect` command: test_cli.py)."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_recalib as kr
from keras_recalib import cli
from keras_recalib.data import CLASS_NAMES, style_textures


def run_cli(capsys, *argv):
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- dataset -----------------------------------------------------------------------------------


def test_style_textures_is_deterministic_balanced_and_in_range():
    x, y = style_textures(120, image_size=16, seed=3)
    again, _ = style_textures(120, image_size=16, seed=3)
    np.testing.assert_array_equal(x, again)
    assert x.shape == (120, 16, 16, 3) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 255.0
    assert np.bincount(y).tolist() == [20] * len(CLASS_NAMES)
    assert not np.array_equal(x, style_textures(120, image_size=16, seed=4)[0])


def test_style_textures_classes_differ_in_style_not_mean_colour():
    x, y = style_textures(1200, seed=0)

    def nearest_centroid_accuracy(features):
        centroids = np.stack([features[y == k].mean(0) for k in range(len(CLASS_NAMES))])
        distances = ((features[:, None] - centroids[None]) ** 2).sum(-1)
        return np.mean(distances.argmin(1) == y)

    chance = 1 / len(CLASS_NAMES)
    assert nearest_centroid_accuracy(x.mean((1, 2))) < chance + 0.1
    assert nearest_centroid_accuracy(x.std((1, 2))) > chance + 0.2


def test_style_textures_rejects_bad_sizes():
    with pytest.raises(ValueError, match="Received: num_samples=0"):
        style_textures(0)


# --- inspect -----------------------------------------------------------------------------------


def gated_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 1, name="stem")(inputs)
    srm = kr.StyleRecalibration(name="srm")
    x = srm(x)
    srm.cfc.assign(np.random.default_rng(0).normal(size=(6, 2)))
    inner_inputs = keras.Input((8, 8, 6))
    inner = keras.Model(inner_inputs, kr.StyleRecalibration(name="inner_srm")(inner_inputs))
    return keras.Model(inputs, inner(x))


# --- demo --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_demo_runs_end_to_end_offline(tmp_path, capsys):
    out = tmp_path / "demo"
    code, stdout, err = run_cli(
        capsys,
        "demo",
        "--out",
        out,
        "--samples",
        "96",
        "--epochs",
        "1",
        "--steps",
        "2",
        "--image-size",
        "16",
        "--batch-size",
        "16",
        "--depth",
        "8",
        "--recalibration",
        "se",
    )
    assert code == 0, err
    rows = json.loads((out / "results.json").read_text())
    assert [r["module"] for r in rows] == ["none", "srm", "se"]
    for row in rows:
        folder = out / row["model"]
        for name in ["model.keras", "float32.tflite", "int8.tflite", "saved_model/saved_model.pb"]:
            assert (folder / name).is_file(), name
        assert row["tflite_float32_max_abs_error"] < 1e-4
        assert row["tflite_float32_top1_agreement"] == 1.0
        assert 0.0 <= row["accuracy"] <= 1.0
        if row["module"] != "none":
            assert (folder / "gates.png").stat().st_size > 5000
    srm_parameters = rows[1]["parameters"] - rows[0]["parameters"]
    assert srm_parameters > 0
    assert "int8 cos" in stdout and "srm" in stdout
    reloaded = keras.saving.load_model(out / rows[1]["model"] / "model.keras")
    x = style_textures(4, image_size=16, seed=9)[0]
    loaded = tf.saved_model.load(str(out / rows[1]["model"] / "saved_model"))
    np.testing.assert_allclose(loaded.serve(x), reloaded(x), atol=1e-4)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--epochs", "0"], "--epochs must be >= 1"),
        (["--recalibration", "srm,bogus"], "unknown module(s) bogus"),
        (["--depth", "21"], "invalid choice"),
        (["--samples", "10"], "--samples must be >= 60"),
        (["--data", "{tmp}/missing"], "is not a folder"),
        (["--data", "{tmp}/empty"], "cannot read images"),
        (["--out", "{tmp}/full"], "is not empty; pass --overwrite"),
        (["--out", "{tmp}/afile"], "is not a folder"),
    ],
)
def test_demo_errors_are_one_line(tmp_path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("precious")
    (tmp_path / "afile").write_text("")
    argv = [a.format(tmp=tmp_path) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    code, _, err = run_cli(capsys, "demo", *argv)
    assert code == 2
    lines = [line for line in err.splitlines() if ": error:" in line]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err
    assert (tmp_path / "full" / "keep.txt").read_text() == "precious"


def test_demo_refuses_an_unwritable_out(tmp_path, capsys):
    import os

    if os.geteuid() == 0:
        target = "/proc/keras_recalib_demo"  # not writable even for root
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "out"
    code, _, err = run_cli(capsys, "demo", "--out", target)
    assert code == 2 and "cannot write to --out" in err and "Traceback" not in err
