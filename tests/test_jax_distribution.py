"""Scale-out on JAX: a `keras.distribution.DataParallel` training step of an SRM network over two
host devices equals the same step on one device, batch-norm moving statistics included.

Under SPMD the batch is sharded and the program is not: a batch norm's mean over the batch is
one reduction over both devices, so its statistics are those of the global batch, with no
`synchronized` option (which the package refuses outside TensorFlow). The step runs in a
subprocess of tests/jax_distribution_worker.py, which sets the JAX backend and two host devices
before JAX is imported; the test runs in every backend's suite and skips without JAX.
"""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "jax_distribution_worker.py"
TOLERANCE = 1e-5  # float32 round-off of one step (measured: below 1e-6)
SHARD_GAP = 1e-3  # a per-device moving mean differs from the global one by more than this

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed"),
]


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("jax_distribution") / "step.npz"
    env = dict(
        os.environ,
        KERAS_BACKEND="jax",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        JAX_PLATFORMS="cpu",
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
    )
    # subprocess.run kills the worker when it runs over the timeout.
    done = subprocess.run(
        [sys.executable, str(WORKER), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    with np.load(out) as data:
        arrays = {key: data[key] for key in data.files if key != "meta"}
        meta = json.loads(str(data["meta"]))
    return meta, arrays


def _run(arrays, prefix):
    return {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith(f"{prefix}/")}


def _relative_error(actual, expected):
    return float(np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-12))


def test_batch_is_sharded_over_two_devices(result):
    meta, _ = result
    assert meta["devices"] == ["cpu:0", "cpu:1"], meta["jax_devices"]
    # Inside the compiled step each batch norm's input is split along the batch over both
    # devices; on one device it is whole.
    for probe in meta["data_parallel"]:
        assert probe["devices"] == 2, probe
        assert probe["shard_shape"][0] == 4, probe
    for probe in meta["one_device"]:
        assert probe["devices"] == 1, probe
    assert {p["probe"] for p in meta["data_parallel"]} == {"probe0", "probe1"}
    # The variables are replicated on both devices, as DataParallel lays them out.
    assert meta["variable_devices"] == [2]
    assert meta["variables_replicated"]


def test_step_matches_one_device(result):
    meta, arrays = result
    one, two, initial = _run(arrays, "one"), _run(arrays, "two"), _run(arrays, "init")
    loss_one, loss_two = meta["loss"]
    assert abs(loss_two - loss_one) <= TOLERANCE * abs(loss_one)
    assert one.keys() == two.keys() == initial.keys()
    moving = [path for path in one if "moving_" in path]
    assert len(moving) == 8  # mean and variance of bn0, bn1 and the two SRMs' batch norms
    for path, expected in one.items():
        assert _relative_error(two[path], expected) < TOLERANCE, path
        # The step moved every weight (measured: by 7e-4 or more); a frozen one would match
        # trivially.
        assert _relative_error(expected, initial[path]) > 10 * TOLERANCE, path


def test_batch_norm_statistics_are_global(result):
    """The moving mean is the one-step update from the whole batch's mean, not from one
    device's half, which would differ by far more than the tolerance on these images."""
    _, arrays = result
    actual = arrays["two/bn0/moving_mean"]
    np.testing.assert_allclose(
        actual, arrays["expected/bn0_moving_mean_global"], rtol=TOLERANCE, atol=1e-6
    )
    for shard in range(2):
        per_device = arrays[f"expected/bn0_moving_mean_shard{shard}"]
        assert _relative_error(per_device, actual) > SHARD_GAP
