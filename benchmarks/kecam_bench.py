"""SE and ECA of keras-cv-attention-models (kecam) at the stage shapes, with their own floor.

kecam builds on legacy Keras (tf-keras), so `run.py` runs this script in its own virtualenv
(`benchmarks/.venv-kecam`) and process with `TF_USE_LEGACY_KERAS=1`. Prints one JSON line.
SE uses se_ratio=1/16 and divisor=1 (the width C // 16 of the package's SE); ECA uses kecam's
defaults (adaptive kernel size, at least 3).
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # noqa: E402
    configure_tensorflow,
    interleaved,
    paired_ratio,
    quiet_environment,
    summary,
)
from layers_bench import MODES, _tensors, stage_shapes  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    quiet_environment()
    tf = configure_tensorflow(args.threads)
    import keras_cv_attention_models
    import tf_keras
    from keras_cv_attention_models.attention_layers import eca_module, se_module

    builders = {
        "kecam_se": lambda t: se_module(t, se_ratio=1 / 16, divisor=1),
        "kecam_eca": lambda t: eca_module(t),
    }
    out = {
        "versions": {
            "keras_cv_attention_models": keras_cv_attention_models.__version__,
            "tf_keras": tf_keras.__version__,
            "tensorflow": tf.__version__,
        },
        "shapes": [],
    }
    for shape in stage_shapes(args.batch):
        x_np, dy_np, g_np = _tensors(tf, shape, 0)
        x, dy = tf.constant(x_np), tf.constant(dy_np)
        gv = tf.Variable(g_np)
        entry = {"shape": list(shape), "fwd": {}, "fwdbwd": {}}
        models = {}
        for name, build in builders.items():
            inputs = tf_keras.Input(shape[1:])
            models[name] = tf_keras.Model(inputs, build(inputs))
        for direction in ("fwd", "fwdbwd"):
            functions = {}
            for mode, jit in MODES:
                functions[f"floor/{mode}"] = _bind(
                    tf, lambda t, g=gv: t * g, [gv], direction, jit, x, dy
                )
                for name, model in models.items():
                    training = direction == "fwdbwd"
                    call = (lambda m, tr: lambda t: m(t, training=tr))(model, training)
                    functions[f"{name}/{mode}"] = _bind(
                        tf, call, model.trainable_variables, direction, jit, x, dy
                    )
            samples = interleaved(functions, args.warmup, args.repeats, budget_s=3.0)
            entry[direction] = {
                "times": {k: summary(v) for k, v in samples.items()},
                "ratios": {
                    f"{k} : floor/{k.split('/')[1]}": paired_ratio(
                        samples, k, f"floor/{k.split('/')[1]}", "cpu"
                    )
                    for k in samples
                    if not k.startswith("floor/")
                },
            }
        out["shapes"].append(entry)
    print(json.dumps(out))


def _bind(tf, call, variables, direction, jit, x, dy):
    if direction == "fwd":
        fn = tf.function(call, jit_compile=jit)
        return lambda: fn(x)

    def step(t, upstream):
        with tf.GradientTape() as tape:
            tape.watch(t)
            y = call(t)
        return tape.gradient(y, [t, *variables], output_gradients=upstream)

    fn = tf.function(step, jit_compile=jit)
    return lambda: fn(x, dy)


if __name__ == "__main__":
    main()
