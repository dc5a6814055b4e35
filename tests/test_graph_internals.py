"""The non-public Keras and TensorFlow APIs of `keras_recalib._graph_internals`, one by one.

These fail, naming the API, when a Keras or TensorFlow release moves or changes one of them;
`insert_recalibration` and `count_macs` would otherwise break (or silently miss residual
additions) further downstream.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_recalib import _graph_internals as internals


def _block_model():
    image = keras.Input((4, 4, 3), name="image")
    conv = keras.layers.Conv2D(3, 1, name="conv")
    y = conv(image)
    y = keras.layers.Dropout(0.5, name="drop")(y, training=False)
    summed = image + y
    out = keras.layers.Add(name="add")([summed, y])
    return keras.Model(image, {"out": out}, name="block"), conv


def test_operator_addition_is_recognised():
    # The `keras.src` import: without it, `x + y` residuals are silently not found.
    assert internals._AddOperation is not None
    a, b = keras.Input((3,)), keras.Input((3,))
    for summed in (a + b, keras.ops.add(a, b)):
        operation = internals.producer(summed).operation
        assert not isinstance(operation, keras.layers.Layer)
        assert internals.is_addition(operation)
    assert internals.is_addition(keras.layers.Add())
    for other in (a - b, a * b, keras.layers.Concatenate()([a, b])):
        assert not internals.is_addition(internals.producer(other).operation)


def test_calls_are_in_graph_order_with_their_tensors():
    model, conv = _block_model()
    calls = internals.calls(model)
    names = [call.operation.name for call in calls]
    assert names[:2] == ["conv", "drop"] and names[-1] == "add" and len(names) == 4
    assert all(call.inputs for call in calls)  # the input layer's call is left out
    conv_call = calls[0]
    assert conv_call.operation is conv
    assert conv_call.inputs == [model.inputs[0]]
    assert conv_call.outputs[0].shape == (None, 4, 4, 3)
    assert calls[-1].outputs == [model.output["out"]]


def test_producer_finds_the_call_and_stops_at_inputs():
    model, conv = _block_model()
    (add_input, dropped) = internals.producer(model.output["out"]).inputs
    assert internals.producer(dropped).operation.name == "drop"
    assert internals.is_addition(internals.producer(add_input).operation)
    image_call = internals.producer(model.inputs[0])
    assert image_call is not None and image_call.inputs == []
    assert internals.producer(keras.KerasTensor((1, 3))) is None


def test_calls_of_a_shared_layer_are_counted_per_model():
    shared = keras.layers.Dense(2, name="shared")
    first = keras.Input((3,))
    second = keras.Input((3,))
    model = keras.Model(first, shared(first))
    keras.Model(second, shared(second))
    assert [call.operation for call in internals.calls(model)] == [shared]
    calls = internals.inbound_calls(shared)
    assert len(calls) == 2 and calls[1].inputs == [second]


def test_outbound_calls_are_the_readers():
    image = keras.Input((3,))
    stem = keras.layers.Dense(3, name="stem")
    y = stem(image)
    keras.layers.Dense(1, name="left")(y)
    keras.layers.Dense(1, name="right")(y)
    assert sorted(call.operation.name for call in internals.outbound_calls(stem)) == [
        "left",
        "right",
    ]


class _Scale(keras.layers.Layer):
    def call(self, x, factor=1.0):
        return x * factor


def test_call_again_substitutes_tensors_and_keeps_the_other_arguments():
    image = keras.Input((3,))
    scaled = _Scale(name="scale")(keras.layers.Identity()(image), factor=3.0)
    (_, call) = internals.calls(keras.Model(image, scaled))
    fresh = keras.Input((3,))
    again = internals.call_again(call, {id(call.inputs[0]): fresh})
    x = np.array([[1.0, -2.0, 0.5]], "float32")
    np.testing.assert_array_equal(keras.Model(fresh, again)(x), 3.0 * x)
    other = _Scale(name="other")
    again = internals.call_again(call, {id(call.inputs[0]): fresh}, other)
    assert internals.producer(again).operation is other
    np.testing.assert_array_equal(keras.Model(fresh, again)(x), 3.0 * x)


def test_is_functional():
    model, _ = _block_model()
    assert internals.is_functional(model)
    sequential = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    assert not internals.is_functional(sequential)

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    assert not internals.is_functional(Subclassed())
    assert not internals.is_functional(keras.layers.Dense(2))


def test_rename_unbuilt_names_the_layer_and_its_variables():
    layer = keras.layers.Dense(2, name="before")
    internals.rename_unbuilt(layer, "layer1_0_rclb")
    layer(np.zeros((1, 3), "float32"))
    assert layer.name == layer.get_config()["name"] == "layer1_0_rclb"
    assert layer.kernel.path == "layer1_0_rclb/kernel"
    with pytest.raises(ValueError, match="Received: layer='layer1_0_rclb'"):
        internals.rename_unbuilt(layer, "again")


def test_function_graph_of_a_nested_call():
    @tf.function(autograph=False)
    def inner(x):
        return x * x

    @tf.function(autograph=False)
    def outer(x):
        return inner(x) + 1.0

    graph = outer.get_concrete_function(tf.TensorSpec((2,), tf.float32)).graph
    (call,) = [op for op in graph.get_operations() if op.type.endswith("PartitionedCall")]
    nested = internals.function_graph(graph, call.get_attr("f").name)
    assert "Mul" in {op.type for op in nested.get_operations()}
