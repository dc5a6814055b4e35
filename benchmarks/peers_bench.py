"""Peers at model level: SRM's and SE's overhead over their plain ResNet-50, ours and theirs.

Theirs, on PyTorch (eager and `torch.compile` with the default inductor backend):

- the official SRM-ResNet-50: torchvision's `resnet50()` with the official `SRMLayer`
  (hyunjaelee410/style-based-recalibration-module, `models/recalibration_modules.py`, the
  version its ResNets use: `torch.std`, no epsilon) in the slot its `models/resnet.py` gives
  the module, the Bottleneck's `rclb`: after `bn3`, before the residual addition, on the
  block's `planes * 4` output channels; against torchvision's `resnet50()`;
- timm's `seresnet50` against timm's `resnet50` (random weights, nothing downloads).

Ours, on TensorFlow (Keras graph mode and XLA): `keras_recalib.models.resnet50("srm")` and
`resnet50("se")` against `resnet50()`.

Every model runs inference on the same input, in the same process, with the same thread
count for both frameworks; each framework's models are timed in their own interleaved rounds
(two frameworks at once would fight over the cores), one group per runtime, and every figure
is a round-paired ratio of CPU times with its 95 % interval (`_common.paired_ratio`).

Run by `run.py` (`run(config, log)`), or alone:
`python benchmarks/peers_bench.py --threads 1 [--quick] [--json out.json]`.
"""

import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
# The official SRMLayer as the parity tests check it against the package's layer.
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

from _common import (  # noqa: E402
    configure_tensorflow,
    configure_torch,
    format_ratio,
    interleaved,
    load_runs,
    machine_info,
    package_versions,
    paired_ratio,
    quiet_environment,
    summary,
)

# (module, their model, their baseline, our recalibration) for each comparison.
COMPARISONS = (
    ("srm", "official_srm_resnet50", "torchvision_resnet50", "srm"),
    ("se", "timm_seresnet50", "timm_resnet50", "se"),
)
THEIR_MODELS = {
    "torchvision_resnet50": "torchvision resnet50()",
    "official_srm_resnet50": "torchvision resnet50() + official SRMLayer after bn3",
    "timm_resnet50": "timm resnet50",
    "timm_seresnet50": "timm seresnet50",
}
OUR_MODELS = {"plain": None, "srm": "srm", "se": "se"}
# Each of their runtimes next to ours: the default execution, then the compilers.
MODE_PAIRS = (("eager", "graph"), ("compile", "xla"))
MODE_TITLES = {
    "eager": "PyTorch eager",
    "compile": "torch.compile",
    "graph": "Keras graph",
    "xla": "Keras XLA",
}


@dataclasses.dataclass
class Config:
    threads: int = 1
    quick: bool = False
    batch: int = 1
    size: int = 224
    warmup: int = 2
    repeats: int = 15
    torch_compile: bool = True
    xla: bool = True


def _config_values(config):
    """The section's settings from `run.py`'s config (any object with `.threads` and
    `.quick`); attributes named `peers_*` override the defaults."""
    quick = bool(config.quick)
    defaults = Config(
        threads=config.threads,
        quick=quick,
        size=64 if quick else 224,
        warmup=1 if quick else 2,
        repeats=3 if quick else 15,
        torch_compile=not quick and getattr(config, "torch_compile", True),
        xla=not quick,
    )
    overrides = {
        field.name: getattr(config, f"peers_{field.name}")
        for field in dataclasses.fields(Config)
        if hasattr(config, f"peers_{field.name}")
    }
    return dataclasses.replace(defaults, **overrides)


# Kept alive for the process: dropping a torch.library.Library removes its definitions.
_TORCHVISION_SCHEMAS = []


def _import_torchvision():
    """Imports torchvision, also where its C++ operators cannot load.

    PyPI's torchvision 0.28.0 wheel is linked against the CUDA build of torch; next to the
    CPU build (torch 2.13.0+cpu) its `_C` extension fails to load, and torchvision 0.28.0 then
    registers fake kernels for `torchvision::nms` and `qnms` without checking that the
    operators exist, so `import torchvision` (and `import timm`, which imports it) raises.
    Defining the two schemas lets the import finish; the ResNets use neither operator.
    Returns (module, whether the schemas had to be defined).
    """
    import torch

    try:
        import torchvision

        return torchvision, False
    except RuntimeError as error:
        if "torchvision::nms" not in str(error):
            raise
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]
    library = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
        library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _TORCHVISION_SCHEMAS.append(library)
    import torchvision

    return torchvision, True


