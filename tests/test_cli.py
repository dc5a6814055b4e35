"""The `keras-recalib` command line: its mechanics, and the export, inspect and zoo commands.

The demo's own runs are tested in test_demo.py.
"""

import importlib
import json
import os
import re
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from contract_utils import random_inputs, randomize_weights
from test_inspect import gated_model

import keras_recalib as kr
from keras_recalib import cli
from keras_recalib.cli import _common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(capsys, *argv):
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse: --help and usage errors
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_line(err):
    """The one error line of a failed command (and proof that there is only one)."""
    lines = [line for line in err.splitlines() if ": error:" in line]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def run_python(code, env=None, timeout=300):
    """`code` in a fresh interpreter with this checkout first on the path."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@keras.saving.register_keras_serializable(package="keras_recalib_cli_tests")
class CumulativeProduct(keras.layers.Layer):
    """A layer whose op (Cumprod) has no TFLite built-in kernel."""

    def call(self, x):
        return tf.math.cumprod(x, axis=1)


def small_classifier(size=8):
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    srm = kr.StyleRecalibration(name="srm")
    x = srm(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(5)(x))
    randomize_weights(srm)
    return model


# --- mechanics: the parser needs no TensorFlow --------------------------------------------------


def test_help_and_usage_errors_import_neither_tensorflow_nor_keras():
    result = run_python(
        """
import contextlib, io, json, sys
import keras_recalib_launcher as launcher
codes = {}
for argv in (
    ["--help"], ["demo", "--help"], ["export", "--help"], ["inspect", "--help"],
    ["zoo", "--help"], ["zoo", "--depth", "x"], ["export", "missing.keras", "--tflite", "m.tflite"],
    ["bogus"],
):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            codes[" ".join(argv)] = launcher.main(argv)
        except SystemExit as exit_:
            codes[" ".join(argv)] = exit_.code
