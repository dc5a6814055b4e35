"""`resnet(..., memory_lean=True)`: the normal model's outputs, gradients, moving statistics and
weights, without keeping the branch's last normalisation output for the backward pass."""

import keras
import numpy as np
import pytest

import keras_recalib as kr
from keras_recalib.convert import load_torch_weights
from keras_recalib.models import cifar_resnet, resnet

BACKEND = keras.backend.backend()
tensorflow_only = pytest.mark.tensorflow_only
SHAPE = (16, 16, 3)


def _pair(recalibration="srm", **kwargs):
    """A normal and a memory-lean CIFAR ResNet-8 with the same, non-trivial weights."""
    keras.utils.set_random_seed(0)
    normal = cifar_resnet(8, recalibration, input_shape=SHAPE, **kwargs)
    lean = cifar_resnet(8, recalibration, input_shape=SHAPE, memory_lean=True, **kwargs)
    rng = np.random.default_rng(1)
    # SRM's channel weights start at zero (every gate 0.5): random ones exercise the gates.
    weights = [
        w + rng.normal(scale=0.1, size=w.shape).astype(w.dtype) if w.ndim == 2 else w
        for w in normal.get_weights()
    ]
    normal.set_weights(weights)
    lean.set_weights(weights)
    return normal, lean


def _data(batch=4):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, *SHAPE)).astype("float32")
    y = (np.arange(batch) % 10).astype("int32")
    return x, y


def _train_step(model, jit):
    import tensorflow as tf

    @tf.function(jit_compile=jit)
    def step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(
                keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
            )
        return logits, tape.gradient(loss, model.trainable_weights)

    return step


@tensorflow_only
@pytest.mark.parametrize(
    "module,jit", [("srm", False), ("srm", True), ("se", False)], ids=["srm", "srm-xla", "se"]
)
def test_training_step_equals_the_normal_models(module, jit):
    normal, lean = _pair(module)
    x, y = _data()
    before = [np.asarray(w) for w in normal.non_trainable_weights]
    results = {}
    for name, model in (("normal", normal), ("lean", lean)):
        logits, grads = _train_step(model, jit)(x, y)
        moving = [np.asarray(w) for w in model.non_trainable_weights]
        results[name] = (np.asarray(logits), [np.asarray(g) for g in grads], moving)
    (logits_n, grads_n, moving_n), (logits_l, grads_l, moving_l) = results.values()
    np.testing.assert_allclose(logits_l, logits_n, rtol=1e-5, atol=1e-5)
    assert len(grads_l) == len(grads_n) == len(normal.trainable_weights)
    for w, g_l, g_n in zip(normal.trainable_weights, grads_l, grads_n, strict=True):
        np.testing.assert_allclose(g_l, g_n, rtol=1e-5, atol=1e-5, err_msg=w.path)
    # The moving statistics moved once, as in the normal model: not again in the backward pass.
    assert any(np.abs(m - b).max() > 1e-4 for m, b in zip(moving_n, before, strict=True))
    for w, m_l, m_n in zip(normal.non_trainable_weights, moving_l, moving_n, strict=True):
        np.testing.assert_allclose(m_l, m_n, rtol=1e-6, atol=1e-6, err_msg=w.path)


@tensorflow_only
def test_inference_equals_the_normal_models():
    normal, lean = _pair()
    x, _ = _data()
    np.testing.assert_allclose(lean(x, training=False), normal(x, training=False), atol=1e-6)
    np.testing.assert_allclose(lean.predict(x, verbose=0), normal.predict(x, verbose=0), atol=1e-6)


def _backward_readers_of_branch_output(model, block):
    """Names of the ops in a traced training step, other than the module's forward ops, that
    read the output of `block`'s last batch normalisation (the module's input): the backward
    pass's readers, which keep it alive."""
    import tensorflow as tf

    x, y = _data()
    graph = (
        _train_step(model, jit=False).get_concrete_function(tf.constant(x), tf.constant(y)).graph
    )
    bn = f"/{block}_bn2"
    module = f"/{block}_rclb"
    outputs = set()
    for op in graph.get_operations():
        if module in op.name and not op.name.startswith("gradient"):
            outputs.update(t.name for t in op.inputs if bn in t.op.name)
    assert outputs, "the module's input was not found in the graph"
    readers = {op.name for op in graph.get_operations() for t in op.inputs if t.name in outputs}
    assert any(module in name for name in readers)
    return {name for name in readers if module not in name}


@tensorflow_only
def test_backward_pass_does_not_read_the_normalisation_output():
    normal, lean = _pair()
    # The normal model's gradient reads it (the extra activation the lean path saves)...
    assert _backward_readers_of_branch_output(normal, "layer2_0")
    # ...the lean model's does not: its backward pass recomputes it from the convolution.
    assert not _backward_readers_of_branch_output(lean, "layer2_0")


@tensorflow_only
def test_recomputation_waits_for_the_upstream_gradient():
    import tensorflow as tf

    _, lean = _pair()
    x, y = _data()
    graph = _train_step(lean, jit=False).get_concrete_function(tf.constant(x), tf.constant(y)).graph
    convs = [
        op
        for op in graph.get_operations()
        if op.type == "Conv2D" and "/layer2_0_conv2" in op.name and not op.name.startswith("grad")
    ]
    assert len(convs) == 1
    z = convs[0].outputs[0]
    copies = [
        op
        for op in graph.get_operations()
        if op.type == "Identity" and z.name in [t.name for t in op.inputs]
    ]
    # Without a control input TensorFlow's executor would recompute during the forward pass,
    # and the recomputed normalisation output would wait in memory as the normal model's does.
    assert copies and all(op.control_inputs for op in copies)


