"""The demo experiment, its datasets, its command line, the README script and gate inspection.

The experiment runs once, on a small configuration (module-scoped fixture), and the tests read
its results: every model learns for every seed, nothing diverges, the spread is reported, and
`results.json` follows the schema of docs/demo.md. No test asserts which module wins.
"""

import argparse
import importlib.util
import io
import json
import math
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_recalib as kr
from keras_recalib import demo
from keras_recalib.cli import demo as demo_command
from keras_recalib.cli._common import CommandError
from keras_recalib.data import (
    CLASS_NAMES,
    TEXTURE_CLASSES,
    camera_style,
    held_out_mask,
    style_textures,
    texture_patches,
)

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Small enough for a test (well under a minute of CPU), large enough that every network learns.
SMALL = demo.DemoConfig(
    modules=("none", "srm"),
    seeds=2,
    epochs=4,
    warmup_epochs=0.5,
    batch_size=32,
    train_per_class=256,
    held_out_per_class=60,
)


# --- texture_patches ---------------------------------------------------------------------------


def test_texture_patches_are_deterministic_balanced_and_in_range():
    train, held_out, classes = texture_patches(40, 20, patch_size=12, seed=5)
    again = texture_patches(40, 20, patch_size=12, seed=5)
    np.testing.assert_array_equal(train[0], again[0][0])
    np.testing.assert_array_equal(held_out[1], again[1][1])
    assert classes == list(TEXTURE_CLASSES)
    assert train[0].shape == (120, 12, 12, 3) and train[0].dtype == np.float32
    assert held_out[0].shape == (60, 12, 12, 3) and held_out[1].dtype == np.int32
    assert np.bincount(train[1]).tolist() == [40] * 3
    assert np.bincount(held_out[1]).tolist() == [20] * 3
    assert 0.0 <= train[0].min() and train[0].max() <= 255.0
    assert not np.array_equal(train[0], texture_patches(40, 20, patch_size=12, seed=6)[0][0])


def test_held_out_tiles_are_one_per_row_and_column():
    mask = held_out_mask(512)
    assert mask.sum() == 4 * 128 * 128
    tiles = mask.reshape(4, 128, 4, 128).all(axis=(1, 3))
    assert tiles.sum(0).tolist() == [1] * 4 and tiles.sum(1).tolist() == [1] * 4


def test_patches_never_cross_the_split():
    from keras_recalib.data import _patch_corners

    mask = held_out_mask(512)
    rng = np.random.default_rng(0)
    for inside in (mask, ~mask):
        for row, column in _patch_corners(inside, 24, 400, rng):
            assert inside[row : row + 24, column : column + 24].all()


def test_camera_colour_does_not_give_the_class_away():
    train, _, classes = texture_patches(300, 1, patch_size=16, seed=1)
    x, y = train
    means = x.mean(axis=(1, 2)) + 1.0
    chromaticity = np.stack([means[:, 0] / means[:, 1], means[:, 2] / means[:, 1]], axis=1)
    centroids = np.stack([chromaticity[y == k].mean(0) for k in range(len(classes))])
    nearest = ((chromaticity[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
    assert np.mean(nearest == y) < 1 / len(classes) + 0.1


def test_camera_style_varies_exposure_white_balance_and_noise():
    flat = np.full((200, 8, 8), 0.5, np.float32)
    images = camera_style(flat, np.random.default_rng(0))
    assert images.shape == (200, 8, 8, 3) and images.dtype == np.float32
    means = images.mean(axis=(1, 2))
    assert means[:, 1].std() > 10  # exposure and contrast change the grey level
    assert np.abs(means[:, 0] / means[:, 1] - 1).max() > 0.2  # white balance
    assert images.std(axis=(1, 2)).max() > 2  # sensor noise on a flat patch


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"train_per_class": 0}, "Received: train_per_class=0"),
        ({"patch_size": 200}, "Received: patch_size=200"),
        ({"classes": ("brick",)}, "Received: classes=('brick',)"),
        ({"classes": ("brick", "moon")}, "Received: classes=('brick', 'moon')"),
    ],
)
def test_texture_patches_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        texture_patches(**kwargs)


# --- style_textures ----------------------------------------------------------------------------


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


# --- the other tasks ------------------------------------------------------------------------------


def test_style_textures_task_has_the_configured_sizes():
    config = demo.DemoConfig(
        task="style_textures", train_per_class=10, held_out_per_class=5, image_size=16
    )
    train, held_out, classes, source = demo._task_data(config)
    assert classes == list(CLASS_NAMES) and "style_textures" in source
    assert train[0].shape == (60, 16, 16, 3) and held_out[0].shape == (30, 16, 16, 3)


