"""Argument checks shared by every layer.

Each check raises a ``ValueError`` whose message names the argument, says what was expected and
ends with ``Received: name=value``, so that a wrong config dict or a typo fails at construction
instead of deep inside TensorFlow.
"""

import inspect
import math
import numbers

import keras
import numpy as np

from keras_recalib._conventions import fan_out_normal

# What initializer and regularizer arguments accept: a name, a config dict or an instance.
InitializerLike = str | dict | keras.initializers.Initializer
RegularizerLike = str | dict | keras.regularizers.Regularizer


def _fail(name, expected, value):
    raise ValueError(f"Argument `{name}` must be {expected}. Received: {name}={value!r}")


def check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        _fail(name, "a bool (True or False)", value)
    return bool(value)


def check_float(name, value, *, minimum=None, maximum=None, min_inclusive=True):
    """A finite real number within bounds; ints are accepted and converted."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        _fail(name, "a number", value)
    value = float(value)
    if not math.isfinite(value):
        _fail(name, "a finite number", value)
    if minimum is not None:
        if min_inclusive and value < minimum:
            _fail(name, f">= {minimum}", value)
        if not min_inclusive and value <= minimum:
            _fail(name, f"> {minimum}", value)
    if maximum is not None and value > maximum:
        _fail(name, f"<= {maximum}", value)
    return value


def check_int(name, value, *, minimum=None, allow_none=False, odd=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        _fail(name, "an integer" + (" or None" if allow_none else ""), value)
    value = int(value)
    if minimum is not None and value < minimum:
        _fail(name, f"an integer >= {minimum}", value)
    if odd and value % 2 == 0:
        _fail(name, "an odd integer", value)
    return value


def check_choice(name, value, choices):
    if not isinstance(value, str) or value.lower() not in choices:
        _fail(name, "one of " + ", ".join(repr(c) for c in choices), value)
    return value.lower()


def get_initializer(name, value):
    """A Keras initializer; `None` is refused (layers whose default is "the official init"
    handle `None` themselves before calling this)."""

    if value is None:
        _fail(name, "a Keras initializer, its name or its config", value)
    try:
        return keras.initializers.get(value)
    except (ValueError, TypeError):
        _fail(name, "a Keras initializer, its name or its config", value)


def get_regularizer(name, value):

    try:
        return keras.regularizers.get(value)
    except (ValueError, TypeError):
        _fail(name, "None, a Keras regularizer, its name or its config", value)


def fresh_initializer(initializer):
    """An independent copy of `initializer`, for each variable or sublayer that shares it.

    One unseeded Keras initializer instance passed to two sublayers gives both the same draw;
    a copy rebuilt from its config draws anew. A seeded initializer stays reproducible, but each
    copy gets its own seed (seed, seed + 1, ... in the order the copies are made), so two
    branches never start identical.
    """
    config = initializer.get_config()
    if isinstance(config.get("seed"), numbers.Integral):
        copies = getattr(initializer, "_keras_recalib_copies", 0)
        initializer._keras_recalib_copies = copies + 1
        config["seed"] = int(config["seed"]) + copies
    return type(initializer).from_config(config)


def _canonical(name, value):
    # Initializers and regularizers compare by their serialized config, so "zeros", Zeros() and
    # the dict `get_config` wrote count as the same value.
    if name.endswith("_initializer"):
        return keras.initializers.serialize(keras.initializers.get(value))
    if name.endswith("_regularizer"):
        return keras.regularizers.serialize(keras.regularizers.get(value))
    return value


def refuse_inactive(cls, condition, **arguments):
    """Refuses arguments that would have no effect, instead of silently ignoring them.

    Each of `arguments` (name=value, after its own check) that differs from its default in
    `cls.__init__` is a ValueError while `condition` (e.g. "use_batch_norm=False") switches it
    off; initializers and regularizers compare by their config, so `from_config(get_config())`
    still works.
    """
    parameters = inspect.signature(cls.__init__).parameters
    for name, value in arguments.items():
        default = parameters[name].default
        if _canonical(name, value) != _canonical(name, default):
            raise ValueError(
                f"Argument `{name}` has no effect with {condition}; leave it at its default "
                f"({default!r}). Received: {name}={value!r}"
            )


def initializer_or_fan_out(name, value):
    """Argument `name` as a Keras initializer, `None` meaning the official trainings'
    fan-out normal (`keras_recalib._conventions.fan_out_normal`)."""
    if value is None:
        return fan_out_normal()
    return get_initializer(name, value)