def torch_models(seed=0):
    """name -> PyTorch model in eval mode, for every name of `THEIR_MODELS`."""
    import torch
    from references.torch_modules import SRMLayer

    torchvision, shimmed = _import_torchvision()
    import timm

    def official_srm_resnet50():
        model = torchvision.models.resnet50()
        for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
            for block in stage:
                # torchvision's Bottleneck adds the shortcut right after bn3, so SRM placed
                # behind bn3 runs where the official Bottleneck calls `self.rclb(out)`.
                channels = block.bn3.num_features
                block.bn3 = torch.nn.Sequential(block.bn3, SRMLayer(channels, eps=0.0))
        return model

    builders = {
        "torchvision_resnet50": torchvision.models.resnet50,
        "official_srm_resnet50": official_srm_resnet50,
        "timm_resnet50": lambda: timm.create_model("resnet50", pretrained=False),
        "timm_seresnet50": lambda: timm.create_model("seresnet50", pretrained=False),
    }
    models = {}
    for name, build in builders.items():
        torch.manual_seed(seed)
        models[name] = build().eval()
    return models, shimmed


def _first_call(fn):
    """Calls `fn` once (tracing, compilation) and returns its wall seconds."""
    start = time.perf_counter()
    fn()
    return round(time.perf_counter() - start, 2)


def torch_groups(values, x_np, log):
    """{mode: {"functions", "first_call_s", "skipped"}} for eager and torch.compile."""
    import torch

    models, shimmed = torch_models()
    x = torch.from_numpy(np.ascontiguousarray(x_np.transpose(0, 3, 1, 2)))

    def bind(fn):
        def call():
            with torch.no_grad():
                return fn(x)

        return call

    groups = {"eager": {"functions": {}, "first_call_s": {}}}
    for name, model in models.items():
        call = bind(model)
        groups["eager"]["first_call_s"][name] = _first_call(call)
        groups["eager"]["functions"][name] = call
    if not values.torch_compile:
        reason = "quick run" if values.quick else "torch.compile disabled"
        groups["compile"] = {"skipped": reason}
        return groups, shimmed
    from torch._dynamo.utils import counters

    compiled = {"functions": {}, "first_call_s": {}, "cache_hits": {}}
    for name, model in models.items():
        hits_before = counters["inductor"]["fxgraph_cache_hit"]
        call = bind(torch.compile(model))
        try:
            compiled["first_call_s"][name] = _first_call(call)
        except Exception as error:  # noqa: BLE001 - a compiler failure is recorded, not fatal
            compiled = {"skipped": f"{name}: {type(error).__name__}: {str(error)[:300]}"}
            break
        compiled["cache_hits"][name] = counters["inductor"]["fxgraph_cache_hit"] - hits_before
        compiled["functions"][name] = call
        log(f"    torch.compile {name}: {compiled['first_call_s'][name]} s")
    groups["compile"] = compiled
    return groups, shimmed


def tensorflow_groups(values, x_np, log):
    """{mode: {"functions", "first_call_s"}} for Keras graph mode and XLA."""
    import keras
    import tensorflow as tf

    from keras_recalib.models import resnet50

    x = tf.constant(x_np)
    models = {}
    for name, recalibration in OUR_MODELS.items():
        keras.utils.set_random_seed(0)
        models[name] = resnet50(recalibration, input_shape=(values.size, values.size, 3))
    groups = {}
    for mode, jit in (("graph", False), ("xla", True)):
        if jit and not values.xla:
            groups[mode] = {"skipped": "quick run"}
            continue
        group = {"functions": {}, "first_call_s": {}}
        for name, model in models.items():
            fn = tf.function(lambda t, m=model: m(t, training=False), jit_compile=jit)
            call = (lambda f: lambda: f(x))(fn)
            group["first_call_s"][name] = _first_call(call)
            group["functions"][name] = call
        log(f"    {mode}: first calls {group['first_call_s']}")
        groups[mode] = group
    return groups


def _time_groups(groups, values, log):
    out = {}
    for mode, group in groups.items():
        if "skipped" in group:
            out[mode] = {"skipped": group["skipped"]}
            continue
        log(f"  {MODE_TITLES[mode]}: {len(group['functions'])} models, {values.repeats} rounds")
        samples = interleaved(group["functions"], values.warmup, values.repeats)
        entry = {k: v for k, v in group.items() if k != "functions"}
        entry["summaries"] = {k: summary(v) for k, v in samples.items()}
        entry["samples"] = samples
        out[mode] = entry
    return out


def _ratio_label(module, side, mode):
    return f"{module}/{side}/{mode}"