def test_an_image_folder_is_split_and_resized(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("cats", "dogs"):
        (tmp_path / name).mkdir()
        for i in range(10):
            pixels = rng.integers(0, 256, (20, 24, 3)).astype("uint8")
            keras.utils.save_img(tmp_path / name / f"{i}.png", pixels)
    train, held_out, classes, source = demo._task_data(
        demo.DemoConfig(data=str(tmp_path), image_size=16)
    )
    assert classes == ["cats", "dogs"] and str(tmp_path) in source
    assert len(train[0]) + len(held_out[0]) == 20 and len(held_out[0]) == 4
    assert train[0].shape[1:] == (16, 16, 3) and train[1].dtype == np.int32


# --- compare: the criterion -------------------------------------------------------------------


def test_compare_exceeds_only_beyond_twice_the_pooled_std():
    within = demo.compare([0.80, 0.82, 0.84], [0.81, 0.83, 0.85], "none", "srm")
    assert within["mean_difference"] == pytest.approx(0.01)
    assert within["pooled_std"] == pytest.approx(0.02)
    assert within["threshold"] == pytest.approx(0.04)
    assert within["exceeds_spread"] is False
    assert within["per_seed_differences"] == pytest.approx([0.01] * 3)
    assert "within twice the seed spread" in within["verdict"]
    assert within["borderline"] is False
    beyond = demo.compare([0.80, 0.81, 0.82], [0.70, 0.71, 0.72], "none", "se")
    assert beyond["exceeds_spread"] is True and beyond["mean_difference"] == pytest.approx(-0.1)
    assert "SE is lower than the plain network by 0.1000" in beyond["verdict"]
    assert beyond["borderline"] is False
    # 0.035 against a threshold of 0.04: within it, but too close to call.
    close = demo.compare([0.80, 0.82, 0.84], [0.835, 0.855, 0.875], "none", "srm")
    assert close["exceeds_spread"] is False and close["borderline"] is True
    assert "too close to call with 3 seeds" in close["verdict"]
    single = demo.compare([0.8], [0.9])
    assert single["exceeds_spread"] is None and single["pooled_std"] is None
    assert single["borderline"] is None
    assert "one seed" in single["verdict"]
    with pytest.raises(ValueError, match="Received: baseline="):
        demo.compare([0.8, 0.9], [0.8])


# --- the experiment ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    log = io.StringIO()
    results = demo.run_experiment(SMALL, out=out, progress=demo.LineProgress(log))
    return results, out, log.getvalue()


def test_every_model_learns_for_every_seed(experiment):
    results, _, _ = experiment
    chance = 1 / len(results["data"]["classes"])
    for entry in results["models"]:
        assert [run["seed"] for run in entry["runs"]] == [0, 1]
        for run in entry["runs"]:
            assert run["accuracy"] > chance + 0.2, (entry["module"], run)
            assert run["finite"] is True
            losses = [epoch["loss"] for epoch in run["epochs"]]
            assert all(math.isfinite(loss) for loss in losses)
            assert losses[-1] < losses[0]


def test_the_spread_and_the_comparison_are_reported(experiment):
    results, out, _ = experiment
    (plain, srm) = results["models"]
    accuracies = [run["accuracy"] for run in srm["runs"]]
    assert srm["accuracy"]["mean"] == pytest.approx(np.mean(accuracies))
    assert srm["accuracy"]["std"] == pytest.approx(np.std(accuracies, ddof=1))
    (comparison,) = results["comparisons"]
    assert comparison == demo.compare(
        [r["accuracy"] for r in plain["runs"]], accuracies, "none", "srm"
    )
    text = (out / "results.txt").read_text()
    assert f"{srm['accuracy']['mean']:.3f} ± {srm['accuracy']['std']:.3f}" in text
    assert comparison["verdict"] in text


def test_results_json_follows_the_documented_schema(experiment):
    results, out, _ = experiment
    assert json.loads((out / "results.json").read_text()) == results
    assert set(results) == {
        "schema", "config", "data", "environment", "parameter_convention", "criterion",
        "models", "comparisons", "timing",
    }  # fmt: skip
    assert results["schema"] == demo.SCHEMA == "keras_recalib.demo/1"
    config = results["config"]
    assert config["modules"] == ["none", "srm"] and config["seeds"] == [0, 1]
    assert {k: v for k, v in config.items() if k not in ("modules", "seeds")} == {
        "task": "textures", "data": None, "epochs": 4, "warmup_epochs": 0.5,
        "learning_rate": SMALL.learning_rate, "weight_decay": SMALL.weight_decay,
        "batch_size": 32, "depth": SMALL.depth, "image_size": SMALL.image_size,
        "train_per_class": 256, "held_out_per_class": 60, "data_seed": 0, "export": True,
    }  # fmt: skip
    data = results["data"]
    assert set(data) == {
        "task", "source", "classes", "train_images", "held_out_images", "image_size",
    }  # fmt: skip
    assert data["task"] == "textures" and data["classes"] == list(TEXTURE_CLASSES)
    assert (data["train_images"], data["held_out_images"]) == (768, 180)
    assert data["image_size"] == SMALL.image_size and "photographs" in data["source"]
    env = results["environment"]
    assert set(env) == {
        "cpu", "cpu_count", "platform", "python", "tensorflow", "keras", "numpy",
        "scikit_image", "keras_recalib",
    }  # fmt: skip
    assert env["keras"] == keras.__version__ and env["keras_recalib"] == kr.__version__
    assert env["cpu"] and env["cpu_count"] >= 1
    assert "PyTorch" in results["parameter_convention"]
    assert "2 * pooled std" in results["criterion"]
    assert set(results["timing"]) == {"wall_seconds", "cpu_seconds"}
    assert all(v > 0 for v in results["timing"].values())
    for entry in results["models"]:
        assert set(entry) == {"module", "name", "parameters", "runs", "export", "accuracy"}
        assert set(entry["accuracy"]) == {"mean", "std", "min", "max"}
        for run in entry["runs"]:
            assert set(run) == {
                "seed", "accuracy", "final_loss", "final_train_accuracy", "finite", "epochs",
                "train_seconds", "train_cpu_seconds",
            }  # fmt: skip
            assert len(run["epochs"]) == 4
            assert all(set(e) == {"loss", "accuracy"} for e in run["epochs"])
            assert run["final_loss"] == run["epochs"][-1]["loss"]
        assert set(entry["export"]) == {
            "folder", "int8_accuracy", "keras_latency_ms", "tflite_float32_latency_ms",
            "tflite_int8_latency_ms", "keras_file_kib", "tflite_float32_kib", "tflite_int8_kib",
            "tflite_float32_max_abs_error", "tflite_float32_top1_agreement",
            "tflite_int8_cosine", "tflite_int8_top1_agreement", "int8_fully_quantized",
            "gates_plot",
        }  # fmt: skip
    (comparison,) = results["comparisons"]
    assert set(comparison) == {
        "module", "baseline", "mean_difference", "per_seed_differences", "pooled_std",
        "threshold", "exceeds_spread", "borderline", "verdict",
    }  # fmt: skip


def test_parameters_are_counted_as_pytorch_counts_them(experiment):
    results, _, _ = experiment
    plain, srm = results["models"]
    model = demo.build_demo_model("none", SMALL.depth, 3, SMALL.image_size)
    moving = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights if "moving" in w.path)
    assert moving > 0 and model.count_params() - moving == plain["parameters"]
    # SRM adds 4C per block (2C channel-wise FC, 2C batch-norm scale and offset).
    blocks = [16, 32, 64]  # depth 8: one block per stage
    assert srm["parameters"] - plain["parameters"] == sum(4 * c for c in blocks)


