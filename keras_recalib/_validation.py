"""Argument checks shared by every layer.

Each check raises a ``ValueError`` whose message names the argument, says what was expected and
ends with ``Received: name=value``, so that a wrong config dict or a typo fails at construction
instead of deep inside TensorFlow.
"""

import math
import numbers

import numpy as np


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
    import keras

    if value is None:
        _fail(name, "a Keras initializer, its name or its config", value)
    try:
        return keras.initializers.get(value)
    except (ValueError, TypeError):
        _fail(name, "a Keras initializer, its name or its config", value)


def get_regularizer(name, value):
    import keras

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


def refuse_inactive(condition, arguments):
    """Refuses arguments that would have no effect, instead of silently ignoring them.

    Args:
        condition: what makes them inactive, e.g. "use_batch_norm=False".
        arguments: name -> (value, default); a value other than its default is an error.
    """
    for name, (value, default) in arguments.items():
        if value != default:
            raise ValueError(
                f"Argument `{name}` has no effect with {condition}; leave it at its default "
                f"({default!r}). Received: {name}={value!r}"
            )