@tensorflow_only
def test_same_weights_in_the_same_order_and_files_interchange(tmp_path):
    normal, lean = _pair()
    assert [w.path for w in lean.weights] == [w.path for w in normal.weights]
    assert [layer.name for layer in lean.layers] == [layer.name for layer in normal.layers]
    assert isinstance(lean.get_layer("layer1_0_rclb"), kr.StyleRecalibration)
    fresh = cifar_resnet(8, "srm", input_shape=SHAPE, memory_lean=True)
    normal.save_weights(tmp_path / "normal.weights.h5")
    fresh.load_weights(tmp_path / "normal.weights.h5")
    for a, b in zip(fresh.weights, normal.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@tensorflow_only
def test_keras_round_trip_keeps_the_lean_gradient(tmp_path):
    normal, lean = _pair()
    path = tmp_path / "lean.keras"
    lean.save(path)
    loaded = kr.load_model(path)
    assert type(loaded.get_layer("layer1_0_add")).__name__ == "RecomputedBranchAdd"
    x, y = _data()
    np.testing.assert_allclose(loaded(x), normal(x), atol=1e-6)
    assert not _backward_readers_of_branch_output(loaded, "layer3_0")
    _, grads_loaded = _train_step(loaded, jit=False)(x, y)
    _, grads_normal = _train_step(normal, jit=False)(x, y)
    for g_l, g_n in zip(grads_loaded, grads_normal, strict=True):
        np.testing.assert_allclose(g_l, g_n, rtol=1e-5, atol=1e-5)


def _torch_state(model, seed=0):
    """A torchvision-named state dict with random values for a `cifar_resnet` with SRM."""
    rng = np.random.default_rng(seed)
    state = {}
    for layer in model.layers:
        prefix = layer.name.replace("_", ".") + "."
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            state[prefix + "weight"] = rng.normal(size=(cout, cin, kh, kw))
        elif isinstance(layer, (keras.layers.BatchNormalization, kr.StyleRecalibration)):
            channels = layer.moving_mean.shape[0] if hasattr(layer, "moving_mean") else None
            if channels is None:
                channels = layer.cfc.shape[0]
                state[prefix + "cfc"] = rng.normal(size=(channels, 2))
                prefix += "bn."
            for key in ("weight", "bias", "running_mean"):
                state[prefix + key] = rng.normal(size=channels)
            state[prefix + "running_var"] = rng.uniform(0.5, 1.5, channels)
        elif isinstance(layer, keras.layers.Dense):
            cin, cout = layer.kernel.shape
            state[prefix + "weight"] = rng.normal(size=(cout, cin))
            state[prefix + "bias"] = rng.normal(size=cout)
    return {k: np.asarray(v, "float32") for k, v in state.items()}


@tensorflow_only
def test_loads_torch_weights_like_the_normal_model():
    normal, lean = _pair()
    state = _torch_state(normal)
    assert load_torch_weights(normal, state) is normal
    assert load_torch_weights(lean, state) is lean
    for a, b in zip(lean.weights, normal.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@tensorflow_only
def test_tflite_export_equals_the_normal_models(tmp_path):
    from contract_utils import convert_builtins_only, tflite_op_names, tflite_run

    normal, lean = _pair()
    x, _ = _data(batch=1)
    files = {}
    for name, model in (("normal", normal), ("lean", lean)):
        kr.export.export_saved_model(model, tmp_path / name)
        files[name] = convert_builtins_only(tmp_path / name)
    assert tflite_op_names(files["lean"]) == tflite_op_names(files["normal"])
    expected = np.asarray(normal(x, training=False))
    np.testing.assert_allclose(tflite_run(files["lean"], x), expected, rtol=1e-5, atol=1e-5)


@tensorflow_only
def test_frozen_modules_train_like_the_normal_model():
    normal, lean = _pair()
    for model in (normal, lean):
        for layer in model.layers:
            if isinstance(layer, kr.StyleRecalibration):
                layer.trainable = False
    x, y = _data()
    _, grads_normal = _train_step(normal, jit=False)(x, y)
    _, grads_lean = _train_step(lean, jit=False)(x, y)
    assert len(grads_lean) == len(lean.trainable_weights) == len(normal.trainable_weights)
    for g_l, g_n in zip(grads_lean, grads_normal, strict=True):
        np.testing.assert_allclose(g_l, g_n, rtol=1e-5, atol=1e-5)


@tensorflow_only
@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: resnet(18, "srm", memory_lean=1), "Received: memory_lean=1"),
        (
            lambda: cifar_resnet(8, memory_lean=True),
            "Received: memory_lean=True, recalibration=None",
        ),
    ],
)
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.skipif(BACKEND == "tensorflow", reason="the refusal of the other backends")
def test_other_backends_are_refused():
    with pytest.raises(
        ValueError, match=f"needs the TensorFlow backend.*Received: backend={BACKEND}"
    ):
        cifar_resnet(8, "srm", memory_lean=True)
    assert cifar_resnet(8, "srm", memory_lean=False).count_params() > 0
