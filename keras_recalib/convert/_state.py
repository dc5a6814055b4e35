"""Reading PyTorch state dicts (name -> numpy array) into Keras variables, with clear errors."""

import numpy as np

from keras_recalib.convert._report import LoadReport

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
    """A state dict that remembers which keys were loaded, missing or mis-shaped, and for which
    module (the Keras layer that asked for them), to report them all at once.

    Problems are collected rather than raised one by one, so a user fixing a checkpoint sees
    every wrong key in one error, and a non-strict load can say what it left out.
    """

    # Optional bookkeeping entries that carry no weights: neither loaded nor unexpected.
    ignorable_suffixes = ("num_batches_tracked",)

    def __init__(self, state_dict, prefix="", module=""):
        self._arrays = {str(k): v for k, v in dict(state_dict).items()}
        self.prefix = prefix
        self.module = module
        self.used = set()
        self.loaded = {}  # key -> module
        self.missing = {}  # key -> module
        self.mismatched = {}  # key -> (module, shape in the state dict, expected shape)
        self.prefixes = {}  # module -> its key prefix, to place unexpected keys
        self.pending = []

    def __contains__(self, key):
        return self.prefix + key in self._arrays

    def get(self, key, shape=None):
        """The array under `key` (prefix applied) as numpy; records it as missing or
        mis-shaped and returns None when it cannot be used."""
        full = self.prefix + key
        if full not in self._arrays:
            self.missing[full] = self.module
            return None
        self.used.add(full)
        value = self._arrays[full]
        if hasattr(value, "detach"):  # a torch tensor slipped through
            value = value.detach().cpu().numpy()
        value = np.asarray(value)
        if shape is not None and tuple(value.shape) != tuple(shape):
            self.mismatched[full] = (self.module, tuple(value.shape), tuple(shape))
            return None
        self.loaded[full] = self.module
        return value

    def assign(self, variable, value):
        """Queues `value` for `variable`; nothing is written before `finish`."""
        if value is not None:
            self.pending.append((variable, value))

    def child(self, prefix, module=None):
        """A view with a longer prefix that shares the bookkeeping; `module` names the keys it
        reads in reports (default: the parent's module)."""
        view = StateDict.__new__(StateDict)
        view.__dict__ = dict(self.__dict__)
        view.prefix = self.prefix + prefix
        if module is not None:
            view.module = module
            self.prefixes[module] = view.prefix
        return view

    def report(self, unmapped_layers=()):
        """What a load would do now, as a `LoadReport`."""
        unexpected = [
            k
            for k in self._arrays
            if k not in self.used and not k.endswith(self.ignorable_suffixes)
        ]
        module_of = dict(self.loaded)
        module_of.update(self.missing)
        module_of.update({k: m for k, (m, _, _) in self.mismatched.items()})
        module_of.update({k: self._module_of_unexpected(k) for k in unexpected})
        return LoadReport(
            loaded=tuple(self.loaded),
            skipped=tuple(unexpected),
            missing=tuple(self.missing),
            mismatched=tuple((k, got, want) for k, (_, got, want) in self.mismatched.items()),
            unmapped_layers=tuple(unmapped_layers),
            module_of=module_of,
        )

    def _module_of_unexpected(self, key):
        owners = [m for m, p in self.prefixes.items() if p and key.startswith(p)]
        if owners:
            return max(owners, key=lambda m: len(self.prefixes[m]))
        return key.rsplit(".", 1)[0] if "." in key else self.module

    def finish(self, what, strict=True, unmapped_layers=()):
        """Writes the queued values and returns the `LoadReport`.

        Strict: refuses (ValueError, nothing written) unless every key fits. Not strict: writes
        every tensor that fits; refuses only when none does, which usually means a key prefix
        (`module.`, `backbone.`) that the model does not have.
        """
        report = self.report(unmapped_layers)
        if strict and not report.fits:
            raise ValueError(report.error_message(what, len(self._arrays)))
        if not strict and not report.loaded and (report.skipped or report.mismatched):
            raise ValueError(
                f"No tensor of the state dict fits {what}; is there a key prefix the model does "
                f"not have?{report.problem_lines()}\n"
                f"Received: state_dict=<{len(self._arrays)} keys>"
            )
        for variable, value in self.pending:
            variable.assign(np.asarray(value, dtype=variable.dtype))
        return report


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
