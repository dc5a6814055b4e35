"""The one registry of short names (`keras_recalib._registry`) and the models' module factory."""

import subprocess
import sys

import keras
import pytest

import keras_recalib as kr
from keras_recalib import _registry


@pytest.mark.parametrize("name", sorted(_registry.NAMES))
def test_every_name_resolves_to_a_public_layer(name):
    cls = _registry.resolve(name)
    assert issubclass(cls, keras.layers.Layer)
    assert getattr(kr, cls.__name__) is cls
    assert _registry.resolve(name.upper()) is cls
    assert type(kr.get(name)) is cls


def test_available_is_the_sorted_table():
    assert kr.available() == sorted(_registry.NAMES) == _registry.available()
    assert _registry.resolve("resnet") is None


def test_names_are_readable_without_keras():
    # What a command line that must start quickly does: make the package's module object
    # without running its `__init__` (which imports Keras), then import the registry.
    code = (
        "import importlib.util, sys\n"
        "spec = importlib.util.find_spec('keras_recalib')\n"
        "sys.modules['keras_recalib'] = importlib.util.module_from_spec(spec)\n"
        "from keras_recalib import _registry\n"
        "print(','.join(_registry.available()))\n"
        "print('keras' in sys.modules, 'tensorflow' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split() == [",".join(kr.available()), "False", "False"]


def test_a_name_makes_new_named_layers():
    make = _registry.module_factory("srm", {"unbiased": True})
    first, second = make("a_rclb"), make("b_rclb")
    assert first is not second
    assert (first.name, second.name) == ("a_rclb", "b_rclb")
    assert first.unbiased and isinstance(first, kr.StyleRecalibration)


def test_a_class_or_callable_is_called_once_per_layer_and_renamed():
    made = []

    def factory(**kwargs):
        made.append(kwargs)
        return kr.SqueezeExcitation(**kwargs)

    make = _registry.module_factory(factory, {"reduction": 4})
    layer = make("layer1_0_rclb")
    assert layer.name == "layer1_0_rclb" and layer.reduction == 4
    assert made == [{"reduction": 4}]
    assert _registry.module_factory(kr.SimAM, {})("x_rclb").name == "x_rclb"


def test_no_module_means_no_factory():
    assert _registry.module_factory(None, {}) is None


@pytest.mark.parametrize(
    "recalibration,kwargs,message",
    [
        (None, {"epsilon": 0.0}, "without a module"),
        ("nope", {}, "Received: identifier='nope'"),
        ("srm", {"epsilon": -1.0}, "Received: epsilon=-1.0"),
        (3, {}, "Received: recalibration=3"),
    ],
)
def test_bad_modules_fail_before_any_layer_is_made(recalibration, kwargs, message):
    with pytest.raises(ValueError, match=message):
        _registry.module_factory(recalibration, kwargs)


def test_a_shared_or_built_layer_is_refused():
    with pytest.raises(ValueError, match="cannot be shared"):
        _registry.module_factory(kr.StyleRecalibration(), {})
    built = kr.StyleRecalibration()
    built.build((None, 4, 4, 8))
    with pytest.raises(ValueError, match="new, unbuilt layer"):
        _registry.module_factory(lambda: built, {})("x")
    with pytest.raises(ValueError, match="must return a Keras layer"):
        _registry.module_factory(lambda: "srm", {})("x")