heavy = sorted(m for m in ("tensorflow", "keras") if m in sys.modules)
print(json.dumps({"codes": codes, "heavy": heavy}))
"""
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["heavy"] == []
    codes = report["codes"]
    for name in ["", "demo ", "export ", "inspect ", "zoo "]:
        assert codes[f"{name}--help"] == 0
    assert codes["zoo --depth x"] == 2
    assert codes["export missing.keras --tflite m.tflite"] == 2
    assert codes["bogus"] == 2


def test_console_script_help_lists_every_command():
    result = run_python(
        "import keras_recalib_launcher, sys; sys.exit(keras_recalib_launcher.main())"
    )
    # No command: the help, and exit status 2.
    assert result.returncode == 2
    for name in cli.COMMANDS:
        assert re.search(rf"^\s+{name}\s+\S", result.stdout, re.MULTILINE), result.stdout


def test_every_command_module_has_the_interface():
    for name, module_name in cli.COMMANDS.items():
        module = importlib.import_module(module_name)
        assert isinstance(module.HELP, str) and module.HELP.strip(), name
        assert callable(module.add_arguments) and callable(module.run), name


def test_console_script_entry_point_is_the_launcher():
    setup = open(os.path.join(ROOT, "setup.cfg")).read()
    assert re.search(r"^\s+keras-recalib = keras_recalib_launcher:main$", setup, re.MULTILINE)
    assert re.search(r"^py_modules = keras_recalib_launcher$", setup, re.MULTILINE)


# --- mechanics: TensorFlow's start-up noise -----------------------------------------------------


def test_native_noise_is_dropped_and_everything_else_passes(capfd):
    with _common.native_stderr_without_noise():
        os.write(
            2,
            b"WARNING: All log messages before absl::InitializeLog() is called are written to "
            b"STDERR\nI0000 00:00:1.0 1 cudart_stub.cc:31] Could not find cuda drivers on your "
            b"machine, GPU will not be used.\nE0000 00:00:2.0 1 cuda_platform.cc:52] failed call "
            b"to cuInit: INTERNAL: CUDA error\nE0000 00:00:3.0 1 graph.cc:9] a real problem\n",
        )
        print("from Python", file=sys.stderr)
    err = capfd.readouterr().err
    # Python's sys.stderr may be a capture object of its own: the order is not compared.
    assert sorted(err.splitlines()) == [
        "E0000 00:00:3.0 1 graph.cc:9] a real problem",
        "from Python",
    ]


@pytest.mark.slow
def test_commands_start_tensorflow_quietly_unless_the_user_set_the_log_level():
    code = (
        "import sys, keras_recalib_launcher as launcher; "
        "sys.exit(launcher.main(['zoo', '--depth', '18', '--modules', 'srm']))"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    markers = ("absl::InitializeLog", "cudart_stub", "cuInit", "cpu_feature_guard")
    quiet = run_python(code, env)
    assert quiet.returncode == 0, quiet.stderr
    assert "srm" in quiet.stdout
    assert not [m for m in markers if m in quiet.stderr], quiet.stderr
    loud = run_python(code, {**env, "TF_CPP_MIN_LOG_LEVEL": "0"})
    assert loud.returncode == 0, loud.stderr
    if not [m for m in markers if m in loud.stderr]:
        pytest.skip("TensorFlow prints no start-up noise on this machine: nothing to hide")


# --- keras_recalib.load_model and unreadable model files ----------------------------------------


def test_load_model_round_trip(tmp_path):
    model = small_classifier()
    model.save(tmp_path / "m.keras")
    loaded = kr.load_model(str(tmp_path / "m.keras"), compile=False)
    assert isinstance(loaded.get_layer("srm"), kr.StyleRecalibration)
    x = random_inputs((2, 8, 8, 3))
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6, atol=1e-6)


def write_unreadable_models(folder):
    (folder / "empty.keras").write_bytes(b"")
    (folder / "garbage.keras").write_text("not a zip file")
    with zipfile.ZipFile(folder / "other.keras", "w") as archive:
        archive.writestr("notes.txt", "a zip, but not a Keras model")


@pytest.mark.parametrize(
    "name,error,message",
    [
        ("missing.keras", FileNotFoundError, "No such file"),
        ("empty.keras", ValueError, "is empty (0 bytes)"),
        ("garbage.keras", ValueError, "is not a .keras file"),
        ("other.keras", ValueError, "without the config.json"),
    ],
)
def test_load_model_says_what_is_wrong_with_the_file(tmp_path, name, error, message):
    write_unreadable_models(tmp_path)
    with pytest.raises(error) as info:
        kr.load_model(tmp_path / name)
    assert message in str(info.value)
    assert str(info.value).endswith(f"Received: filepath={str(tmp_path / name)!r}")
    assert "File not found" not in str(info.value)


@pytest.mark.slow
def test_a_plain_import_registers_the_layers_for_keras_load_model(tmp_path):
    small_classifier().save(tmp_path / "m.keras")
    result = run_python(
        "import keras, keras_recalib\n"
        f"model = keras.saving.load_model({str(tmp_path / 'm.keras')!r})\n"
        "print(type(model.get_layer('srm')).__name__)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["StyleRecalibration"]


# --- errors: one line, exit status 2 ------------------------------------------------------------


@pytest.mark.parametrize(
    "argv,message",
    [
        (["export", "{tmp}/missing.keras", "--tflite", "{tmp}/m.tflite"], "no such file"),
        (["export", "{tmp}/empty.keras", "--tflite", "{tmp}/m.tflite"], "is empty (0 bytes)"),
        (["export", "{tmp}/garbage.keras", "--tflite", "{tmp}/m.tflite"], "is not a .keras file"),
        (["export", "{tmp}/other.keras", "--tflite", "{tmp}/m.tflite"], "without the config"),
        (["export", "{tmp}/m.keras", "--tflite", "{tmp}/m.tflite", "--bogus"], "unrecognized"),
        (["export", "{tmp}/m.keras", "--quantize", "int3"], "invalid choice"),
        (
            ["export", "{tmp}/m.keras", "--tflite", "{tmp}/m.tflite", "--quantize", "int8"],
            "needs --calibration-data",
        ),
        (["export", "{tmp}/m.keras"], "nothing to do"),
        (
            ["export", "{tmp}/m.keras", "--tflite", "{tmp}/m.tflite", "--input-shape", "a,b"],
            "--input-shape",
        ),
        (
            ["export", "{tmp}/m.keras", "--tflite", "{tmp}/no_dir/m.tflite"],
            "/no_dir does not exist (create it first)",
        ),
        (
            ["export", "{tmp}/m.keras", "--saved-model", "{tmp}/no_dir/sm"],
            "/no_dir does not exist (create it first)",
        ),
        (["export", "{tmp}/m.keras", "--saved-model", "{tmp}/full"], "no SavedModel in it"),
        (["export", "{tmp}/m.keras", "--tflite", "{tmp}/full"], "is a folder; give a file name"),
        (
            ["export", "{tmp}/m.keras", "--tflite", "{tmp}/m.tflite", "--calibration-data", "nope"],
            "no such file or folder: nope",
        ),
        (["export", "{tmp}/flex.keras", "--tflite", "{tmp}/m.tflite"], "Cumprod"),
        (["inspect", "{tmp}/m.keras", "--images", "{tmp}/missing_dir"], "--images: no such"),
        (["inspect", "{tmp}/empty.keras", "--images", "{tmp}/x.npz"], "is empty (0 bytes)"),
        (
            ["inspect", "{tmp}/m.keras", "--images", "{tmp}/x.npz", "--plot", "{tmp}/no_dir/g.png"],
            "does not exist",
        ),
        (["inspect", "{tmp}/m.keras", "--images", "{tmp}/bad.npz"], "not a readable .npz"),
        (["zoo", "--modules", "srm,nope"], "unknown module nope"),
        (["zoo", "--depth", "42"], "--depth must be one of"),
        (["zoo", "--input-size", "8"], "--input-size must be >= 32"),
    ],
)
def test_errors_are_one_line_without_traceback(tmp_path, capsys, argv, message):
    small_classifier().save(tmp_path / "m.keras")
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 1, name="stem")(inputs)
    keras.Model(inputs, CumulativeProduct(name="running_product")(x)).save(tmp_path / "flex.keras")
    write_unreadable_models(tmp_path)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("precious")
    np.savez(tmp_path / "x.npz", x=random_inputs((4, 8, 8, 3)))
    (tmp_path / "bad.npz").write_text("not an npz")
    code, out, err = run_cli(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert code == 2
    assert message in error_line(err)
    assert not (tmp_path / "no_dir").exists()  # refused, not created
    assert (tmp_path / "full" / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["keep.txt"]


def test_no_command_prints_the_help(capsys):
    code, out, _ = run_cli(capsys)
    assert code == 2 and "COMMAND" in out


# --- export -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_export_everything_with_verification(tmp_path, capsys):
    small_classifier(12).save(tmp_path / "m.keras")
    np.savez(tmp_path / "cal.npz", x=random_inputs((40, 12, 12, 3)))
    code, out, err = run_cli(
        capsys,
        "export",
        tmp_path / "m.keras",
        "--saved-model",
        tmp_path / "sm",
        "--tflite",
        tmp_path / "m.tflite",
        "--quantize",
        "int8",
        "--calibration-data",
        tmp_path / "cal.npz",
        "--verify",
    )
    assert code == 0, err
    assert "verifying in the LiteRT interpreter" in err
    assert re.search(r"^export\s+result$", out, re.MULTILINE), out
    # The model's count as PyTorch counts it: SRM adds 2 per channel and its BN's affine pair.
    trainable = 3 * 3 * 3 * 8 + 8 + 8 * 2 + 8 * 2 + 8 * 5 + 5
    assert f"({trainable:,} trainable parameters, 16 non-trainable values)" in out
    assert re.search(r"^float ops inside\s+none$", out, re.MULTILINE), out
    assert "cosine similarity" in out
    assert (tmp_path / "sm" / "saved_model.pb").is_file() and (tmp_path / "m.tflite").is_file()
    # The SavedModel folder now holds a SavedModel: exporting into it again is allowed.
    code, _, err = run_cli(capsys, "export", tmp_path / "m.keras", "--saved-model", tmp_path / "sm")
    assert code == 0, err


@pytest.mark.slow
def test_export_onnx_with_verification(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    small_classifier(12).save(tmp_path / "m.keras")
    code, out, err = run_cli(
        capsys,
        "export",
        tmp_path / "m.keras",
        "--onnx",
        tmp_path / "m.onnx",
        "--input-shape",
        "12,12,3",
        "--verify",
    )
    assert code == 0, err
    assert "verifying in ONNX Runtime" in err
    assert re.search(r"^contract\s+met", out, re.MULTILINE), out
    assert (tmp_path / "m.onnx").is_file()
    code, _, err = run_cli(capsys, "export", tmp_path / "m.keras", "--verify")
    assert code == 2 and "nothing to do" in error_line(err)


def test_export_calibration_from_an_image_folder(tmp_path, capsys):
    small_classifier(12).save(tmp_path / "m.keras")
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        pixels = rng.integers(0, 255, (20, 16, 3)).astype("uint8")
        (images / f"{i}.png").write_bytes(tf.io.encode_png(pixels).numpy())
    code, out, err = run_cli(
        capsys,
        "export",
        tmp_path / "m.keras",
        "--tflite",
        tmp_path / "m.tflite",
        "--quantize",
        "int8",
        "--calibration-data",
        images,
        "--verify",
    )
    assert code == 0, err
    assert "top-1 agreement" in out


# --- inspect ------------------------------------------------------------------------------------


def test_inspect_prints_a_table_and_plots(tmp_path, capsys):
    gated_model().save(tmp_path / "m.keras")
    np.savez(tmp_path / "images.npz", x=np.random.default_rng(3).normal(size=(12, 8, 8, 3)))
    code, out, err = run_cli(
        capsys,
        "inspect",
        tmp_path / "m.keras",
        "--images",
        tmp_path / "images.npz",
        "--plot",
        tmp_path / "gates.png",
    )
    assert code == 0, err
    assert "2 recalibration layers, 12 images" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert rows["layer"][:3] == ["layer", "kind", "gate"]
    # The inner SRM is zero-initialised: its gate is sigmoid(0) = 0.5 everywhere.
    assert rows["inner_srm"][1:6] == ["StyleRecalibration", "0.500", "0.000", "0.500", "0.500"]
    assert rows["srm"][2] != "0.500"
    png = (tmp_path / "gates.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


# --- zoo ----------------------------------------------------------------------------------------


def test_zoo_prints_added_parameters_and_macs(capsys):
    code, out, err = run_cli(capsys, "zoo", "--depth", "50", "--modules", "srm,se")
    assert code == 0, err
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert rows["module"] == ["module", "params", "+params", "MACs", "+MACs"]
    assert rows["none"][1:3] == ["25.56M", "4.089G"]
    assert rows["srm"][1:3] == ["25.62M", "+60,416"]
    assert rows["srm"][4] == "+22.17M"
    assert rows["se"][1:3] == ["28.09M", "+2,530,992"]
