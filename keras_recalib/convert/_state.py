"""Reading PyTorch state dicts (name -> numpy array) into Keras variables, with clear errors."""

import numpy as np

_LOADERS = {}


def register_loader(layer_class):
    """Declares the function that loads a PyTorch state dict into `layer_class` layers."""

    def decorate(function):
        _LOADERS[layer_class] = function
        return function

    return decorate


def find_loader(layer):
    for klass in type(layer).__mro__:
        if klass in _LOADERS:
            return _LOADERS[klass]
    return None


class StateDict:
    """A state dict that remembers which keys were used, to report missing and extra ones.

    Problems are collected rather than raised one by one, so a user fixing a checkpoint sees
    every wrong key in one error.
    """

    def __init__(self, state_dict, prefix=""):
        self._arrays = {str(k): v for k, v in dict(state_dict).items()}
        self.prefix = prefix
        self.used = set()
        self.problems = []
        self.pending = []
        # Optional bookkeeping entries that carry no weights.
        self.ignorable_suffixes = ("num_batches_tracked",)

    def __contains__(self, key):
        return self.prefix + key in self._arrays

    def get(self, key, shape=None):
        """The array under `key` (prefix applied) as numpy; records a problem if absent or
        mis-shaped and returns None."""
        full = self.prefix + key
        if full not in self._arrays:
            self.problems.append(f"missing key {full!r}")
            return None
        self.used.add(full)
        value = self._arrays[full]
        if hasattr(value, "detach"):  # a torch tensor slipped through
            value = value.detach().cpu().numpy()
        value = np.asarray(value)
        if shape is not None and tuple(value.shape) != tuple(shape):
            self.problems.append(
                f"key {full!r} has shape {tuple(value.shape)}, expected {tuple(shape)}"
            )
            return None
        return value

    def assign(self, variable, value):
        """Queues `value` for `variable`; nothing is written unless the whole dict fits."""
        if value is not None:
            self.pending.append((variable, value))

    def child(self, prefix):
        """A view with a longer prefix that shares the bookkeeping."""
        view = StateDict.__new__(StateDict)
        view.__dict__ = dict(self.__dict__)
        view.prefix = self.prefix + prefix
        return view

    def finish(self, what):
        extra = sorted(
            k
            for k in self._arrays
            if k not in self.used and not k.endswith(self.ignorable_suffixes)
        )
        problems = list(self.problems) + [f"unexpected key {k!r}" for k in extra]
        if problems:
            raise ValueError(
                f"The state dict does not fit {what}: " + "; ".join(problems) + ". "
                f"Received: state_dict keys={sorted(self._arrays)}"
            )
        for variable, value in self.pending:
            variable.assign(np.asarray(value, dtype=variable.dtype))


def load_batch_norm(bn, state):
    """PyTorch BatchNorm (`weight`, `bias`, `running_mean`, `running_var`) into a Keras one.

    Keras' epsilon must already match PyTorch's (1e-5 by default in this package).
    """
    channels = bn.moving_mean.shape[0]
    state.assign(bn.gamma, state.get("weight", (channels,)))
    state.assign(bn.beta, state.get("bias", (channels,)))
    state.assign(bn.moving_mean, state.get("running_mean", (channels,)))
    state.assign(bn.moving_variance, state.get("running_var", (channels,)))
    if "num_batches_tracked" in state:
        state.used.add(state.prefix + "num_batches_tracked")


def conv_kernel(value):
    """PyTorch Conv2d weight (out, in, kh, kw) -> Keras kernel (kh, kw, in, out)."""
    return None if value is None else np.transpose(value, (2, 3, 1, 0))


def torch_conv_shape(kernel_shape):
    """The PyTorch weight shape that maps onto a Keras kernel of `kernel_shape`."""
    kh, kw, cin, cout = kernel_shape
    return (cout, cin, kh, kw)


def linear_kernel(value):
    """PyTorch Linear weight (out, in) -> Keras Dense kernel (in, out)."""
    return None if value is None else np.transpose(value)


def _load_linear(state, key, kernel, bias, conv_layout):
    """A PyTorch Linear `key.weight` (out, in), or a 1x1 Conv2d (out, in, 1, 1), and its bias,
    into an (in, out) kernel and an (out,) bias."""
    cin, cout = kernel.shape
    shape = (cout, cin, 1, 1) if conv_layout else (cout, cin)
    value = state.get(key + ".weight", shape)
    state.assign(kernel, None if value is None else linear_kernel(value.reshape(cout, cin)))
    state.assign(bias, state.get(key + ".bias", (cout,)))


def load_excitation(layer, state, first, second, conv_layout=False):
    """The two layers of a bottleneck MLP (`layers._blocks.ExcitationMLP`): PyTorch modules
    `first` and `second`, Linear or (with `conv_layout`) 1x1 Conv2d, with biases."""
    _load_linear(state, first, layer.fc1_kernel, layer.fc1_bias, conv_layout)
    _load_linear(state, second, layer.fc2_kernel, layer.fc2_bias, conv_layout)
