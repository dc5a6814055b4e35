"""Seeing what the recalibration layers do: per-channel gates on given images, and plots.

`gates(model, images)` finds every recalibration layer of the model (nested models included)
and returns, for each, the gates the layer applies (its `gates()`, the one gate API of every
layer), their layer-specific details (`gate_details()`, e.g. SRM's style features and
effective weights) and one per-channel summary gate. The summary is the layer's channel gate
where that is its only gate (SRM, SE, ECA, global GE); otherwise the least-squares gain between
the layer's input and output over the spatial positions, sum(x * y) / sum(x * x), the
energy-weighted average gate of spatial or mixed gates (CBAM, SGE, SimAM, CA, Triplet, local
GE). Layers that are not gates (SelfCalibratedConv2D) are reported without a gate.
"""

import dataclasses

import keras
import numpy as np

from keras_recalib import _graph_internals
from keras_recalib.layers._base import RecalibrationLayer

__all__ = ["LayerGates", "gates", "recalibration_layers", "plot_gates"]


@dataclasses.dataclass
class LayerGates:
    """Gates of one recalibration layer on a batch of images.

    Attributes:
        name: the layer's name. kind: its class name.
        gate: `(images, channels)` per-channel summary gates, or None for a layer that is not
            a gate.
        gates: the layer's gates by name (`layer.gates(x)`), each broadcastable against the
            layer's input.
        details: layer-specific arrays behind the gates (`layer.gate_details(x)`), e.g. SRM's
            `style_mean`, `style_std` (images, channels) and `mean_weight`, `std_weight`,
            `bias` (channels,).
    """

    name: str
    kind: str
    gate: np.ndarray | None
    gates: dict = dataclasses.field(default_factory=dict)
    details: dict = dataclasses.field(default_factory=dict)


def recalibration_layers(model):
    """Every keras_recalib layer in `model`, nested models included, in graph order."""
    found = []
    for layer in model.layers:
        if isinstance(layer, RecalibrationLayer):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(recalibration_layers(layer))
    return found


def _numpy(value, dtype=None):
    # Through keras.ops: a PyTorch tensor that requires grad refuses np.asarray.
    return np.asarray(keras.ops.convert_to_numpy(value), dtype)


