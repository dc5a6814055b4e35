"""Subprocess entry point of tests/test_jax_distribution.py: one SPMD training step on JAX.

    python tests/jax_distribution_worker.py OUT.npz

JAX fixes its devices when it is first imported, and two CPU devices need
`XLA_FLAGS=--xla_force_host_platform_device_count=2` before that, which no pytest process that
has imported Keras can still arrange; so this runs in a fresh process, which sets the flag, the
JAX backend and CPU-only devices itself.

It builds a small SRM network (two blocks of convolution, BatchNormalization, a probe that
records the sharding of the batch norm's input, StyleRecalibration, ReLU) with random weights
(SRM's zero-initialised `cfc` would leave its batch norm with nothing to normalise), and trains
one SGD step with `jit_compile=True` on a global batch of 8 images that differ in contrast and
brightness: once on one device, once under `keras.distribution.DataParallel` over both devices,
from the same weights. OUT.npz holds, for both runs, the loss, every weight after the step
(moving statistics included), the initial weights, and `meta`, a JSON string with the devices,
the shardings the compiled steps saw, and the first batch norm's moving mean as a one-step update
from the whole batch and from each device's half of it.
"""

import json
import os
import sys

os.environ["KERAS_BACKEND"] = "jax"
os.environ["JAX_PLATFORMS"] = "cpu"  # two host devices, also on a machine with an accelerator
_DEVICE_FLAG = "--xla_force_host_platform_device_count=2"
if _DEVICE_FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_DEVICE_FLAG}".strip()

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from contract_utils import randomize_weights  # noqa: E402

import keras_recalib as kr  # noqa: E402

GLOBAL_BATCH = 8
SHAPE = (8, 8, 3)
CLASSES = 4
LEARNING_RATE = 0.1
MOMENTUM = 0.9  # the batch norms' moving-average momentum (PyTorch's 0.1)


class ShardingProbe(keras.layers.Layer):
    """Identity that records how the compiled step lays its input out over the devices."""

    def __init__(self, record, **kwargs):
        super().__init__(**kwargs)
        self.record = record  # a callable: Keras would copy a list into a tracked one

    def call(self, x):
        if not isinstance(x, keras.KerasTensor):
            # Under jit the callback runs at compile time with the sharding XLA chose.
            jax.debug.inspect_array_sharding(
                x, callback=lambda s: self.record((self.name, s, tuple(x.shape)))
            )
        return x


def build(seen):
    inputs = keras.Input(SHAPE)
    x = inputs
    for index, (filters, stride) in enumerate([(8, 1), (16, 2)]):
        x = keras.layers.Conv2D(
            filters, 3, strides=stride, padding="same", use_bias=False, name=f"conv{index}"
        )(x)
        x = keras.layers.BatchNormalization(momentum=MOMENTUM, name=f"bn{index}")(x)
        x = ShardingProbe(seen.append, name=f"probe{index}")(x)
        x = kr.StyleRecalibration(momentum=MOMENTUM, name=f"srm{index}")(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(CLASSES, name="fc")(x))
    model.compile(
        keras.optimizers.SGD(LEARNING_RATE),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    return model


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(GLOBAL_BATCH, *SHAPE))
    # Per-image contrast and brightness: the two devices' halves have different statistics.
    x = x * rng.uniform(0.5, 2.0, size=(GLOBAL_BATCH, 1, 1, 1))
    x = x + rng.normal(size=(GLOBAL_BATCH, 1, 1, SHAPE[-1]))
    return x.astype("float32"), rng.integers(0, CLASSES, size=GLOBAL_BATCH)


def describe(seen):
    return [
        {
            "probe": name,
            "devices": len(sharding.device_set),
            "shard_shape": list(sharding.shard_shape(shape)),
            "sharding": str(sharding),
        }
        for name, sharding, shape in seen
    ]


def step(model, weights, x, y):
    model.set_weights(weights)
    loss = float(model.train_on_batch(x, y))
    return loss, {v.path: keras.ops.convert_to_numpy(v.value) for v in model.weights}


def main(out_path):
    assert keras.backend.backend() == "jax", keras.backend.backend()
    keras.utils.set_random_seed(0)
    devices = keras.distribution.list_devices()
    x, y = data()

    seen_one = []
    one = build(seen_one)
    randomize_weights(one, seed=1)
    initial = one.get_weights()
    # The first batch norm's moving mean after one step, from the statistics of the whole batch
    # and from those of each device's half: SPMD must give the first.
    features = keras.ops.convert_to_numpy(one.get_layer("conv0")(x))
    moving_mean = keras.ops.convert_to_numpy(one.get_layer("bn0").moving_mean)
    half = GLOBAL_BATCH // len(devices)

    def updated(batch):
        return MOMENTUM * moving_mean + (1 - MOMENTUM) * batch.mean(axis=(0, 1, 2))

    loss_one, weights_one = step(one, initial, x, y)

    seen_two = []
    distribution = keras.distribution.DataParallel(devices=devices)
    with distribution.scope():
        two = build(seen_two)
        loss_two, weights_two = step(two, initial, x, y)
        variable_devices = sorted({len(v.value.sharding.device_set) for v in two.weights})
        replicated = all(v.value.sharding.is_fully_replicated for v in two.weights)

    meta = {
        "devices": devices,
        "jax_devices": [str(d) for d in jax.devices()],
        "one_device": describe(seen_one),
        "data_parallel": describe(seen_two),
        "variable_devices": variable_devices,
        "variables_replicated": replicated,
        "loss": [loss_one, loss_two],
    }
    arrays = {f"one/{k}": v for k, v in weights_one.items()}
    arrays |= {f"two/{k}": v for k, v in weights_two.items()}
    arrays |= {f"init/{v.path}": w for v, w in zip(one.weights, initial, strict=True)}
    arrays["expected/bn0_moving_mean_global"] = updated(features)
    for index in range(len(devices)):
        shard = features[index * half : (index + 1) * half]
        arrays[f"expected/bn0_moving_mean_shard{index}"] = updated(shard)
    np.savez(out_path, meta=json.dumps(meta), **arrays)


if __name__ == "__main__":
    main(sys.argv[1])
