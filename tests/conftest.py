import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# An explicit KERAS_BACKEND (jax, torch) selects the backend; TensorFlow is the default.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import pytest  # noqa: E402

BACKEND = keras.backend.backend()


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "tensorflow_only: needs the TensorFlow backend (SavedModel, TFLite, tf.function, XLA via "
        "tf, tf.distribute, TensorFlow graphs); skipped on JAX and PyTorch",
    )


def pytest_collection_modifyitems(config, items):
    if BACKEND == "tensorflow":
        return
    skip = pytest.mark.skip(reason=f"TensorFlow-only check (KERAS_BACKEND={BACKEND})")
    for item in items:
        if item.get_closest_marker("tensorflow_only") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _torch_without_autograd():
    """On PyTorch, tests run without autograd unless they ask for it (`gradients_enabled()` in
    contract_utils): outputs then convert to NumPy as on the other backends (a tensor that
    requires grad refuses `numpy()`), and the checks compare the same forward computation."""
    if BACKEND != "torch":
        yield
        return
    import torch

    with torch.no_grad():
        yield


@pytest.fixture(autouse=True)
def _isolate_keras_globals():
    """Every test starts from float32, channels_last and a fixed seed, whatever the last did."""
    keras.config.set_dtype_policy("float32")
    keras.config.set_image_data_format("channels_last")
    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy("float32")
    keras.config.set_image_data_format("channels_last")
