"""Subprocess entry point of tests/test_cross_backend.py: train on one backend, save `.keras`.

    KERAS_BACKEND=jax python tests/cross_backend_worker.py OUT_DIR

builds a small functional model holding every layer of the package's registry (one of each,
8x8x16 input), trains it one step with `model.fit` (`jit_compile=True` on JAX, eager on
PyTorch), and writes `OUT_DIR/model.keras` and `OUT_DIR/outputs.npz`: the fixed inputs `x` and
the trained model's inference outputs `y` on them, which the TensorFlow process must reproduce.
The backend is the environment's `KERAS_BACKEND`, read by Keras at import.
"""

import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_recalib as kr  # noqa: E402
from keras_recalib import _registry  # noqa: E402

INPUT_SHAPE = (8, 8, 16)
CLASSES = 4
SAMPLES = 32
# Arguments that make a layer's less common branches part of the model (and fit 16 channels).
LAYER_KWARGS = {
    "se": {"reduction": 4},
    "cbam": {"reduction": 4},
    "sge": {"groups": 4},
    "ge": {"extent": 2, "parametric": True, "use_mlp": True},
}


def build_model():
    """Every registered layer as its own branch (a 3x3 convolution, then the layer), pooled
    logits from the branches concatenated.

    Branches rather than a chain: ten gates in a row would shrink the signal a thousandfold,
    leaving outputs too small for a 1e-5 comparison to mean anything.
    """
    inputs = keras.Input(INPUT_SHAPE)
    branches = []
    for name in _registry.NAMES:
        conv = keras.layers.Conv2D(INPUT_SHAPE[-1], 3, padding="same", name=f"{name}_conv")
        layer = kr.get(name, name=name, **LAYER_KWARGS.get(name, {}))
        branches.append(layer(conv(inputs)))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Concatenate()(branches))
    return keras.Model(inputs, keras.layers.Dense(CLASSES, name="logits")(x))


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(SAMPLES, *INPUT_SHAPE)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, CLASSES, SAMPLES), CLASSES).astype("float32")
    return x, y


def main(out):
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    model = build_model()
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
        jit_compile=keras.backend.backend() == "jax",
    )
    x, y = data()
    # One step over the whole batch: the weights and every BN's moving statistics change.
    model.fit(x, y, batch_size=SAMPLES, epochs=1, verbose=0)
    model.save(out / "model.keras")
    outputs = keras.ops.convert_to_numpy(model.predict(x, batch_size=SAMPLES, verbose=0))
    np.savez(out / "outputs.npz", x=x, y=outputs, backend=keras.backend.backend())


if __name__ == "__main__":
    main(sys.argv[1])
