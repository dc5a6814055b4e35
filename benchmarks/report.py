"""Writes RESULTS.md and the chart from the raw results of `run.py`."""

import os

# Why a layer costs more than twice the floor (shown for layers above 2x).
NOTES = {
    "scconv": "a convolution layer, not a gate: four 3x3 convolutions of C/2 channels "
    "(9C^2/2 multiply-adds per pixel) dwarf any memory pass; the floor ratio measures FLOPs.",
    "cbam": "channel attention (two pooled statistics and an MLP) followed by spatial attention: "
    "a channel-wise max and mean per pixel, a 7x7 convolution, batch normalisation, and a "
    "second full-size multiply, so the input is read about four times and written twice.",
    "triplet": "three branches, each a Z-pool of the whole input along one axis (channels, "
    "height, width: six full reads), a 7x7 convolution of its two pooled maps and a gate "
    "broadcast back, then three full-size products summed. No full-size transpose: the pooled "
    "maps are convolved in memory order.",
    "ca": "pools along height and along width separately (two reductions), concatenates, a 1x1 "
    "convolution + BN + hard-swish, two more 1x1 convolutions and two broadcast multiplies "
    "(one per direction), i.e. two full-size products instead of one.",
    "sge": "per-group spatial statistics of a per-pixel similarity: the similarity map "
    "(channel-group dot products) and its normalisation add full-size passes besides the "
    "gate multiply.",
    "simam": "an energy function per element: the gate is a sigmoid of each element's own "
    "squared deviation, i.e. a full-size gate computed per element, not per channel; besides "
    "the statistics pass it reads the input twice (gate, product).",
    "ge": "gather as a depth-wise strided pooling/conv over the map and an upsampled (per-pixel) "
    "gate: more than one full-size pass and a full-size gate tensor.",
    "se": "global average pool + two dense layers + multiply; above 2x only where the small "
    "ops' fixed costs dominate a small map.",
    "eca": "global average pool + a 1-D convolution over channels + multiply; above 2x only "
    "where the small ops' fixed costs dominate a small map.",
    "srm": "style pooling needs the mean and the variance of every channel: a second "
    "statistic over the full map that costs a full-size temporary in graph mode.",
}