@pytest.mark.parametrize(
    "module,excluded",
    [
        ("none", {"gamma", "beta", "bias"}),
        ("srm", {"gamma", "beta", "bias", "cfc"}),
        ("se", {"gamma", "beta", "bias", "fc1_bias", "fc2_bias"}),
    ],
)
def test_weight_decay_leaves_out_srm_batch_norm_and_biases(module, excluded):
    model = demo.build_demo_model(module, 8, 3, 16)
    left_out = {id(v) for v in demo._no_weight_decay(model)}
    assert {v.name for v in model.trainable_variables if id(v) in left_out} == excluded
    decayed = {v.name for v in model.trainable_variables if id(v) not in left_out}
    assert decayed <= {"kernel", "fc1_kernel", "fc2_kernel"} and "kernel" in decayed
    if module == "srm":  # the SRM block's own batch norm too
        srm_variables = [v for v in model.trainable_variables if "rclb" in v.path]
        assert srm_variables and all(id(v) in left_out for v in srm_variables)


def test_the_first_seed_is_exported_and_verified(experiment):
    results, _, _ = experiment
    for entry in results["models"]:
        export = entry["export"]
        folder = pathlib.Path(export["folder"])
        for name in ("model.keras", "float32.tflite", "int8.tflite", "saved_model/saved_model.pb"):
            assert (folder / name).is_file(), name
        assert export["tflite_float32_max_abs_error"] < 1e-4
        assert export["tflite_float32_top1_agreement"] == 1.0
        assert export["tflite_int8_cosine"] > 0.99
        if entry["module"] == "none":
            assert export["gates_plot"] is None
        else:
            assert pathlib.Path(export["gates_plot"]).stat().st_size > 5000
        reloaded = keras.saving.load_model(folder / "model.keras")
        assert reloaded.name == entry["name"]


