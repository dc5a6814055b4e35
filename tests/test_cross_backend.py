"""`.keras` files cross backends: trained on JAX or PyTorch, deployed through TensorFlow.

A model holding every layer of the registry is trained one step by tests/cross_backend_worker.py
in a subprocess per backend (`KERAS_BACKEND=jax`, `=torch`; Keras fixes its backend at import,
so the other backends cannot run in this TensorFlow process). Here the file must load under
TensorFlow with the same outputs (1e-5) and go on through the package's deployment path:
SavedModel, full-integer TFLite calibrated on the same inputs, verified in LiteRT with built-in
ops only. A backend that is not installed skips its cases.
"""

import importlib.util
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_recalib as kr
from keras_recalib import _registry, export
from keras_recalib.export import _flatbuffer

pytestmark = [pytest.mark.tensorflow_only, pytest.mark.slow]

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKER = pathlib.Path(__file__).with_name("cross_backend_worker.py")
BACKENDS = ("jax", "torch")
TIMEOUT_S = 600


@pytest.fixture(scope="module")
def workers(tmp_path_factory):
    """Starts the worker of every installed backend at once (they are independent processes,
    so two cores train both together) and yields `backend -> (process, out folder, log)`."""
    started = {}
    for backend in BACKENDS:
        if importlib.util.find_spec(backend) is None:
            continue
        out = tmp_path_factory.mktemp(f"trained_on_{backend}")
        log = open(out / "worker.log", "w+")  # noqa: SIM115 - closed after the process ends
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        process = subprocess.Popen(
            [sys.executable, str(WORKER), str(out)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
        started[backend] = (process, out, log)
    yield started
    for process, _, log in started.values():
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module", params=BACKENDS)
def trained(request, workers):
    """`(backend, model.keras path, inputs, outputs on the training backend)`."""
    backend = request.param
    if backend not in workers:
        pytest.skip(f"{backend} is not installed (pip install 'keras_recalib[{backend}]')")
    process, out, log = workers[backend]
    try:
        code = process.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        code = f"killed after {TIMEOUT_S} s"
    if code != 0:
        log.seek(0)
        pytest.fail(f"the {backend} worker failed ({code}):\n{log.read()[-4000:]}")
    saved = np.load(out / "outputs.npz")
    assert str(saved["backend"]) == backend
    return backend, out / "model.keras", saved["x"], saved["y"]


@pytest.fixture(scope="module")
def loaded(trained):
    return kr.load_model(trained[1])


def test_keras_file_loads_on_tensorflow_with_the_same_outputs(trained, loaded):
    backend, _, x, expected = trained
    assert keras.backend.backend() == "tensorflow"
    # Every layer of the package made the trip, with its class.
    classes = {type(layer) for layer in loaded.layers}
    assert {_registry.resolve(name) for name in _registry.NAMES} <= classes
    actual = loaded(x, training=False)
    # Outputs that differ between samples, else a 1e-5 agreement would say little.
    assert np.std(expected, axis=0).min() > 0.01, expected
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5, err_msg=backend)


def test_loaded_model_deploys_as_verified_int8_tflite(trained, loaded, tmp_path):
    _, _, x, _ = trained
    saved_model = export.export_saved_model(loaded, tmp_path / "saved_model")
    tflite = export.convert_tflite(
        saved_model, tmp_path / "model_int8.tflite", quantization="int8", representative_data=x
    )
    report = export.verify_tflite(loaded, tflite, x, repeats=2)
    assert report.quantization == "int8" and report.fully_int8, report.float_ops
    assert report.meets_contract, str(report)
    assert report.top1_agreement is not None
    builtins = set(vars(_flatbuffer.schema().BuiltinOperator)) - {"CUSTOM"}
    assert set(report.op_counts) <= builtins, str(report)
    assert {"CONV_2D", "LOGISTIC"} <= set(report.op_counts)