def _run_probe(model, tensors, images, batch_size):
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    probe = keras.Model(inputs, tensors)
    collected = [[] for _ in tensors]
    for start in range(0, len(images), batch_size):
        outputs = probe(images[start : start + batch_size], training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        for store, value in zip(collected, outputs, strict=True):
            store.append(_numpy(value, np.float32))
    return [np.concatenate(parts) for parts in collected]


def _fed_tensor(inner, outer):
    for call in _graph_internals.inbound_calls(inner):
        tensors = call.inputs
        if len(tensors) == 1:
            try:
                keras.Model(outer.inputs, tensors[0])
            except ValueError:
                continue
            return tensors[0]
    raise ValueError(
        f"Cannot trace what {outer.name!r} feeds its nested model. Received: model={inner.name!r}"
    )


def _layer_inputs_outputs(model, images, batch_size):
    """(layer, input, output) arrays for every recalibration layer, nested models included:
    a nested model is probed on the values its outer model feeds it."""
    direct = [layer for layer in model.layers if isinstance(layer, RecalibrationLayer)]
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    tensors = [t for layer in direct for t in (layer.input, layer.output)]
    # A nested model's `.input` is its own Input; what the outer graph feeds it sits on the
    # model's inbound node.
    tensors += [_fed_tensor(m, model) for m in nested]
    if not tensors:
        return []
    arrays = _run_probe(model, tensors, images, batch_size)
    found = [(layer, arrays[2 * i], arrays[2 * i + 1]) for i, layer in enumerate(direct)]
    for index, inner in enumerate(nested):
        found += _layer_inputs_outputs(inner, arrays[2 * len(direct) + index], batch_size)
    order = {id(layer): i for i, layer in enumerate(recalibration_layers(model))}
    return sorted(found, key=lambda item: order[id(item[0])])


def gates(model, images, batch_size=64):
    """Per-channel gates of every recalibration layer of `model` on `images`.

    Returns:
        A list of `LayerGates`, one per recalibration layer, in graph order.
    """
    if not recalibration_layers(model):
        raise ValueError(
            "The model has no keras_recalib layers. "
            f"Received: model={getattr(model, 'name', model)!r}"
        )
    images = np.asarray(images, np.float32)
    results = []
    for layer, x, y in _layer_inputs_outputs(model, images, batch_size):
        named = {k: _numpy(g, np.float32) for k, g in layer.gates(x, training=False).items()}
        details = {k: _numpy(d) for k, d in layer.gate_details(x).items()}
        entry = LayerGates(layer.name, type(layer).__name__, None, named, details)
        if list(named) == ["channel"]:
            entry.gate = named["channel"].reshape(len(x), -1)
        elif layer.is_gate:
            energy = np.sum(x * x, axis=(1, 2))
            gain = np.sum(x * y, axis=(1, 2)) / np.maximum(energy, 1e-30)
            entry.gate = np.where(energy > 0, gain, 1.0)
        results.append(entry)
    return results


def channel_correlation(gate):
    """Correlation between channels of `(images, channels)` gates across images (the SRM
    paper's SE-versus-SRM analysis); constant channels get zero correlation."""
    centred = gate - gate.mean(axis=0, keepdims=True)
    norm = np.sqrt(np.sum(centred * centred, axis=0))
    safe = np.where(norm > 0, norm, 1.0)
    corr = (centred.T @ centred) / np.outer(safe, safe)
    corr[norm == 0, :] = 0.0
    corr[:, norm == 0] = 0.0
    return corr


def summary(results):
    """One line per layer: gate statistics and mean absolute channel correlation."""
    lines = []
    for entry in results:
        if entry.gate is None:
            lines.append(f"{entry.name:32s} {entry.kind:28s} (not a gate)")
            continue
        corr = channel_correlation(entry.gate)
        off = corr[~np.eye(len(corr), dtype=bool)]
        mean_corr = float(np.mean(np.abs(off))) if off.size else 0.0
        lines.append(
            f"{entry.name:32s} {entry.kind:28s} gate mean {entry.gate.mean():.3f} "
            f"std {entry.gate.std():.3f} range [{entry.gate.min():.3f}, {entry.gate.max():.3f}] "
            f"|channel corr| {mean_corr:.3f}"
        )
    return "\n".join(lines)


def plot_gates(results, path, title=None):
    """Draws gate distributions per layer and each gated layer's channel-correlation matrix
    (up to 4, from the deepest) into a PNG at `path`. Needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(
            "Plotting needs matplotlib: pip install matplotlib (or keras_recalib[demo])"
        ) from error
    gated = [entry for entry in results if entry.gate is not None]
    if not gated:
        raise ValueError(
            "None of the layers is a gate; nothing to plot. Received: results without gates"
        )
    shown = gated[-4:]
    fig = plt.figure(figsize=(4 + 0.35 * len(gated) + 3.2 * len(shown), 4.2))
    grid = fig.add_gridspec(
        1, 1 + len(shown), width_ratios=[max(2, 0.35 * len(gated))] + [1] * len(shown)
    )
    ax = fig.add_subplot(grid[0])
    ax.boxplot([entry.gate.ravel() for entry in gated], showfliers=False)
    ax.set_xticks(
        range(1, len(gated) + 1), [entry.name for entry in gated], rotation=70, fontsize=7
    )
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("per-channel gate")
    ax.set_title("gate distribution per layer")
    for column, entry in enumerate(shown, start=1):
        axis = fig.add_subplot(grid[column])
        image = axis.imshow(channel_correlation(entry.gate), vmin=-1, vmax=1, cmap="coolwarm")
        axis.set_title(f"{entry.name}\nchannel-gate correlation", fontsize=8)
        axis.set_xticks([])
        axis.set_yticks([])
    fig.colorbar(image, ax=fig.axes[-1], fraction=0.046)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
