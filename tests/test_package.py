"""Package-level behaviour: registration, factory (backends: tests/test_backends.py)."""

import keras
import pytest

import keras_recalib as kr


def test_every_public_layer_is_registered_for_deserialisation():
    for name in kr.layers.__all__:
        cls = getattr(kr.layers, name)
        assert getattr(kr, name) is cls
        registered = keras.saving.get_registered_name(cls)
        assert registered == f"keras_recalib>{name}"
        assert keras.saving.get_registered_object(registered) is cls


@pytest.mark.parametrize("name", ["srm", "SRM", "Srm"])
def test_factory_builds_by_name(name):
    layer = kr.get(name, epsilon=0.0)
    assert isinstance(layer, kr.StyleRecalibration)
    assert layer.epsilon == 0.0


def test_factory_passes_classes_and_instances_through():
    instance = kr.StyleRecalibration()
    assert kr.get(instance) is instance
    assert isinstance(kr.get(kr.StyleRecalibration, unbiased=True), kr.StyleRecalibration)
    with pytest.raises(ValueError, match="Keyword arguments cannot be applied"):
        kr.get(instance, epsilon=0.0)


def test_factory_rejects_unknown_names_listing_valid_ones():
    with pytest.raises(ValueError) as info:
        kr.get("resnet")
    assert "Received: identifier='resnet'" in str(info.value)
    for name in kr.available():
        assert name in str(info.value)
    with pytest.raises(ValueError, match="Received: identifier=3"):
        kr.get(3)