def run(config, log=print):
    """The section's timings and ratios; `config` needs `.threads` and `.quick`.

    Both frameworks must already run with `config.threads` threads (`run.py`, or `main`,
    configure them before TensorFlow starts); the counts each framework reports are recorded.
    """
    import tensorflow as tf
    import torch

    values = _config_values(config)
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((values.batch, values.size, values.size, 3)).astype("float32")
    result = {
        "settings": dataclasses.asdict(values),
        "threads_reported": {
            "torch_intra": torch.get_num_threads(),
            "torch_interop": torch.get_num_interop_threads(),
            "tensorflow_intra": tf.config.threading.get_intra_op_parallelism_threads(),
            "tensorflow_inter": tf.config.threading.get_inter_op_parallelism_threads(),
        },
        "versions": package_versions(["torch", "torchvision", "timm", "tensorflow", "keras"]),
        "their_models": THEIR_MODELS,
        "our_models": {
            k: f"keras_recalib.models.resnet50({repr(v) if v else ''})"
            for k, v in OUR_MODELS.items()
        },
        "clock": "cpu",
    }
    start = time.perf_counter()
    log("  PyTorch models")
    groups, shimmed = torch_groups(values, x_np, log)
    result["torchvision_schemas_defined"] = shimmed
    modes = _time_groups(groups, values, log)
    del groups
    log("  TensorFlow models")
    modes.update(_time_groups(tensorflow_groups(values, x_np, log), values, log))
    ratios, comparisons = {}, []
    for module, theirs, their_base, ours in COMPARISONS:
        for mode, entry in modes.items():
            if "skipped" in entry:
                continue
            side = "theirs" if mode in ("eager", "compile") else "ours"
            name, base = (theirs, their_base) if side == "theirs" else (ours, "plain")
            label = _ratio_label(module, side, mode)
            ratios[label] = paired_ratio(entry["samples"], name, base, clock="cpu")
            comparisons.append(
                {"label": label, "module": module, "side": side, "mode": mode, "model": name}
            )
    for entry in modes.values():
        entry.pop("samples", None)  # the summaries keep every sample
    result.update(modes=modes, ratios=ratios, comparisons=comparisons)
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


# --- the report ------------------------------------------------------------------------------


def ours_lower(runs, module):
    """For each pair of `MODE_PAIRS` measured in every run: (their mode, our mode, whether our
    overhead's median is below theirs in every run, whether our interval lies wholly below
    theirs in every run)."""
    verdicts = []
    for their_mode, our_mode in MODE_PAIRS:
        pairs = [
            (
                run["ratios"].get(_ratio_label(module, "ours", our_mode)),
                run["ratios"].get(_ratio_label(module, "theirs", their_mode)),
            )
            for run in runs
        ]
        if any(a is None or b is None for a, b in pairs):
            continue
        lower = all(a["ratio"] < b["ratio"] for a, b in pairs)
        clear = all(
            a["high"] is not None and b["low"] is not None and a["high"] < b["low"]
            for a, b in pairs
        )
        verdicts.append((their_mode, our_mode, lower, clear))
    return verdicts


def _statement(runs, module, their_name):
    verdicts = ours_lower(runs, module)
    if not verdicts:
        return f"{module.upper()}: no runtime was measured on both sides."
    parts = []
    for their_mode, our_mode, lower, clear in verdicts:
        word = "lower, intervals apart" if clear else ("lower" if lower else "NOT lower")
        parts.append(f"{MODE_TITLES[our_mode]} vs {MODE_TITLES[their_mode]}: {word}")
    every = all(v[2] for v in verdicts)
    runs_text = "every run" if len(runs) > 1 else "this run"
    return (
        f"**{module.upper()}: our overhead below {their_name}'s in every mode, in {runs_text}: "
        f"{'yes' if every else 'no'}** ({'; '.join(parts)})."
    )


