"""Per-layer timings: every `keras_recalib` layer, the `x * g` floor and the seed's SRM in
TensorFlow (graph mode and XLA), and the official PyTorch SRM and SE (eager and compiled)."""

import os
import sys

import numpy as np
from _common import interleaved, summary

# The PyTorch modules timed here are the references the parity tests check against the layers
# (tests/references/torch_modules.py), so a timed module is a verified one.
sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")
)

# ResNet-50's four stage outputs: (height = width, channels).
STAGES = ((56, 256), (28, 512), (14, 1024), (7, 2048))
MODES = (("graph", False), ("xla", True))


def stage_shapes(batch):
    return [(batch, size, size, channels) for size, channels in STAGES]


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


def torch_group(shape, direction, compile_modules=True, seed=0):
    """(name -> callable, name -> error) for PyTorch's floor, SRM and SE at one stage shape."""
    import torch
    from references.torch_modules import SELayer, SRMLayer

    class Floor(torch.nn.Module):
        """`x * g` with a per-(batch, channel) g: PyTorch's own floor."""

        def __init__(self, batch, channels):
            super().__init__()
            self.g = torch.nn.Parameter(torch.rand(batch, channels, 1, 1))

        def forward(self, x):
            return x * self.g

    n, h, w, c = shape
    x_np, dy_np, _ = _tensors(None, shape, seed)
    x = torch.from_numpy(np.ascontiguousarray(x_np.transpose(0, 3, 1, 2)))
    dy = torch.from_numpy(np.ascontiguousarray(dy_np.transpose(0, 3, 1, 2)))
    torch.manual_seed(seed)
    modules = {"floor": Floor(n, c), "srm": SRMLayer(c), "se": SELayer(c)}
    functions, errors = {}, {}
    for name, module in modules.items():
        variants = [("eager", module)]
        if compile_modules:
            variants.append(("compile", torch.compile(module, dynamic=False)))
        for variant, fn in variants:
            key = f"torch_{name}/{variant}"
            call = _torch_call(torch, module, fn, direction, x, dy)
            try:
                call()  # compilation happens here; a failure is recorded, not fatal
            except Exception as error:  # noqa: BLE001 - any compiler failure is reported
                errors[key] = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
                continue
            functions[key] = call
    return functions, errors


def _torch_call(torch, module, fn, direction, x, dy):
    if direction == "fwd":
        module.eval()

        def forward():
            with torch.no_grad():
                return fn(x)

        return forward
    module.train()
    xr = x.clone().requires_grad_(True)

    def step():
        module.zero_grad(set_to_none=True)
        xr.grad = None
        fn(xr).backward(dy)

    return step


def run(config, log):
    """All per-layer timings. Returns a JSON-ready dict."""
    import keras_recalib as kr

    names = kr.available()
    results = {"batch": config.batch, "shapes": [], "names": names, "torch_errors": {}}
    torch_available = config.torch
    for shape in stage_shapes(config.batch):
        entry = {"shape": list(shape), "fwd": {}, "fwdbwd": {}}
        for direction in ("fwd", "fwdbwd"):
            log(f"  TensorFlow {direction} {shape}")
            functions = tensorflow_group(shape, names, direction)
            samples = interleaved(
                functions, config.warmup, config.repeats, config.budget_s, log=config.verbose_log
            )
            entry[direction].update({k: summary(v) for k, v in samples.items()})
            del functions
            if torch_available:
                log(f"  PyTorch {direction} {shape}")
                functions, errors = torch_group(shape, direction, config.torch_compile)
                results["torch_errors"].update({f"{k} {shape}": e for k, e in errors.items()})
                samples = interleaved(
                    functions,
                    config.warmup,
                    config.repeats,
                    config.budget_s,
                    log=config.verbose_log,
                )
                entry[direction].update({k: summary(v) for k, v in samples.items()})
        results["shapes"].append(entry)
    return results
