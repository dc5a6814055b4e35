"""Every non-public Keras (and TensorFlow graph) API the package's models rely on, in one place.

Keras 3 has no public API to walk a functional model's graph or to call its layers again on
new tensors, which `insert_recalibration` (rewriting a model) and `count_macs` (reading each
layer call's shapes) need. What they use from Keras' internals:

- `Functional._nodes_by_depth`: the layer calls of a model, grouped by distance to its outputs.
- `Node.operation`, `Node.is_input`, `Node.arguments.fill_in(...)`, `Node.input_tensors`,
  `Node.outputs` (`keras/src/ops/node.py`, `keras/src/ops/symbolic_arguments.py`).
- `KerasTensor._keras_history` (operation, node index) and `Operation._inbound_nodes` /
  `_outbound_nodes`: which call produced a tensor, which calls read a layer's output.
- `keras.src.ops.numpy.Add`: the operation `x + y` on Keras tensors records (no `Add` layer).
- Renaming a layer after construction (`layer.name = ...`): Keras settles a layer's variable
  paths in `build`, so a rename before `build` is complete.

And from TensorFlow, for counting the operations of a traced module:

- `FuncGraph._get_function(name)`: the graph of a function that a `(Stateful)PartitionedCall`
  op of a traced graph calls.

The rest of the package sees these only as `Call` records and the functions below.
`tests/test_graph_internals.py` checks each of them directly, so a Keras or TensorFlow release
that moves one fails there with its name rather than somewhere downstream.

Supported: Keras 3.3 (the declared minimum) to 3.15 (the one the package is developed on). The
tests of this module, `tests/test_insert.py` and `tests/test_registry.py` (without the slow
export case) pass on Keras 3.3.3 and on 3.15.1, both with TensorFlow 2.21.
"""

import collections

import keras

try:  # `x + y` on Keras tensors records this operation instead of an Add layer.
    from keras.src.ops.numpy import Add as _AddOperation
except ImportError:  # pragma: no cover - a layout the tests of this module would flag
    _AddOperation = None

Call = collections.namedtuple("Call", ["operation", "inputs", "outputs", "node"])
Call.__doc__ = """One call of an operation in a functional graph.

`inputs` and `outputs` are the flat lists of Keras tensors it read and wrote; `node` is Keras'
own record, to hand back to `call_again`."""


def _call(node):
    return Call(node.operation, list(node.input_tensors), list(node.outputs), node)


def is_functional(model):
    """Whether `model` is a functional model (built from `keras.Input`), not a Sequential."""
    return (
        isinstance(model, keras.Model)
        and not isinstance(model, keras.Sequential)
        and hasattr(model, "_nodes_by_depth")
    )


def calls(model):
    """The layer and operation calls of a functional `model`, inputs first, outputs last.

    Only the model's own calls: a layer also called elsewhere (another model sharing it) has
    more calls than these.
    """
    found = []
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.operation is None or node.is_input:
                continue
            found.append(_call(node))
    return found


def producer(tensor):
    """The `Call` that computed a Keras tensor (a call without inputs for a `keras.Input`), or
    None for a tensor that no graph recorded."""
    history = getattr(tensor, "_keras_history", None)
    if history is None or history.operation is None:
        return None
    return _call(history.operation._inbound_nodes[history.node_index])


def inbound_calls(layer):
    """Every call of `layer` so far, oldest first."""
    return [_call(node) for node in layer._inbound_nodes]


def outbound_calls(layer):
    """Every call that read an output of `layer`."""
    return [_call(node) for node in layer._outbound_nodes]


def call_again(call, values, operation=None):
    """Repeats `call` on new tensors: `values` maps `id(old tensor)` to its replacement.

    Arguments that are not tensors (e.g. `training=False`) are passed as recorded. The call
    goes to `operation` when given (a rewritten copy of a nested model), else to the original.
    """
    args, kwargs = call.node.arguments.fill_in(values)
    return (operation or call.operation)(*args, **kwargs)


def is_addition(operation):
    """Whether `operation` adds its inputs: an `Add` layer, or `+` of Keras tensors."""
    if isinstance(operation, keras.layers.Add):
        return True
    return _AddOperation is not None and isinstance(operation, _AddOperation)


def rename_unbuilt(layer, name):
    """Gives a new, unbuilt layer its name (which then also prefixes its variables' paths)."""
    if layer.built:
        raise ValueError(f"Only an unbuilt layer can be renamed. Received: layer={layer.name!r}")
    layer.name = name


def function_graph(graph, name):
    """The graph of the function `name` that a call op in the traced `graph` runs."""
    return graph._get_function(name).graph