EXPLANATION = """## How to read these numbers

- **The floor.** At batch 16 the stage tensors (6-51 MB) stay in this VM's large last-level
  cache, so `x * g` runs near cache bandwidth and a pass that only reads the tensor (a plain
  `reduce_sum`, XLA's YNNPACK reduction) already costs about 0.45x the floor at 56x56 and
  0.7-0.9x at 14x14 and 7x7, where fixed per-op costs dominate. SRM must finish a full-map
  statistic before it can multiply, so it costs at least floor + one read; 1.5x leaves no
  room beyond that read.
- **What SRM computes, per mode** (`keras_recalib/ops/_tensorflow.py`). Graph mode, eager and
  exported models: the mean and the mean squared deviation as two whole-map average
  poolings (oneDNN), the same two-pass algorithm as `tf.nn.moments`; the squared deviation is
  one full-size temporary, which no exportable TensorFlow op avoids (a single-pass nonlinear
  spatial reduction exists only as `EuclideanNorm`, which TFLite lacks and XLA cannot
  compile). Under XLA: one pass of shifted partial sums that XLA's CPU backend vectorises.
  Both have analytic gradients, and the output product's gradient sums dy * x per channel
  the same way. With unknown height or width, `tf.nn.moments`.
- **Forward + backward under XLA.** TensorFlow's own gradient of the floor `x * g` reduces
  dy * x over height and width with XLA's element-by-element reduction, so the XLA floor is
  slower than the graph-mode floor; SRM's custom gradient avoids that reduction, which is why
  SRM's XLA forward + backward can be cheaper than the XLA floor.
- **XLA.** XLA's CPU backend has three slow spots that the layers avoid under
  `jit_compile=True`: a reduction of a fused elementwise expression (run element by element;
  the package's sums use vectorised partial sums instead), a one-channel convolution (a
  generic loop; ECA, CBAM and Triplet use shifted-tap sums there), and recomputation: XLA
  fuses a small per-channel chain (sigmoid, normalisation) into every full-size consumer, so
  gates and statistics pass an optimisation barrier that stores them once.
- **Model level.** Any layer between the last BN of a residual branch and the addition breaks
  oneDNN's fused convolution + BN + add + ReLU in graph mode, which is what the `x * g` floor
  model measures; SRM's own cost is the "SRM vs floor" column. In training, SRM (like any gate
  whose gradient needs its input) keeps the branch's BN output alive for the backward pass,
  which plain ResNet-50 never stores: that is the memory overhead. In int8 TFLite, SRM adds
  two average poolings and three full-size int8 elementwise ops (SUB, MUL, MUL) per block to a
  network whose other ops XNNPACK runs in int8 at high throughput.
- **PyTorch.** `torch.compile` (Inductor) fuses the whole style pooling into one Welford pass
  and the product into a second one, reaching cache bandwidth at every shape; eager PyTorch
  runs `mean`, `var`, `cat`, BN and the product as separate kernels. PyTorch runs NCHW, where
  the spatial reduction is over the contiguous axis.
- **Noise.** The machine has two cores shared with other jobs: the load averages above say how
  busy it was; every group of functions is timed interleaved so that a busy moment hits all of
  them, but single figures move by about 10 % between runs. The model-level figures move the
  most: single ResNet-50 samples spread by +-25 % here, so medians of 11 still move by
  several percent between runs, in either direction.

## Targets not met: what was tried, what limits them

- **SRM forward at most 1.5x the floor.** The floor writes the tensor once and reads it once;
  SRM must also read it at least once for its statistics before it can multiply, and one
  such read alone costs 0.45-0.55x the floor at 56x56 (0.7-0.9x at the small maps, where
  fixed per-op costs dominate), so 1.5x is the limit of a one-read algorithm. Graph mode
  needs two reads and a full-size write: TensorFlow has no kernel that sums squares per
  (sample, channel) in one pass (`EuclideanNorm` has no TFLite or XLA kernel;
  `FusedBatchNorm` and layer or instance norm reduce over the batch or write the normalised
  tensor; batched matrix products would compute the whole C x C Gram matrix), and
  `squared_difference` or `square` + pooling measure the same as the pair used. XLA's CPU
  backend makes no multi-output loop fusion: the sum and the sum of squares are two loops,
  each reading the tensor. Tried there: both sums packed into one complex64 loop (16 %
  faster statistics at 56x56, but 3x slower at 14x14, where XLA fuses the loop into an
  unvectorised complex reduction; with a matrix-product reduction instead, within +-10 %),
  both sums concatenated or stacked into one output (no gain, or 4x slower), a reduction of
  fused squares (4x slower), other chunk sizes (the chosen one is the fastest).
- **SRM faster than `torch.compile`.** Inductor emits one Welford pass plus the product, on
  NCHW, where the reduced axis is contiguous. On the small maps TensorFlow's per-call cost
  dominates: its own `x * g` floor is 2-4x slower than PyTorch's at 28x28 to 7x7, and at
  7x7x2048 slower even than the whole compiled PyTorch SRM. Measured against each
  framework's own floor, the package's XLA SRM has the lower ratio from 28x28 to 7x7; at
  56x56, where PyTorch's own floor is the slower one, the package's SRM is the faster
  outright (about 2.5x).
- **At least 1.4x faster than the seed translation.** Met everywhere except at 56x56 under
  XLA, where the seed's `tf.nn.moments` is itself a two-loop XLA program and the package's
  is bounded by the two reads above.
- **No layer slower under XLA than in graph mode.** Met by the gates at the three larger
  maps. Left: SCConv, whose 3x3 convolutions of C/2 channels run on XLA's Eigen convolutions
  instead of oneDNN's (1.0-1.3x in most cells; its forward + backward takes about a second
  per call here, so only three samples per mode fit the budget and single cells have
  measured up to 2.3x), and, at 7x7x2048, where fixed per-call costs dominate milliseconds,
  Triplet's forward + backward (about 1.2x). TensorFlow's own `x * g` is 1.0-4x slower
  forward + backward under XLA.
- **SRM-ResNet-50 within +3 % inference, +5 % training, +5 % memory.** The `x * g` floor
  alone, one multiply per block, sums to about 5 % of ResNet-50's inference time at batch 8
  on this CPU (the per-layer floors at the four stages times 3, 4, 6 and 3 blocks), above
  the 3 % budget before any statistic; graph mode also loses oneDNN's fused
  convolution + BN + add + ReLU where a gate sits before the addition (the "floor vs plain"
  column). XLA fuses the product into the addition, which is why the XLA figures are the
  lowest. Memory: a gate's gradient needs its input, the branch's BN output, which plain
  ResNet-50 never keeps for the backward pass: one activation-sized tensor per block, the
  "floor vs plain" memory. SRM itself now adds almost nothing on top of that (it kept one
  more tensor per block until its moments gradient stopped TensorFlow's executor from
  computing `x - mean` during the forward pass). int8 TFLite: XNNPACK runs int8
  convolutions far faster than int8 elementwise ops with requantisation; SRM's statistics
  add two such full-size ops (SUB, MUL) and two average poolings per block to the gate's
  own MUL.
"""


