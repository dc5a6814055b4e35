"""The runtime a function is being traced for, read by the fast implementations.

Some formulations are fastest in one runtime only: a statistic TensorFlow's oneDNN kernels run
fastest as a whole-map average pooling is fastest in TFLite (XNNPACK) as a MEAN. The package's
`convert_tflite` traces the model inside `traced_for("tflite")`, or `traced_for("tflite_int8")`
when activations are quantized to int8 (where a formulation must also quantize well);
everything else traces for TensorFlow itself. Like the fast-path switch, this is read when a
function is traced.
"""

import contextlib

RUNTIMES = ("tflite", "tflite_int8")
_current = None


def current():
    """The runtime being traced for: one of `RUNTIMES`, or None (TensorFlow itself)."""
    return _current


@contextlib.contextmanager
def traced_for(runtime):
    """`with traced_for("tflite"): ...` traces with the formulations chosen for that runtime
    (`"tflite_int8"`: TFLite with int8 activations)."""
    global _current
    if runtime not in RUNTIMES:
        raise ValueError(
            f"Argument `runtime` must be one of {', '.join(map(repr, RUNTIMES))}. "
            f"Received: runtime={runtime!r}"
        )
    previous, _current = _current, runtime
    try:
        yield
    finally:
        _current = previous