def markdown(runs):
    """The RESULTS.md section for one or two results of `run` (two: side by side)."""
    from keras_recalib._table import format_table

    first = runs[0]
    settings = first["settings"]
    run_titles = [f"run {i + 1}" for i in range(len(runs))]
    lines = [
        f"### Peers at model level (batch {settings['batch']}, "
        f"{settings['size']}x{settings['size']}, {settings['threads']} thread"
        f"{'s' if settings['threads'] != 1 else ''}, inference)",
        "",
        "Overhead of each module over its own plain ResNet-50: median of the round-paired "
        "CPU-time ratios with its 95 % interval, interleaved rounds per runtime, PyTorch and "
        "TensorFlow timed one after the other in one process with the same thread count. "
        "Theirs: the official SRM (`torch.std`, after `bn3`) in torchvision's ResNet-50 "
        "against torchvision's, timm's `seresnet50` against timm's `resnet50`. Ours: "
        "`keras_recalib.models.resnet50('srm')` / `('se')` against `resnet50()`.",
        "",
        _statement(runs, "srm", "the official PyTorch SRM-ResNet-50"),
        "",
        _statement(runs, "se", "timm's seresnet50"),
        "",
    ]
    rows = []
    for module, theirs, _, ours in COMPARISONS:
        for side, modes in (("theirs", ("eager", "compile")), ("ours", ("graph", "xla"))):
            for mode in modes:
                label = _ratio_label(module, side, mode)
                who = THEIR_MODELS[theirs] if side == "theirs" else f"keras_recalib ({ours})"
                cells = [
                    format_ratio(run["ratios"].get(label), percent=True, missing="n/a")
                    for run in runs
                ]
                if all(c == "n/a" for c in cells):
                    reason = first["modes"].get(mode, {}).get("skipped", "not run")
                    cells = [f"skipped: {reason}"] + [""] * (len(runs) - 1)
                rows.append([module.upper(), who, MODE_TITLES[mode], *cells])
    header = ["module", "model", "runtime", *run_titles]
    lines.append(format_table(header, rows, markdown=True, align="lll" + "r" * len(runs)))
    lines += ["", "Median times per call (ms, CPU / wall):", ""]
    rows = []
    for mode in ("eager", "compile", "graph", "xla"):
        entry = first["modes"].get(mode, {})
        for name in entry.get("summaries", {}):
            cells = []
            for run in runs:
                s = run["modes"].get(mode, {}).get("summaries", {}).get(name)
                cells.append(
                    f"{s['cpu']['median_ms']:.1f} / {s['wall']['median_ms']:.1f}" if s else "n/a"
                )
            title = THEIR_MODELS.get(name) or first["our_models"][name]
            rows.append([title, MODE_TITLES[mode], *cells])
    header = ["model", "runtime", *run_titles]
    lines.append(format_table(header, rows, markdown=True, align="ll" + "r" * len(runs)))
    notes = []
    for i, run in enumerate(runs):
        compiled = run["modes"].get("compile", {})
        if "first_call_s" in compiled:
            times = ", ".join(
                f"{name} {seconds:.0f} s ({compiled['cache_hits'].get(name, 0)} cache hits)"
                for name, seconds in compiled["first_call_s"].items()
            )
            notes.append(f"torch.compile first call, {run_titles[i]}: {times}.")
        xla = run["modes"].get("xla", {})
        if "first_call_s" in xla:
            times = ", ".join(f"{k} {v:.0f} s" for k, v in xla["first_call_s"].items())
            notes.append(f"XLA first call, {run_titles[i]}: {times}.")
    versions = ", ".join(f"{k} {v}" for k, v in first["versions"].items())
    notes.append(f"Versions: {versions}.")
    if any(run.get("torchvision_schemas_defined") for run in runs):
        notes.append(
            "torchvision's C++ operators did not load (PyPI's wheel is linked against CUDA "
            "torch); the benchmark defined the `nms`/`qnms` schemas so that the import "
            "finishes (the ResNets use neither)."
        )
    lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="64x64, 3 rounds, no compilers")
    parser.add_argument("--batch", type=int, help="batch size (1)")
    parser.add_argument("--size", type=int, help="input height and width (224; quick 64)")
    parser.add_argument("--repeats", type=int, help="interleaved rounds (15; quick 3)")
    parser.add_argument("--compilers", action="store_true", help="torch.compile and XLA in quick")
    parser.add_argument("--no-torch-compile", action="store_true")
    parser.add_argument("--json", help="write the result here")
    parser.add_argument("--markdown", nargs="*", help="render these result files and exit")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(load_runs(args.markdown)))
        return
    quiet_environment()
    configure_tensorflow(args.threads)
    configure_torch(args.threads)
    config = argparse.Namespace(threads=args.threads, quick=args.quick)
    for name in ("batch", "size", "repeats"):
        if getattr(args, name):
            setattr(config, f"peers_{name}", getattr(args, name))
    if args.compilers:
        config.peers_torch_compile = config.peers_xla = True
    if args.no_torch_compile:
        config.torch_compile = False

    def log(message):
        print(message, file=sys.stderr, flush=True)

    result = run(config, log)
    result["machine"] = machine_info(args.threads)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    print(markdown([result]), file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