def _ms(entry):
    return entry["median_ms"] if entry else None


def _fmt(value, digits=2, suffix=""):
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def _shape(shape):
    return "x".join(str(s) for s in shape[1:])


def layer_ratio(entry, name, mode, direction, floor="floor"):
    row = entry[direction]
    a, b = row.get(f"{name}/{mode}"), row.get(f"{floor}/{mode}")
    return _ms(a) / _ms(b) if a and b else None


def evaluate(results):
    """[(target, value text, met)] for the issue's targets."""
    checks = []
    layers = results.get("layers")
    if layers:
        for mode in ("graph", "xla"):
            ratios = [layer_ratio(e, "srm", mode, "fwd") for e in layers["shapes"]]
            worst = max(ratios)
            checks.append(
                (
                    f"SRM forward <= 1.5x the floor at every stage ({mode})",
                    ", ".join(_fmt(r) for r in ratios),
                    worst <= 1.5,
                )
            )
        worst = (0.0, "")
        for e in layers["shapes"]:
            for name in layers["names"]:
                for direction in ("fwd", "fwdbwd"):
                    g, x = e[direction].get(f"{name}/graph"), e[direction].get(f"{name}/xla")
                    if g and x and _ms(x) / _ms(g) > worst[0]:
                        worst = (_ms(x) / _ms(g), f"{name} {direction} {_shape(e['shape'])}")
        checks.append(
            (
                "Under XLA no layer slower than in graph mode (max XLA/graph time)",
                f"{worst[0]:.2f} ({worst[1]})",
                worst[0] <= 1.0,
            )
        )
        for peer in ("torch_srm/eager", "torch_srm/compile"):
            speedups = []
            for e in layers["shapes"]:
                p = e["fwd"].get(peer)
                for mode in ("graph", "xla"):
                    s = e["fwd"].get(f"srm/{mode}")
                    if p and s:
                        speedups.append(_ms(p) / _ms(s))
            if speedups:
                checks.append(
                    (
                        f"SRM forward faster than PyTorch {peer.split('/')[1]} "
                        "(min speed-up over stages, graph and XLA)",
                        f"{min(speedups):.2f}x",
                        min(speedups) > 1.0,
                    )
                )
        speedups = []
        for e in layers["shapes"]:
            for mode in ("graph", "xla"):
                s, p = e["fwd"].get(f"srm/{mode}"), e["fwd"].get(f"seed_srm/{mode}")
                speedups.append(_ms(p) / _ms(s))
        checks.append(
            (
                "SRM forward >= 1.4x faster than the seed translation (min over stages, modes)",
                f"{min(speedups):.2f}x",
                min(speedups) >= 1.4,
            )
        )
    models = results.get("models")
    if models:
        for label, value, limit in model_overheads(models):
            checks.append(
                (f"SRM-ResNet-50 {label} <= +{limit:.0f}%", f"{value:+.1f}%", value <= limit)
            )
    return checks


def _model_rows(models):
    """(label, plain, floor, srm, unit, limit) for every model-level measurement present."""
    rows = []
    keras = models["keras"]
    for section, label, limit in (
        ("inference", "inference", 3),
        ("train_step", "training step", 5),
    ):
        for mode in ("graph", "xla"):
            values = [_ms(keras[section].get(f"{m}/{mode}")) for m in ("plain", "floor", "srm")]
            if None not in (values[0], values[2]):
                rows.append((f"Keras {label}, {mode}", *values, "ms", limit))
    lite = models["tflite"]["inference"]
    for q in ("float32", "int8"):
        values = [_ms(lite.get(f"{m}/{q}")) for m in ("plain", "floor", "srm")]
        if None not in (values[0], values[2]):
            rows.append((f"TFLite XNNPACK {q} inference", *values, "ms", 3))
    mem = models["memory"]
    for key, label, limit in (
        ("step_peak_bytes", "training-step peak tensor memory above resident state", 5),
        ("allocator_peak_bytes", "allocator peak incl. weights and optimizer slots", None),
    ):
        values = [mem[m][key] / 2**20 if m in mem else None for m in ("plain", "floor", "srm")]
        rows.append((label, *values, "MiB", limit))
    return rows


