"""Quickstart: add SRM to a functional CNN, train a few steps, export and convert.

    python examples/quickstart.py [--out DIR]

Runs offline on synthetic data in well under a minute on a laptop CPU.
"""

import argparse
import os
import pathlib
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_recalib as kr  # noqa: E402


def build_model(num_classes=4):
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization(epsilon=1e-5)(x)
    x = kr.StyleRecalibration()(x)  # re-weights channels from their mean and std
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization(epsilon=1e-5)(x)
    x = kr.StyleRecalibration()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x))


def synthetic_data(n, num_classes=4, seed=0):
    """Each class is noise with its own per-channel contrast: a 'style' task."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, n)
    contrast = np.linspace(0.3, 1.5, num_classes)
    x = rng.normal(size=(n, 32, 32, 3)) * contrast[labels, None, None, None]
    return x.astype("float32"), labels


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="output folder (default: a temp folder)")
    args = parser.parse_args()
    out = pathlib.Path(args.out or tempfile.mkdtemp(prefix="keras_recalib_quickstart_"))
    out.mkdir(parents=True, exist_ok=True)

    keras.utils.set_random_seed(0)
    x, y = synthetic_data(512)
    model = build_model()
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=True,
    )
    model.fit(x, y, batch_size=32, epochs=2, verbose=2)

    model.save(out / "model.keras")
    model.export(str(out / "saved_model"), verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(out / "saved_model"))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    (out / "model.tflite").write_bytes(converter.convert())

    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(out / "model.tflite"))
    interpreter.allocate_tensors()
    sample = x[:1]
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], sample)
    interpreter.invoke()
    lite = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    error = float(np.max(np.abs(lite - model(sample, training=False))))
    reloaded = keras.saving.load_model(out / "model.keras")
    same = np.allclose(reloaded(sample), model(sample))
    print(f"wrote {out}/model.keras, saved_model/, model.tflite")
    print(f"TFLite vs Keras max abs error: {error:.2e}; .keras reload identical: {same}")
    if error > 1e-4 or not same:
        raise SystemExit("export check failed")


if __name__ == "__main__":
    main()
