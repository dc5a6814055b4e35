"""Helpers of the contract harness, written on the public keras API (and, for the
TensorFlow-only checks, the public tf API, imported where used)."""

import contextlib

import keras
import numpy as np


def gradients_enabled():
    """A context in which the backend records gradients: PyTorch's autograd, off by default in
    the tests (see conftest.py); nothing to do on TensorFlow and JAX."""
    if keras.backend.backend() == "torch":
        import torch

        return torch.enable_grad()
    return contextlib.nullcontext()


def variable_gradients(loss_fn, variables):
    """The gradients of the scalar `loss_fn()` with respect to `variables` (Keras variables),
    on the active backend, as NumPy arrays; None for a variable the loss does not depend on
    (JAX cannot tell: it returns zeros there)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn()
        gradients = tape.gradient(loss, variables)
    elif backend == "jax":
        import jax

        def loss_of(values):
            with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
                return loss_fn()

        gradients = jax.grad(loss_of)([v.value for v in variables])
    elif backend == "torch":
        import torch

        with torch.enable_grad():
            loss = loss_fn()
        gradients = torch.autograd.grad(loss, [v.value for v in variables], allow_unused=True)
    else:
        raise ValueError(f"No gradient helper for the backend. Received: backend={backend}")
    return [None if g is None else keras.ops.convert_to_numpy(g) for g in gradients]


def value_and_gradients(fn, upstream):
    """A step `(*inputs) -> (fn(*inputs), *gradients)`: the gradients of `fn` with respect to
    every input, given the upstream gradient `upstream`. Run it eagerly or wrap it in
    `tf.function` (with or without `jit_compile`). TensorFlow only."""
    import tensorflow as tf

    def step(*inputs):
        with tf.GradientTape() as tape:
            tape.watch(list(inputs))
            y = fn(*inputs)
        return (y, *tape.gradient(y, list(inputs), output_gradients=upstream))

    return step


def random_inputs(shape, seed=0, scale=1.0, dtype="float32"):
    rng = np.random.default_rng(seed)
    # A per-channel offset and scale so statistics differ between channels.
    offset = rng.normal(size=shape[-1])
    spread = rng.uniform(0.5, 2.0, size=shape[-1])
    x = rng.normal(size=shape) * spread + offset
    return (x * scale).astype(dtype)


def randomize_weights(layer, seed=0):
    """Gives every variable of `layer` random, well-conditioned values.

    Zero-initialised weights (SRM's official init) would make most checks trivial; moving
    variances and BN scales stay positive.
    """
    rng = np.random.default_rng(seed)
    for variable in layer.weights:
        name = variable.path.split("/")[-1]
        shape = tuple(variable.shape)
        if "variance" in name or "gamma" in name:
            value = rng.uniform(0.5, 1.5, size=shape)
        else:
            value = rng.normal(scale=0.5, size=shape)
        variable.assign(value.astype(variable.dtype))


def tflite_run(tflite_model, x):
    """Runs a TFLite flatbuffer in the LiteRT interpreter on one input array."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=tflite_model)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], list(x.shape), strict=False)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def convert_builtins_only(saved_model_dir):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def tflite_op_names(tflite_model):
    from keras_recalib.export import tflite_ops

    return {op.name for op in tflite_ops(tflite_model)}


def batch_norm_ops(layer, channels, training):
    """Names of Keras BatchNormalization ops in `layer`'s graph (Keras 3 names them
    `.../batchnorm/...`; there is no FusedBatchNorm op). TensorFlow only."""
    import tensorflow as tf

    spec = tf.TensorSpec((None, None, None, channels), "float32")
    graph = tf.function(lambda t: layer(t, training=training)).get_concrete_function(spec).graph
    return [op.name for op in graph.get_operations() if "/batchnorm/" in op.name]