def model_overheads(models):
    return [
        (label, 100 * (srm / plain - 1), limit)
        for label, plain, _, srm, _, limit in _model_rows(models)
        if limit is not None
    ]


def chart(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    layers = results["layers"]
    names = layers["names"] + ["seed_srm"]
    shapes = layers["shapes"]
    fig, axes = plt.subplots(2, 1, figsize=(12, 8), sharex=True)
    width = 0.8 / len(shapes)
    for ax, mode in zip(axes, ("graph", "xla"), strict=True):
        for i, e in enumerate(shapes):
            values = [layer_ratio(e, n, mode, "fwd") or np.nan for n in names]
            ax.bar(
                np.arange(len(names)) + (i - (len(shapes) - 1) / 2) * width,
                values,
                width,
                label=_shape(e["shape"]),
            )
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.axhline(1.5, color="red", linestyle="--", linewidth=0.8, label="1.5x target (SRM)")
        ax.set_yscale("log")
        ax.set_ylabel(f"forward time / floor ({mode})")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(ncol=5, fontsize=8)
    axes[1].set_xticks(np.arange(len(names)), names, rotation=0)
    fig.suptitle(
        f"Forward time relative to x * g (batch {layers['batch']}, "
        f"{results['machine']['threads']} threads, float32)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _layer_table(layers, direction):
    names = layers["names"] + ["seed_srm"]
    head = (
        ["layer"]
        + [f"{_shape(e['shape'])} {m}" for e in layers["shapes"] for m in ("graph", "XLA")]
        + ["XLA/graph (max)"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    floor = ["floor `x * g` (ms)"]
    for e in layers["shapes"]:
        for mode in ("graph", "xla"):
            floor.append(_fmt(_ms(e[direction].get(f"floor/{mode}")), 1))
    lines.append("| " + " | ".join(floor + ["-"]) + " |")
    for name in names:
        row, xg = [f"`{name}`"], []
        for e in layers["shapes"]:
            for mode in ("graph", "xla"):
                row.append(_fmt(layer_ratio(e, name, mode, direction)))
            g, x = e[direction].get(f"{name}/graph"), e[direction].get(f"{name}/xla")
            if g and x:
                xg.append(_ms(x) / _ms(g))
        row.append(_fmt(max(xg) if xg else None))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _peer_table(layers, direction):
    head = [
        "stage",
        "floor TF graph (ms)",
        "SRM graph",
        "SRM XLA",
        "seed SRM graph",
        "seed SRM XLA",
        "torch floor",
        "torch SRM eager",
        "torch SRM compile",
        "torch SE eager",
        "torch SE compile",
        "SE graph",
        "SE XLA",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for e in layers["shapes"]:
        row = e[direction]
        floor = _ms(row.get("floor/graph"))
        keys = [
            "srm/graph",
            "srm/xla",
            "seed_srm/graph",
            "seed_srm/xla",
            "torch_floor/eager",
            "torch_srm/eager",
            "torch_srm/compile",
            "torch_se/eager",
            "torch_se/compile",
            "se/graph",
            "se/xla",
        ]
        cells = [_shape(e["shape"]), _fmt(floor, 1)]
        for k in keys:
            v = _ms(row.get(k))
            cells.append("-" if v is None else f"{v:.1f} ({v / floor:.2f}x)")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _srm_table(layers):
    head = [
        "stage",
        "graph / floor",
        "XLA / floor",
        "seed / SRM (graph)",
        "seed / SRM (XLA)",
        "torch eager / SRM graph",
        "torch compile / SRM graph",
        "torch eager / SRM XLA",
        "torch compile / SRM XLA",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for e in layers["shapes"]:
        row = e["fwd"]

        def ratio(a, b, row=row):
            return _fmt(_ms(row[a]) / _ms(row[b]), 2, "x") if a in row and b in row else "-"

        lines.append(
            "| "
            + " | ".join(
                [
                    _shape(e["shape"]),
                    _fmt(layer_ratio(e, "srm", "graph", "fwd")),
                    _fmt(layer_ratio(e, "srm", "xla", "fwd")),
                    ratio("seed_srm/graph", "srm/graph"),
                    ratio("seed_srm/xla", "srm/xla"),
                    ratio("torch_srm/eager", "srm/graph"),
                    ratio("torch_srm/compile", "srm/graph"),
                    ratio("torch_srm/eager", "srm/xla"),
                    ratio("torch_srm/compile", "srm/xla"),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def _kecam_table(results):
    kecam = results.get("kecam") or {}
    if "error" in kecam:
        return f"kecam could not be benchmarked: {kecam['error']}"
    layers = results.get("layers")
    head = [
        "stage",
        "direction",
        "kecam floor graph (ms)",
        "kecam SE graph",
        "kecam SE XLA",
        "kecam ECA graph",
        "kecam ECA XLA",
        "ours SE graph",
        "ours SE XLA",
        "ours ECA graph",
        "ours ECA XLA",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for i, e in enumerate(kecam.get("shapes", [])):
        for direction in ("fwd", "fwdbwd"):
            row = e[direction]
            cells = [_shape(e["shape"]), direction, _fmt(_ms(row.get("floor/graph")), 1)]
            for name in ("kecam_se", "kecam_eca"):
                for mode in ("graph", "xla"):
                    cells.append(_fmt(layer_ratio(e, name, mode, direction), 2, "x"))
            for name in ("se", "eca"):
                for mode in ("graph", "xla"):
                    ours = layers["shapes"][i] if layers else None
                    cells.append(
                        _fmt(layer_ratio(ours, name, mode, direction), 2, "x") if ours else "-"
                    )
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _model_tables(models):
    lines = [
        "| measurement | ResNet-50 | + `x * g` floor | SRM-ResNet-50 | SRM vs plain | "
        "SRM vs floor | floor vs plain |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]

    def pct(a, b):
        return "-" if a is None or b is None else f"{100 * (a / b - 1):+.1f}%"

    for label, plain, floor, srm, unit, _ in _model_rows(models):
        cells = [label] + [_fmt(v, 1, f" {unit}") for v in (plain, floor, srm)]
        cells += [pct(srm, plain), pct(srm, floor), pct(floor, plain)]
        lines.append("| " + " | ".join(cells) + " |")
    lite = models["tflite"]
    lines.append("")
    lines.append(
        "TFLite files: "
        + ", ".join(
            f"{k} {v / 2**20:.1f} MiB (converted in {lite['conversion_s'][k]} s)"
            for k, v in lite["file_bytes"].items()
        )
        + "."
    )
    return "\n".join(lines)


def write(results, out):
    machine = results["machine"]
    lines = ["# Benchmark results", ""]
    lines.append(
        f"Generated by `{results['command']}` on {results['date']} in {results['duration_s']} s. "
        "Raw numbers (every sample) are in `results.json`; the chart is `results.png`."
    )
    lines.append("")
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    lines += [
        "## Machine and settings",
        "",
        f"- CPU: {machine['cpu']}, {machine['logical_cpus']} logical CPUs; {machine['platform']}.",
        f"- Threads: {machine['threads']} everywhere (TensorFlow intra- and inter-op, "
        "`torch.set_num_threads`/`set_num_interop_threads`, TFLite `num_threads`, kecam's "
        "process).",
        f"- Python {machine['python']}; {versions}; oneDNN: {machine['onednn_opts']}.",
        f"- Load average (1, 5, 15 min) at start {results['load_average_start']}, at end "
        f"{results['load_average_end']} (the run itself keeps about two threads busy).",
        "- float32; every figure is the median over interleaved repeats after warm-up (each round "
        "runs every function of a group once, starting at a rotating position, so that load "
        "changes hit all alike).",
        "",
    ]
    checks = evaluate(results)
    if checks:
        lines += ["## Targets", "", "| target | measured | met |", "| --- | --- | --- |"]
        lines += [f"| {t} | {v} | {'yes' if ok else '**no**'} |" for t, v, ok in checks]
        lines.append("")
    layers = results.get("layers")
    if layers:
        n = layers["batch"]
        lines += [
            "## SRM",
            "",
            f"Forward (inference, `training=False`), batch {n}. Ratios above 1 in the peer "
            "columns mean the package's SRM is faster.",
            "",
            _srm_table(layers),
            "",
            "## Every layer: forward",
            "",
            f"Forward time / floor time in the same mode (`x * g` with a per-(batch, channel) g), "
            f"batch {n}, at ResNet-50's four stage shapes (H x W x C); the floor row is in ms. "
            "`seed_srm` is the seed's TF1 `SRM_block` translated to TF2.",
            "",
            _layer_table(layers, "fwd"),
            "",
            "![Forward time over the floor, per layer and stage](results.png)",
            "",
            "## Every layer: forward + backward",
            "",
            "Forward in training mode plus the gradient with respect to the input and every "
            "trainable weight, given a fixed upstream gradient; divided by the same for the "
            "floor (gradients of `x * g` with respect to x and g).",
            "",
            _layer_table(layers, "fwdbwd"),
            "",
            "## Peers (ms, and ratio to TensorFlow's graph-mode floor)",
            "",
            "PyTorch modules run in NCHW, as the official code does; `torch floor` is `x * g` "
            "in PyTorch.",
            "",
            "Forward:",
            "",
            _peer_table(layers, "fwd"),
            "",
            "Forward + backward:",
            "",
            _peer_table(layers, "fwdbwd"),
            "",
        ]
        if layers.get("torch_errors"):
            lines += ["torch.compile failures:", ""]
            lines += [f"- {k}: {v}" for k, v in layers["torch_errors"].items()]
            lines.append("")
        above = []
        for name in layers["names"]:
            worst = max(
                layer_ratio(e, name, m, "fwd") or 0
                for e in layers["shapes"]
                for m in ("graph", "xla")
            )
            if worst > 2 and name in NOTES:
                above.append(f"- `{name}` (up to {worst:.1f}x): {NOTES[name]}")
        if above:
            lines += ["### Layers above 2x the floor (forward)", ""] + above + [""]
    if "kecam" in results:
        lines += [
            "## kecam (keras-cv-attention-models, legacy Keras)",
            "",
            "kecam needs legacy Keras, so it runs in its own process and virtualenv "
            "(`benchmarks/.venv-kecam`, created on first use: it reuses this environment's "
            "TensorFlow through a .pth file and adds "
            + ", ".join(f"{k} {v}" for k, v in (results["kecam"].get("versions") or {}).items())
            + "). Ratios to the floor measured in kecam's own process; ours from the main "
            "run, against the main run's floor. kecam's SE: `se_module(se_ratio=1/16, "
            "divisor=1)` (the package's width C // 16); ECA: `eca_module()` defaults.",
            "",
            _kecam_table(results),
            "",
        ]
    models = results.get("models")
    if models:
        lines += [
            "## SRM-ResNet-50 vs ResNet-50",
            "",
            f"`keras_recalib.models.resnet50(recalibration=...)`, batch {models['batch']}, "
            f"{models['size']}x{models['size']}x3, 1000 classes; training step = forward, "
            "loss, gradients and an SGD-momentum update. TFLite: `convert_tflite` (float32; "
            "int8 calibrated on random inputs) run with the XNNPACK delegate. The floor model "
            "puts `x * sigmoid(x[:, 0, 0, :])` where SRM sits: a data-dependent per-channel "
            "gate without statistics, i.e. what inserting any gate costs. Memory: peak of the "
            "TensorFlow BFC allocator during a graph-mode training step (median of three "
            "steps) minus what is resident before the step, measured in one fresh process per "
            "model with `TF_CPU_ALLOCATOR_USE_BFC=true` (the default CPU allocator reports no "
            "statistics to `tf.config.experimental.get_memory_info`).",
            "",
            _model_tables(models),
            "",
        ]
    path = os.path.join(out, "RESULTS.md")
    lines += [EXPLANATION]
    with open(path, "w") as f:
        f.write("\n".join(lines))
    if layers:
        chart(results, os.path.join(out, "results.png"))
    return path


if __name__ == "__main__":
    import json
    import sys

    # Rewrites RESULTS.md and the chart from a results.json (default: benchmarks/).
    source = (
        sys.argv[1]
        if len(sys.argv) > 1
        else os.path.join(os.path.dirname(__file__), "results.json")
    )
    with open(source) as f:
        write(json.load(f), os.path.dirname(os.path.abspath(source)))
