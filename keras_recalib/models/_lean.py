"""Memory-lean training: a branch's last batch normalisation and its module, recomputed from the
convolution output in the backward pass (`resnet(..., memory_lean=True)`).

In a plain residual branch the last batch normalisation's output y = BN(z) is not kept for the
backward pass: BN's gradient needs the convolution output z, the addition and ReLU their own
output. A gate u = y * g(y) needs y for the product's and the gate's gradients, one more
activation-sized tensor per block (+24-26% training peak for ResNet-50 at batch 8).

`RecomputedBranchAdd` is the block's addition with z as a third input,
`RecomputedBranchAdd()([module(bn(z)), shortcut, z])`: its output is u + shortcut, and in
training it replaces the gradient of the whole tail z -> u by one that recomputes BN(z) and the
module from z under a tape. The gradient through the normal
path (bn, then module) is never built, so after the forward pass nothing holds y: the backward
pass keeps z (which BN's gradient keeps anyway) and a few per-channel tensors. The forward pass
is the normal model's, with the normal layers, so outputs, moving statistics (updated once, in
the forward pass; the recomputation runs in a `keras.StatelessScope`, which collects the
normalisations' moving-average assignments and drops them), weights, their order, `.weights.h5`
files, layer names and PyTorch weight loading are those of the normal model. In inference the
layer is the plain addition.

TensorFlow only: the gradient is a `tf.custom_gradient`. The builders refuse `memory_lean=True`
on the other backends; a lean model loaded there trains with the ordinary gradient.
"""

import keras

from keras_recalib import _graph_internals


class _Tail:
    """The (batch normalisation, module) pair a `RecomputedBranchAdd` recomputes, held outside
    Keras' tracking: the layers belong to the model, not to this weightless layer."""

    def __init__(self, batch_norm, module):
        self.batch_norm = batch_norm
        self.module = module


def find_tail(z, u):
    """The normalisation and module that compute the Keras tensor `u` from `z`, as
    `module(batch_norm(z))`; a ValueError when `u` is not computed so."""
    module_call = _graph_internals.producer(u)
    norm_call = None
    if module_call is not None and len(module_call.inputs) == 1:
        norm_call = _graph_internals.producer(module_call.inputs[0])
    if (
        norm_call is None
        or not isinstance(norm_call.operation, keras.layers.BatchNormalization)
        or len(norm_call.inputs) != 1
        or norm_call.inputs[0] is not z
    ):
        raise ValueError(
            "RecomputedBranchAdd expects inputs [module(batch_normalization(z)), shortcut, z]: "
            "the first tensor must come from a one-input layer applied to a "
            f"BatchNormalization of the third. Received: u={u!r}, z={z!r}"
        )
    return _Tail(norm_call.operation, module_call.operation)


@keras.saving.register_keras_serializable(package="keras_recalib")
class RecomputedBranchAdd(keras.layers.Layer):
    """A residual block's addition `[u, shortcut, z] -> u + shortcut`, where the branch ends in
    `u = module(batch_norm(z))`; in training (TensorFlow) the gradient of that tail is
    recomputed from z instead of kept from the forward pass.

    It stands where the block's `Add` stands, with z as a third input, so the graph keeps its
    depths and Keras orders the layers (and with them the weights) as in the normal model.
    Weightless: it finds the normalisation and the module when called on Keras tensors (also
    when a saved model is rebuilt), from the graph that computed `u`. It takes no arguments of
    its own, so the base config is its whole config.

    Input shape:
        A list `[u, shortcut, z]` of three tensors of the same shape.

    Output shape:
        The same shape.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._tail = None

    def __call__(self, inputs, *args, **kwargs):
        if isinstance(inputs, (list, tuple)) and len(inputs) == 3:
            u, _, z = inputs
            if isinstance(z, keras.KerasTensor) and isinstance(u, keras.KerasTensor):
                self._tail = find_tail(z, u)
        return super().__call__(inputs, *args, **kwargs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def call(self, inputs, training=None):
        u, shortcut, z = inputs
        if training and keras.backend.backend() == "tensorflow":
            if self._tail is None:
                raise ValueError(
                    "RecomputedBranchAdd was called on tensors without having been placed in "
                    "a functional graph after module(batch_normalization(z)). Received: "
                    f"layer={self.name!r}"
                )
            u = _recomputed(z, u, self._tail, training)
        return u + shortcut


def _recomputed(z, u, tail, training):
    import tensorflow as tf

    variables = [
        v
        for v in tail.batch_norm.trainable_variables + tail.module.trainable_variables
        if v.trainable
    ]
    # The variables enter as explicit inputs (their values), so their gradients flow back
    # through these reads; the forward pass reads nothing else.
    values = [tf.convert_to_tensor(v) for v in variables]

    @tf.custom_gradient
    def tail_output(z, u, *values):
        def grad(du):
            # Without the dependency on du, TensorFlow's executor runs the recomputation as
            # soon as the forward pass has z, and y waits in memory for the backward pass.
            with tf.control_dependencies([du]):
                z_again = tf.identity(z)
            with tf.GradientTape() as tape:
                tape.watch(z_again)
                # The forward pass already moved the averages: the replayed assignments are
                # collected by the scope and dropped.
                with keras.StatelessScope():
                    y = tail.batch_norm(z_again, training=training)
                    out = tail.module(y, training=training)
            sources = [z_again] + [v.value for v in variables]
            grads = tape.gradient(out, sources, output_gradients=du)
            # None for u: the normal path's gradient (which would keep y) is never built.
            return (grads[0], None, *grads[1:])

        return tf.identity(u), grad

    return tail_output(z, u, *values)
