"""The one contract every layer of the package passes; entries live in layer_cases.py."""

import keras
import numpy as np
import pytest
from contract_utils import (
    convert_builtins_only,
    gradients_enabled,
    random_inputs,
    randomize_weights,
    tflite_op_names,
    tflite_run,
    variable_gradients,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from layer_cases import CASES

cases = pytest.mark.parametrize("case", CASES, ids=str)
tensorflow_only = pytest.mark.tensorflow_only

# Training steps per backend: TensorFlow in graph mode and under XLA, JAX jitted, PyTorch eager.
_JIT = {"tensorflow": [False, True], "jax": [True], "torch": [False]}[keras.backend.backend()]
_JIT_IDS = {False: "graph", True: "xla"} if keras.backend.backend() == "tensorflow" else None
# Fuzzed shapes per case: every new shape is a new compilation for eager JAX (most of the
# JAX run's time at 12), and JAX and PyTorch run one formulation, TensorFlow several (eager,
# fast paths), so fewer suffice there.
_FUZZ_EXAMPLES = 12 if keras.backend.backend() == "tensorflow" else 5


def make_layer(case, **overrides):
    return case.cls(**{**case.kwargs, **overrides})


def built_layer(case, seed=0, **overrides):
    layer = make_layer(case, **overrides)
    layer.build(case.input_shape)
    randomize_weights(layer, seed)
    return layer


def functional_model(case, layer, dynamic=True):
    channels = case.input_shape[-1]
    spatial = (None, None) if dynamic and case.dynamic_spatial else case.input_shape[1:3]
    inputs = keras.Input((*spatial, channels))
    model = keras.Model(inputs, layer(inputs))
    randomize_weights(layer)
    return model


# --- shapes and dtypes -------------------------------------------------------------------------


@cases
def test_output_shape_and_dtype(case):
    layer = built_layer(case)
    x = random_inputs(case.input_shape)
    y = layer(x)
    assert tuple(y.shape) == tuple(layer.compute_output_shape(x.shape))
    assert keras.backend.standardize_dtype(y.dtype) == "float32"
    if case.gated:
        assert tuple(y.shape) == x.shape
    symbolic = layer(keras.Input(case.input_shape[1:], batch_size=None))
    expected = layer.compute_output_shape((None, *case.input_shape[1:]))
    assert tuple(symbolic.shape) == tuple(expected)


@cases
def test_unknown_batch_and_spatial_size(case):
    channels = case.input_shape[-1]
    layer = make_layer(case)
    inputs = keras.Input((None, None, channels))
    if not case.dynamic_spatial:
        with pytest.raises(ValueError, match="spatial|height|width"):
            layer(inputs)
        return
    model = keras.Model(inputs, layer(inputs))
    randomize_weights(layer)
    b, h, w, _ = case.input_shape
    for shape in [(b, h, w, channels), (b + 1, h + 3, w + 1, channels)]:
        x = random_inputs(shape)
        y = np.asarray(model(x))
        np.testing.assert_allclose(y, layer(x), rtol=1e-6, atol=1e-6)
        assert np.all(np.isfinite(y))


@cases
def test_integer_inputs_are_cast(case):
    layer = built_layer(case)
    x = np.round(random_inputs(case.input_shape, scale=10.0)).astype("int32")
    np.testing.assert_allclose(layer(x), layer(x.astype("float32")), rtol=1e-6, atol=1e-6)


# --- serialisation -----------------------------------------------------------------------------


@cases
def test_config_round_trip(case):
    layer = built_layer(case)
    config = layer.get_config()
    clone = case.cls.from_config(config)
    assert clone.get_config() == config
    clone.build(case.input_shape)
    clone.set_weights(layer.get_weights())
    x = random_inputs(case.input_shape)
    np.testing.assert_array_equal(clone(x), layer(x))


@cases
def test_keras_file_round_trip(case, tmp_path):
    model = functional_model(case, make_layer(case))
    path = tmp_path / "model.keras"
    model.save(path)
    # No custom_objects: importing keras_recalib registered the layers.
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = random_inputs(case.input_shape)
    np.testing.assert_array_equal(loaded(x), model(x))
    assert type(loaded.layers[-1]) is case.cls


# --- SavedModel and TFLite ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One exported SavedModel (and its TFLite conversion) per case, shared by the checks."""
    store = {}

    def get(case):
        if case.id not in store:
            keras.utils.set_random_seed(0)
            model = functional_model(case, make_layer(case))
            path = tmp_path_factory.mktemp(case.id) / "saved_model"
            model.export(str(path), verbose=False)
            store[case.id] = (model, path)
        return store[case.id]

    return get


@tensorflow_only
@pytest.mark.slow
@cases
def test_saved_model_export_and_reload(case, exported):
    import tensorflow as tf

    model, path = exported(case)
    x = random_inputs(case.input_shape)
    expected = model(x)
    reloaded = tf.saved_model.load(str(path))
    assert "serving_default" in reloaded.signatures
    np.testing.assert_allclose(reloaded.serve(x), expected, rtol=1e-5, atol=1e-6)
    tfsm = keras.layers.TFSMLayer(str(path), call_endpoint="serve")
    np.testing.assert_allclose(tfsm(x), expected, rtol=1e-5, atol=1e-6)


@tensorflow_only
@pytest.mark.slow
@cases
def test_tflite_builtin_ops_match_keras(case, exported):
    model, path = exported(case)
    tflite_model = convert_builtins_only(path)
    assert not any(name.startswith("Flex") for name in tflite_op_names(tflite_model))
    for seed, shape in enumerate([case.input_shape, (1, *case.input_shape[1:])]):
        x = random_inputs(shape, seed=seed)
        np.testing.assert_allclose(tflite_run(tflite_model, x), model(x), rtol=0, atol=1e-5)


@tensorflow_only
@pytest.mark.slow
@cases
def test_int8_quantization_keeps_outputs(case, tmp_path):
    from keras_recalib import export

    _, height, width, channels = case.input_shape
    inputs = keras.Input((height, width, 3))
    hidden = keras.layers.Conv2D(channels, 3, padding="same", name="stem")(inputs)
    layer = make_layer(case)
    outputs = keras.layers.Conv2D(channels, 1, name="head")(layer(hidden))
    model = keras.Model(inputs, outputs)
    randomize_weights(layer)
    rng = np.random.default_rng(7)
    data = random_inputs((96, height, width, 3), seed=7) * rng.uniform(0.5, 2.0, (96, 1, 1, 1))
    data = data.astype("float32")
    path = export.convert_tflite(
        model, tmp_path / "m.tflite", quantization="int8", representative_data=data[:64]
    )
    report = export.verify_tflite(model, path, data[64:])
    assert report.fully_int8, f"float ops inside the int8 model: {report.float_ops}"
    assert report.cosine_similarity >= 0.99, report


# --- training ----------------------------------------------------------------------------------


@cases
@pytest.mark.parametrize("jit_compile", _JIT, ids=_JIT_IDS and [_JIT_IDS[j] for j in _JIT])
def test_training_step(case, jit_compile):
    channels = case.input_shape[-1]
    layer = make_layer(case)
    spatial = (None, None) if case.dynamic_spatial else case.input_shape[1:3]
    inputs = keras.Input((*spatial, channels))
    # A convolution in front gives parameter-free layers something to train through.
    hidden = keras.layers.Conv2D(channels, 1, name="stem")(inputs)
    model = keras.Model(inputs, layer(hidden))
    randomize_weights(layer)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse", jit_compile=jit_compile)
    x = random_inputs(case.input_shape)
    # An independent target: one affine in the output would leave any conv -> BN branch
    # without gradient under training-mode BN (BN cancels per-channel affine changes).
    target = random_inputs(tuple(model(x).shape), seed=1)
    before = [np.array(w) for w in layer.trainable_weights]
    stem_before = np.array(model.get_layer("stem").kernel)
    with gradients_enabled():
        history = model.fit(x, target, batch_size=x.shape[0], epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    # Gradient flows through the layer to what feeds it...
    assert not np.allclose(stem_before, model.get_layer("stem").kernel)
    if not layer.trainable_weights:
        return

    # ...and its own weights learn. A bias right before a training-mode batch norm has a zero
    # gradient by construction (Coordinate Attention's official conv1 has one), so every weight
    # must be connected with a finite gradient, and the layer's weights as a whole must move.
    target_tensor = keras.ops.convert_to_tensor(target)

    def loss():
        return keras.ops.mean(keras.ops.square(model(x, training=True) - target_tensor))

    for variable, gradient in zip(
        layer.trainable_weights, variable_gradients(loss, layer.trainable_weights), strict=True
    ):
        assert gradient is not None, f"{variable.path} is not connected to the output"
        assert np.all(np.isfinite(gradient)), f"{variable.path} has a non-finite gradient"
    moved = [
        not np.allclose(old, new) for old, new in zip(before, layer.trainable_weights, strict=True)
    ]
    assert sum(moved) >= max(1, len(moved) - 1), (
        f"only {sum(moved)} of {len(moved)} weights of {layer.name} were updated"
    )


@tensorflow_only
@cases
def test_gradients_match_numerical(case):
    shape = (2, 3, 4, case.input_shape[-1])
    layer = make_layer(case, dtype="float64")
    layer.build(shape)
    randomize_weights(layer)
    import tensorflow as tf

    x = tf.constant(random_inputs(shape, dtype="float64"))
    for training in (False, True):
        # Traced once: compute_gradient calls the function twice per input element.
        function = tf.function(lambda t, training=training: layer(t, training=training))
        theoretical, numerical = tf.test.compute_gradient(function, [x], delta=1e-4)
        np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-3, atol=1e-5)


@cases
def test_training_flag_controls_statistics(case):
    layer = built_layer(case)
    x = random_inputs(case.input_shape)
    before = [np.array(w) for w in layer.non_trainable_weights]
    inference = np.asarray(layer(x, training=False))
    for old, new in zip(before, layer.non_trainable_weights, strict=True):
        np.testing.assert_array_equal(old, new)
    training = np.asarray(layer(x, training=True))
    assert np.all(np.isfinite(inference)) and np.all(np.isfinite(training))
    if not before:
        # No batch statistics: the flag must not change anything.
        np.testing.assert_array_equal(training, inference)
        return
    for old, new in zip(before, layer.non_trainable_weights, strict=True):
        assert not np.allclose(old, new), f"{new.path} not updated by training=True"
    # Batch statistics differ from the (random) moving ones, and so do the outputs.
    assert not np.allclose(training, inference)


@cases
@pytest.mark.parametrize("training", [False, True], ids=["infer", "train"])
def test_gates_reproduce_the_output(case, training):
    """The one gate API: `gates()` returns what the layer applies, in [0, 1], broadcastable
    against the input, combined as `gates_combined_by` says."""
    layer = built_layer(case)
    x = random_inputs(case.input_shape)
    gates = {name: np.asarray(g, np.float64) for name, g in layer.gates(x, training).items()}
    if not layer.is_gate:
        assert gates == {}
        return
    assert gates, "a gate layer returns at least one gate"
    terms = []
    for name, gate in gates.items():
        assert gate.ndim == 4 and np.all(gate >= 0) and np.all(gate <= 1), name
        terms.append(np.broadcast_to(gate, x.shape))
    if layer.gates_combined_by == "mean":
        expected = np.mean([x * g for g in terms], axis=0)
    else:
        assert layer.gates_combined_by == "product"
        expected = x * np.prod(terms, axis=0)
    np.testing.assert_allclose(layer(x, training=training), expected, rtol=1e-5, atol=1e-5)


@cases
@pytest.mark.parametrize("training", [False, True], ids=["infer", "train"])
def test_degenerate_inputs_stay_finite(case, training):
    b, h, w, c = case.input_shape
    for shape in [(1, h, w, c), (b, 1, 1, c), (1, 1, 1, c)]:
        # Built per shape: a layer with a static spatial size is built for the map it sees.
        layer = make_layer(case)
        layer.build(shape)
        randomize_weights(layer)
        for x in (random_inputs(shape), np.full(shape, 3.0, "float32"), np.zeros(shape, "float32")):
            y = np.asarray(layer(x, training=training))
            assert np.all(np.isfinite(y)), f"non-finite output for shape {shape}"


# --- mixed precision ---------------------------------------------------------------------------


@cases
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision(case, policy):
    reference = built_layer(case)
    layer = make_layer(case, dtype=policy)
    layer.build(case.input_shape)
    layer.set_weights(reference.get_weights())
    for variable in layer.weights:
        assert variable.dtype == "float32"
    x = random_inputs(case.input_shape)
    for training in (False, True):
        y = keras.ops.convert_to_numpy(layer(x, training=training))
        assert keras.backend.standardize_dtype(y.dtype) == layer.compute_dtype
        # Relative to the output's scale: float16 keeps ~3 significant digits, bfloat16 ~2.
        expected = np.asarray(reference(x, training=training))
        tol = (5e-3 if policy == "mixed_float16" else 3e-2) * np.max(np.abs(expected))
        np.testing.assert_allclose(np.asarray(y, "float32"), expected, rtol=0, atol=tol)
    if case.gated:
        big = np.clip(random_inputs(case.input_shape, scale=3e4), -6e4, 6e4).astype("float16")
        for training in (False, True):
            y = keras.ops.convert_to_numpy(layer(big, training=training))
            assert np.all(np.isfinite(np.asarray(y, "float32")))


# --- fuzzing -----------------------------------------------------------------------------------


@cases
@settings(
    max_examples=_FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_fuzz_outputs_finite_and_gated(case, data):
    batch = data.draw(st.integers(1, 3), label="batch")
    height = data.draw(st.integers(1, 9), label="height")
    width = data.draw(st.integers(1, 9), label="width")
    channels = data.draw(st.sampled_from(case.fuzz_channels), label="channels")
    scale = data.draw(st.sampled_from([1e-3, 1.0, 1e3]), label="scale")
    training = data.draw(st.booleans(), label="training")
    kwargs = {
        name: data.draw(st.sampled_from(values), label=name)
        for name, values in case.fuzz_kwargs.items()
    }
    shape = (batch, height, width, channels)
    layer = make_layer(case, **kwargs)
    layer.build(shape)
    randomize_weights(layer, seed=data.draw(st.integers(0, 100), label="seed"))
    x = random_inputs(shape, seed=batch * 100 + height, scale=scale)
    y = np.asarray(layer(x, training=training))
    assert np.all(np.isfinite(y))
    if case.gated:
        assert np.all(np.abs(y) <= np.abs(x) * (1 + 1e-5) + 1e-6)


# --- bad input ---------------------------------------------------------------------------------


@cases
@pytest.mark.parametrize("rank", [3, 5])
def test_rejects_wrong_rank(case, rank):
    shape = (2, 4, 8) if rank == 3 else (2, 3, 4, 4, 8)
    with pytest.raises(ValueError, match=r"rank-4.*Received: input_shape="):
        make_layer(case)(np.zeros(shape, "float32"))
    with pytest.raises(ValueError, match=r"rank-4.*Received: input_shape="):
        make_layer(case)(keras.Input(shape[1:]))


@cases
def test_rejects_unknown_channels(case):
    with pytest.raises(ValueError, match=r"channel.*Received: input_shape="):
        make_layer(case)(keras.Input((None, None, None)))


@cases
def test_rejects_channels_first(case):
    keras.config.set_image_data_format("channels_first")
    with pytest.raises(ValueError, match="Received: image_data_format=channels_first"):
        make_layer(case)


@pytest.mark.parametrize(
    "case,bad,name",
    [(c, bad, name) for c in CASES for bad, name in c.bad_kwargs],
    ids=lambda p: p.id if hasattr(p, "id") else None,
)
def test_rejects_bad_arguments(case, bad, name):
    with pytest.raises(ValueError, match=rf"`{name}`.*Received: {name}="):
        make_layer(case, **bad)
    config = make_layer(case).get_config()
    config.update(bad)
    with pytest.raises(ValueError, match=rf"`{name}`.*Received: {name}="):
        case.cls.from_config(config)
