"""Adding recalibration modules to an existing functional model's residual branches."""

import collections

import keras

from keras_recalib import _graph_internals as internals
from keras_recalib import _registry


def _distances(tensor):
    """Shortest number of operations from each ancestor tensor (by id) down to `tensor`."""
    distance = {id(tensor): 0}
    queue = collections.deque([tensor])
    while queue:
        current = queue.popleft()
        call = internals.producer(current)
        if call is None:
            continue
        for parent in call.inputs:
            if id(parent) not in distance:
                distance[id(parent)] = distance[id(current)] + 1
                queue.append(parent)
    return distance


def residual_branch(call):
    """The input tensor of an addition call that is the residual branch, or None.

    Both inputs of a residual addition descend from the block input (their nearest common
    ancestor). The shortcut is the shorter path from it: the identity (no operation), a
    projection (convolution + batch normalisation) or a pooling; the branch is the longer one.
    Additions of more or fewer than two tensors, of unrelated tensors, or of two equally long
    paths are not residual.
    """
    inputs = call.inputs
    if len(inputs) != 2 or inputs[0] is inputs[1]:
        return None
    first, second = (_distances(t) for t in inputs)
    common = [key for key in first if key in second]
    if not common:
        return None
    fork = min(common, key=lambda key: (first[key] + second[key], max(first[key], second[key])))
    if first[fork] == second[fork]:
        return None
    return inputs[0] if first[fork] > second[fork] else inputs[1]


def _unique_name(base, taken):
    name, index = base, 1
    while name in taken:
        name = f"{base}_{index}"
        index += 1
    taken.add(name)
    return name


def _layer_names(model, names):
    for layer in model.layers:
        names.add(layer.name)
        if isinstance(layer, keras.Model):
            _layer_names(layer, names)
    return names


def _rewrite(model, make_module, names, cache):
    """A functional copy of `model` (same layers) with a module before each residual Add."""
    inputs = keras.tree.map_structure(
        lambda x: keras.Input(batch_shape=x.shape, dtype=x.dtype, name=x.name), model.input
    )
    computed = {
        id(old): new for old, new in zip(model.inputs, keras.tree.flatten(inputs), strict=True)
    }
    inserted = 0
    for call in internals.calls(model):
        operation = call.operation
        if internals.is_functional(operation):
            if id(operation) not in cache:
                cache[id(operation)] = _rewrite(operation, make_module, names, cache)
            rewritten, count = cache[id(operation)]
            if count:  # an untouched nested model is called as it is
                operation = rewritten
                inserted += count
        values = computed
        branch = residual_branch(call) if internals.is_addition(call.operation) else None
        if branch is not None:
            base = f"{call.operation.name}_rclb"
            module = make_module(_unique_name(base, names))
            values = dict(computed)
            values[id(branch)] = module(computed[id(branch)])
            inserted += 1
        outputs = internals.call_again(call, values, operation)
        for old, new in zip(call.outputs, keras.tree.flatten(outputs), strict=True):
            computed[id(old)] = new
    outputs = [computed[id(x)] for x in model.outputs]
    outputs = keras.tree.pack_sequence_as(model.output, outputs)
    return keras.Model(inputs, outputs, name=model.name), inserted


def insert_recalibration(model, recalibration, **kwargs):
    """A copy of a functional model with a recalibration module on every residual branch.

    For every residual addition (an `Add` layer, or `+` of Keras tensors, with two inputs), the
    module is inserted on the input that is the residual branch, just before the addition:
    after the branch's last batch normalisation where it ends in one (ResNet50, MobileNetV2),
    after its last convolution otherwise (ResNet50V2). The shortcut is recognised as the
    shorter path back to the block input (identity, projection or pooling). Nested functional
    models are rewritten too.

    The new model calls the original layers, so it shares their weights (train it and the
    original changes too); only the modules are new. It saves to `.keras`, exports and
    converts to TFLite like any functional model.

    Args:
        model: a functional `keras.Model` (e.g. `keras.applications.ResNet50(weights=None)`
            or one loaded from a `.keras` file).
        recalibration: a name `keras_recalib.get` accepts, a layer class, or a callable that
            returns a new layer (called with `**kwargs` once per branch).
        **kwargs: arguments of every module.

    Returns:
        The new functional `keras.Model`. Modules are named after their addition:
        `<add layer name>_rclb`.

    Raises:
        ValueError: `model` is not a functional model, or has no residual addition.

    Example:

    >>> base = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3))
    >>> model = insert_recalibration(base, "srm")
    """
    if not internals.is_functional(model):
        raise ValueError(
            "insert_recalibration needs a functional keras.Model (built with keras.Input). "
            f"Received: model={model!r} of type {type(model).__name__}"
        )
    make_module = _registry.module_factory(recalibration, kwargs)
    if make_module is None:
        raise ValueError("Argument `recalibration` must not be None. Received: recalibration=None")
    new_model, inserted = _rewrite(model, make_module, _layer_names(model, set()), {})
    if inserted == 0:
        raise ValueError(
            "The model has no residual addition (an Add of a branch and its shortcut) to put a "
            f"recalibration module on. Received: model={model.name!r}"
        )
    return new_model
