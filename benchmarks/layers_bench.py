"""Per-layer timings: every `keras_recalib` layer and the seed's SRM against the `x * g` floor
in TensorFlow (graph mode and XLA), forward and forward + backward, at ResNet-50's stage
shapes. The PyTorch peers are compared at model level (`peers_bench.py`)."""

import numpy as np
from _common import interleaved, paired_ratio, summary

# ResNet-50's four stage outputs: (height = width, channels).
STAGES = ((56, 256), (28, 512), (14, 1024), (7, 2048))
MODES = (("graph", False), ("xla", True))


def stage_shapes(batch, stages=STAGES):
    return [(batch, size, size, channels) for size, channels in stages]


def _tensors(tf, shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype("float32")
    dy = rng.standard_normal(shape).astype("float32")
    g = rng.uniform(0.1, 0.9, (shape[0], 1, 1, shape[-1])).astype("float32")
    return x, dy, g


def _forward(tf, layer, jit):
    fn = tf.function(lambda t: layer(t, training=False), jit_compile=jit)
    return fn


def _forward_backward(tf, layer, jit):
    def step(t, dy):
        with tf.GradientTape() as tape:
            tape.watch(t)
            y = layer(t, training=True)
        return tape.gradient(y, [t, *layer.trainable_variables], output_gradients=dy)

    return tf.function(step, jit_compile=jit)


def _floor_fns(tf, g, jit):
    gv = tf.Variable(g, name="g")

    def forward(t):
        return t * gv

    def step(t, dy):
        with tf.GradientTape() as tape:
            tape.watch(t)
            y = t * gv
        return tape.gradient(y, [t, gv], output_gradients=dy)

    return tf.function(forward, jit_compile=jit), tf.function(step, jit_compile=jit)


def tensorflow_group(shape, names, direction, seed=0):
    """name -> zero-argument callable for one stage shape and direction ("fwd"/"fwdbwd")."""
    import keras
    import tensorflow as tf
    from seed_srm import SeedSRMBlock

    import keras_recalib as kr

    x_np, dy_np, g_np = _tensors(tf, shape, seed)
    x, dy = tf.constant(x_np), tf.constant(dy_np)
    functions = {}
    for mode, jit in MODES:
        forward, step = _floor_fns(tf, g_np, jit)
        fn = forward if direction == "fwd" else step
        functions[f"floor/{mode}"] = _bind(fn, direction, x, dy)
    for name in [*names, "seed_srm"]:
        keras.utils.set_random_seed(seed)
        layer = SeedSRMBlock() if name == "seed_srm" else kr.get(name)
        layer.build(shape)
        for mode, jit in MODES:
            make = _forward if direction == "fwd" else _forward_backward
            functions[f"{name}/{mode}"] = _bind(make(tf, layer, jit), direction, x, dy)
    return functions


def _bind(fn, direction, x, dy):
    if direction == "fwd":
        return lambda: fn(x)
    return lambda: fn(x, dy)


def run(config, log):
    """Every layer's and the seed SRM's time over the floor's, as paired CPU-time ratios
    (graph mode and XLA, forward and forward + backward) at ResNet-50's stage shapes; plus
    the seed's SRM over the package's SRM. Returns a JSON-ready dict."""
    import keras_recalib as kr

    names = kr.available()
    results = {"batch": config.layer_batch, "names": names, "shapes": []}
    for shape in stage_shapes(config.layer_batch, config.layer_stages):
        entry = {"shape": list(shape)}
        for direction in ("fwd", "fwdbwd"):
            log(f"  {direction} {shape}")
            functions = tensorflow_group(shape, names, direction)
            samples = interleaved(
                functions,
                config.warmup,
                config.rounds,
                config.layer_budget_s,
                log=config.verbose_log,
            )
            del functions
            pairs = [(n, f"floor/{n.split('/')[1]}") for n in samples if n.split("/")[0] != "floor"]
            pairs += [(f"seed_srm/{m}", f"srm/{m}") for m, _ in MODES]
            pairs += [(f"{n}/xla", f"{n}/graph") for n in [*names, "seed_srm", "floor"]]
            entry[direction] = {
                "times": {k: summary(v) for k, v in samples.items()},
                "ratios": {f"{a} : {b}": paired_ratio(samples, a, b, "cpu") for a, b in pairs},
            }
        results["shapes"].append(entry)
    return results