def test_progress_is_one_line_per_epoch_without_escape_codes(experiment):
    results, _, log = experiment
    epochs = [line for line in log.splitlines() if " epoch " in line]
    assert len(epochs) == 2 * 2 * 4
    assert epochs[0].startswith("none seed 0 epoch 1/4: loss ")
    assert "\x1b" not in log and "\r" not in log


def test_the_bar_redraws_in_place_with_an_eta():
    stream = io.StringIO()
    bar = demo.BarProgress(stream)
    bar.begin(10)
    for _ in range(4):
        bar.steps(1, "srm seed 1", {"loss": 0.5})
    bar.end()
    text = stream.getvalue()
    assert text.count("\r") == 4 and "ETA" in text and "srm seed 1" in text
    assert "40%" in text and text.endswith("\n")


def test_update_readme_writes_the_block_between_the_markers(experiment, tmp_path):
    results, out, _ = experiment
    spec = importlib.util.spec_from_file_location(
        "update_readme", ROOT / "scripts/update_readme.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{script.BEGIN}\nold table\n{script.END}\nrest\n")
    assert script.main([str(out / "results.json"), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old table" not in text and text.startswith("intro\n") and text.endswith("rest\n")
    block = text[text.index(script.BEGIN) : text.index(script.END)]
    env = results["environment"]
    for fact in (env["cpu"], f"tensorflow {env['tensorflow']}", "2 seeds (0, 1)", " in all ("):
        assert fact in block
    assert "| srm |" in block and results["comparisons"][0]["verdict"] in block
    readme.write_text("no markers here\n")
    assert script.main([str(out / "results.json"), "--readme", str(readme)]) == 2


def test_the_readme_has_the_markers():
    from_script = (ROOT / "scripts/update_readme.py").read_text()
    readme = (ROOT / "README.md").read_text()
    begin = readme.index("<!-- demo-results:begin")
    assert begin < readme.index("<!-- demo-results:end -->")
    assert readme[begin : readme.index("-->", begin) + 3] in from_script


# --- the command line ----------------------------------------------------------------------------


def parse(*argv):
    parser = argparse.ArgumentParser(prog="keras-recalib demo")
    demo_command.add_arguments(parser)
    return parser.parse_args([str(a) for a in argv])


def test_options_reach_the_config():
    config = demo_command.config_from_args(
        parse("--modules", "none,SRM,eca", "--seeds", "5", "--epochs", "3", "--no-export")
    )
    assert config.modules == ("none", "srm", "eca") and config.seeds == 5
    assert config.epochs == 3 and config.export is False
    assert demo_command.config_from_args(parse()) == demo.DemoConfig()
    quick = demo_command.config_from_args(parse("--quick", "--seeds", "4"))
    assert quick == demo.DemoConfig.quick(seeds=4)
    assert demo_command.config_from_args(parse("--epochs", "1")).warmup_epochs == 0


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--modules", "srm,bogus"], "unknown module(s) bogus"),
        (["--modules", "srm,srm"], "must name distinct modules"),
        (["--data", "{tmp}/missing"], "no such folder"),
        (["--data", "{tmp}/empty"], "Cannot read images from the folder"),
        (["--data", "{tmp}", "--task", "textures"], "--task and --data exclude each other"),
        (["--out", "{tmp}/full"], "is not empty; pass --overwrite"),
        (["--out", "{tmp}/afile"], "exists and is not a folder"),
    ],
)
def test_command_errors_are_one_line(tmp_path, argv, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("precious")
    (tmp_path / "afile").write_text("")
    argv = [a.format(tmp=tmp_path) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    with pytest.raises(CommandError) as error:
        demo_command.run(parse(*argv))
    assert message in str(error.value) and "\n" not in str(error.value)
    assert (tmp_path / "full" / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize(
    "argv",
    [["--seeds", "0"], ["--epochs", "x"], ["--depth", "21"], ["--task", "imagenet"]],
)
def test_usage_errors_exit_in_argparse(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse(*argv)
    assert exit_.value.code == 2 and argv[0] in capsys.readouterr().err


def test_command_module_imports_no_tensorflow():
    # The package's __init__ imports Keras; the console script skips it for --help, as here.
    code = (
        "import importlib.util, sys\n"
        "spec = importlib.util.find_spec('keras_recalib')\n"
        "sys.modules['keras_recalib'] = importlib.util.module_from_spec(spec)\n"
        "import keras_recalib.cli.demo as command\n"
        "assert command.HELP and callable(command.add_arguments) and callable(command.run)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.strip() == "[]"
