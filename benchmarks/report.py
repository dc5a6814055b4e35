"""Writes RESULTS.md from one run's or two runs' `results.json` (`run.py`, `--repeat-check`).

Everything in RESULTS.md comes from the JSON, except `benchmarks/NOTES.md` (prose written by
hand), which is appended verbatim when it exists. Every ratio a section measured sits under a
`"ratios"` key of its results tree ({label: `_common.paired_ratio` result}); with two runs,
ratios are paired by their path in the tree, and one whose two intervals do not overlap is
flagged and takes no part in any target verdict.
"""

import importlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _common import format_ratio, intervals_overlap  # noqa: E402

FLAG = "**≠**"
UNITS = {"srm": "SRM", "se": "SE", "eca": "ECA", "floor": "floor gate", "srm_lean": "SRM lean"}


# ---- generic helpers -------------------------------------------------------------------


def table(head, rows):
    """A markdown table through the package's one table printer (`keras_recalib._table`),
    every column left-aligned; a None cell shows as "-"."""
    from keras_recalib._table import format_table

    rows = [["-" if c is None else c for c in row] for row in rows]
    return format_table(head, rows, markdown=True, align="l" * len(head))


def collect_ratios(tree, path=()):
    """{path tuple: paired_ratio dict} for every entry of every `"ratios"` mapping in `tree`."""
    found = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            if key == "ratios" and isinstance(value, dict):
                for label, ratio in value.items():
                    if isinstance(ratio, dict) and "ratio" in ratio:
                        found[(*path, label)] = ratio
            else:
                found.update(collect_ratios(value, (*path, key)))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            found.update(collect_ratios(value, (*path, str(i))))
    return found


def disagreements(runs):
    """Paths (as strings) of the ratios whose intervals differ between the runs, or that only
    one run has."""
    if len(runs) < 2:
        return []
    first, second = (collect_ratios(r.get("sections", {})) for r in runs[:2])
    flagged = []
    for path in sorted(set(first) | set(second)):
        if path not in first or path not in second:
            flagged.append(" > ".join(path) + " (in one run only)")
        elif not intervals_overlap(first[path], second[path]):
            flagged.append(" > ".join(path))
    return flagged


def get(tree, *keys):
    for key in keys:
        if isinstance(tree, list) and isinstance(key, int) and -len(tree) <= key < len(tree):
            tree = tree[key]
        elif isinstance(tree, dict) and key in tree:
            tree = tree[key]
        else:
            return None
    return tree


def _ratios(runs, keys):
    """The paired_ratio dicts at `keys` (under `sections`) of every run (None where absent)."""
    return [get(run, "sections", *keys) for run in runs]


def _one(r, pct):
    return format_ratio(r, percent=pct)


def agree(values):
    present = [v for v in values if v is not None]
    return len(present) < 2 or intervals_overlap(present[0], present[1])


def cell(runs, keys, pct=True):
    """One ratio of every run ("run 1 / run 2"). A ratio whose two intervals do not overlap
    is not published: the cell says so, and the last section lists both runs' values."""
    values = _ratios(runs, keys)
    if all(v is None for v in values):
        return "-"
    if not agree(values):
        return f"not reproduced {FLAG}"
    return " / ".join(_one(v, pct) for v in values)


def verdict(runs, keys, limit):
    """Whether the ratio at `keys` is at most `limit` in every run, from its interval: met
    (upper end <= limit), not met (lower end > limit), undecided (the interval straddles it,
    or there is none); a ratio whose runs disagree is excluded."""
    values = _ratios(runs, keys)
    if all(v is None for v in values):
        return "not measured"
    if not agree(values):
        return "excluded (runs disagree)"
    verdicts = set()
    for r in values:
        if r is None or r["low"] is None:
            verdicts.add("undecided")
        elif r["high"] <= limit:
            verdicts.add("met")
        elif r["low"] > limit:
            verdicts.add("**not met**")
        else:
            verdicts.add("undecided")
    return verdicts.pop() if len(verdicts) == 1 else "undecided"


def _ms(runs, keys, clock="cpu"):
    values = [get(run, "sections", *keys, clock, "median_ms") for run in runs]
    if all(v is None for v in values):
        return "-"
    return " / ".join("-" if v is None else f"{v:.1f}" for v in values)


def _shape(shape):
    return f"{shape[1]}x{shape[2]}x{shape[3]}"


# ---- sections ----------------------------------------------------------------------------


def _machine(runs):
    lines = ["## Machine and settings", ""]
    for i, run in enumerate(runs, 1):
        m = run["machine"]
        flags = m.get("isa_flags", {})
        present = ", ".join(k for k, v in flags.items() if v) or "none recorded"
        absent = ", ".join(k for k, v in flags.items() if not v) or "none"
        versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
        prefix = f"Run {i}: " if len(runs) > 1 else ""
        lines += [
            f"- {prefix}`{run['command']}`, {run['date']}, {run['duration_s']:.0f} s.",
            f"  - CPU: {m['cpu']}, {m['logical_cpus']} logical CPUs; {m['platform']}.",
            f"  - ISA flags present: {present}; absent: {absent}.",
            f"  - Python {m['python']}; {versions}; oneDNN: {m['onednn_opts']}.",
            "  - Threads per section: "
            + ", ".join(f"{k} {'/'.join(map(str, v))}" for k, v in m["threads"].items())
            + " (TensorFlow intra- and inter-op, TFLite `num_threads`).",
            f"  - Load average (1, 5, 15 min): start {run['load_average']['start']}, end "
            f"{run['load_average']['end']}; per section at its end: "
            + "; ".join(
                f"{name} {s.get('load_average_end')} ({s.get('duration_s', '-')} s)"
                for name, s in run["sections"].items()
                if isinstance(s, dict) and "duration_s" in s
            )
            + ".",
        ]
        errors = [
            f"  - Section `{name}` failed: `{str(s['error']).splitlines()[-1][:300]}`"
            for name, s in run["sections"].items()
            if isinstance(s, dict) and "error" in s
        ]
        lines += errors
    lines.append("")
    return lines


HOW_TO_READ = """## How to read these numbers

- **Time.** Every call is timed twice: wall time and the process's CPU time (all its
  threads). With one thread, CPU time is the work itself: time spent waiting for a core that
  another job holds does not count, so it survives a busy shared machine. The primary
  figures are CPU times at one thread; tables give medians in ms.
- **Ratios.** Functions compared with each other run interleaved: each round calls every
  function once, starting at a rotating position. A ratio is computed round by round (the
  variant's CPU time over the baseline's in the same round) and summarised by its median with
  a distribution-free 95 % confidence interval (order statistics of the per-round ratios;
  15 rounds give the 4th and 12th smallest, 96.5 %). Overheads are shown as `+x.x% [low,
  high]`; plain ratios as `r [low, high]`.
- **Two runs.** With `--repeat-check` every cell shows run 1 / run 2. A ratio whose two
  intervals do not overlap did not reproduce: its cell says "not reproduced {flag}", it is
  excluded from the target verdicts, and its values are listed only in the last section.
- **Verdicts.** A target "ratio <= limit" is met when the interval's upper end is at or below
  the limit in every run, not met when its lower end is above it, undecided otherwise.
- **Wall-time ratios** are stored in `results.json` (`wall_ratios`) but neither shown nor
  checked: with two threads or a busy machine, wall time also measures waiting.
""".replace("{flag}", FLAG)


def _targets(runs):
    rows = []
    settings = get(runs[0], "sections", "deploy", "settings") or {}
    for setting in settings:
        for family in settings[setting]:
            for runtime in settings[setting][family]:
                keys = ("deploy", "settings", setting, family, runtime, "ratios")
                rows.append(
                    [
                        f"3: {family} + SRM no dearer than + SE ({runtime}, {setting})",
                        cell(runs, (*keys, "srm/se"), pct=False),
                        "<= 1",
                        verdict(runs, (*keys, "srm/se"), 1.0),
                    ]
                )
    for setting in settings:
        if not setting.startswith("batch 1,"):
            continue
        for family in settings[setting]:
            for runtime in ("tflite_float32", "tflite_int8"):
                keys = ("deploy", "settings", setting, family, runtime, "ratios", "srm")
                rows.append(
                    [
                        f"3: {family} + SRM <= +3% ({runtime}, {setting})",
                        cell(runs, keys),
                        "<= +3%",
                        verdict(runs, keys, 1.03),
                    ]
                )
    train = get(runs[0], "sections", "train") or {}
    candidates = [v for v in ("srm_lean", "srm") if v in (train.get("variants") or [])]
    for variant in candidates:
        for mode in ("graph", "xla"):
            keys = ("train", mode, "ratios", variant)
            rows.append(
                [
                    f"5: training step, {UNITS[variant]} vs plain ({mode})",
                    cell(runs, keys),
                    "<= +5%",
                    verdict(runs, keys, 1.05),
                ]
            )
    for variant in ("srm_lean", "srm"):
        keys = ("train", "memory_ratios", variant)
        rows.append(
            [
                f"5: training-step peak memory, {UNITS[variant]} vs plain",
                cell(runs, keys),
                "<= +5%",
                verdict(runs, keys, 1.05),
            ]
        )
    if not rows:
        return []
    return [
        "## Targets (issue 13)",
        "",
        "Item 3: SRM no dearer than SE in every runtime, and within +3 % at batch 1 in TFLite "
        "float32 and int8. Item 5: memory-lean training within +5 % peak memory and +5 % step "
        "time of ResNet-50 (SRM's plain training path shown too). Memory: the ratio of median "
        "step peaks, with the extreme range of every measured step (see the training section) "
        "as its interval.",
        "",
        table(["target", "measured", "limit", "verdict"], rows),
        "",
    ]


def _deploy(runs):
    deploy = get(runs[0], "sections", "deploy")
    if not deploy or "settings" not in deploy:
        return []
    lines = [
        "## Deployment: overhead over the plain model",
        "",
        "ResNet-50 is `keras_recalib.models.resnet50(recalibration)`; the floor gate is "
        "`x * sigmoid(x[:, :1, :1, :])` where the module sits (a data-dependent gate without "
        "statistics: what inserting any gate costs). MobileNetV2 is "
        "`keras.applications.MobileNetV2(weights=None)` with `insert_recalibration(model, "
        "name)`. Runtimes: Keras graph (`tf.function`), XLA (`jit_compile=True`), TFLite "
        "float32 and int8 (`keras_recalib.export.convert_tflite`; int8 calibrated on random "
        "images, which changes the scales, not the ops) in the LiteRT interpreter with its "
        "default XNNPACK delegate. 224x224 inputs. Each cell: CPU-time overhead over the "
        "plain model, paired per round, with its 95 % interval; `SRM / SE` is SRM's time over "
        "SE's (below 1: SRM is cheaper).",
        "",
    ]
    for family in ("resnet50", "mobilenetv2"):
        variants = [
            v for v in ("floor", "se", "eca", "srm") if family == "resnet50" or v != "floor"
        ]
        rows = []
        for setting, families in deploy["settings"].items():
            for runtime in families.get(family, {}):
                keys = ("deploy", "settings", setting, family, runtime)
                row = [runtime, setting, _ms(runs, (*keys, "times", "plain"))]
                row += [cell(runs, (*keys, "ratios", v)) for v in variants]
                row.append(cell(runs, (*keys, "ratios", "srm/se"), pct=False))
                rows.append(row)
        head = ["runtime", "batch, threads", "plain (ms CPU)"]
        head += [f"+ {UNITS[v]}" for v in variants] + ["SRM / SE"]
        lines += [f"### {family}", "", table(head, rows), ""]
    delegates = deploy.get("delegates") or {}
    if delegates:

        def _agreement(label, check):
            if not check:
                return "-"
            if label.endswith("int8"):
                return f"cosine {check['cosine']:.5f}"
            return f"max error {check['max_abs_error']:.1e}"

        rows = [
            [
                label,
                d["file_ops"],
                d["xnnpack_ops"],
                d["xnnpack_partitions"],
                ", ".join(f"{k} x{v}" for k, v in d["builtin_ops"].items()) or "none",
                _agreement(label, d.get("check") or {}),
            ]
            for label, d in delegates.items()
        ]
        lines += [
            "### Which ops XNNPACK runs",
            "",
            "After `allocate_tensors()`, from the interpreter's node list: ops replaced by an "
            "XNNPACK partition (`DELEGATE` node) run in XNNPACK; the rest run on TFLite's "
            "builtin kernels (op name, input type). Every builtin op between two partitions "
            "splits the graph and costs a round trip through the interpreter. The last column "
            "compares each file with its Keras model on 4 random held-out inputs (random "
            "weights): the largest absolute output error for float32, the cosine for int8.",
            "",
            table(
                [
                    "file",
                    "ops in file",
                    "on XNNPACK",
                    "XNNPACK partitions",
                    "builtin kernels",
                    "vs Keras (4 held-out inputs)",
                ],
                rows,
            ),
            "",
        ]
    return lines


def _train(runs):
    train = get(runs[0], "sections", "train")
    if not train or "variants" not in train:
        return []
    rows = []
    for variant in train["variants"]:
        row = [UNITS.get(variant, variant)]
        for mode in ("graph", "xla"):
            row.append(_ms(runs, ("train", mode, "times", variant)))
            row.append(cell(runs, ("train", mode, "ratios", variant)))
        mem = []
        for run in runs:
            memory = get(run, "sections", "train", "memory", variant)
            if memory:
                mem.append(f"{memory['step_peak_bytes'] / 2**20:.0f} MiB")
        row.append(" / ".join(mem) or "-")
        row.append("-" if variant == "plain" else cell(runs, ("train", "memory_ratios", variant)))
        rows.append(row)
    lines = [
        "## Training (ResNet-50)",
        "",
        f"Batch {train['batch']}, {train['size']}x{train['size']}x3, 1000 classes; a step is "
        "forward, loss, gradients and an SGD-momentum update. Memory: peak of TensorFlow's BFC "
        "allocator during a graph-mode step (1 thread) minus what is resident before it, with "
        "`TF_CPU_ALLOCATOR_USE_BFC=true`, in "
        f"{train.get('memory_processes', 'several')} fresh processes per model of "
        f"{train.get('memory_steps', 'several')} steps each: the median of all those steps, and "
        "over plain the ratio of medians with the extreme range (lowest over plain's highest, "
        "highest over plain's lowest) as its interval. The peak depends on the order in which "
        "TensorFlow's executor runs the ops, which differs between processes.",
        "",
        table(
            [
                "model",
                "graph step (ms CPU)",
                "graph overhead",
                "XLA step (ms CPU)",
                "XLA overhead",
                "step peak memory",
                "memory overhead",
            ],
            rows,
        ),
        "",
    ]
    lean = get(train, "graph", "ratios", "srm_lean/srm")
    if lean:
        lines += [
            "SRM lean over SRM: graph "
            + cell(runs, ("train", "graph", "ratios", "srm_lean/srm"))
            + ", XLA "
            + cell(runs, ("train", "xla", "ratios", "srm_lean/srm"))
            + ".",
            "",
        ]
    return lines


def _layers(runs):
    layers = get(runs[0], "sections", "layers")
    if not layers or "shapes" not in layers:
        return []
    names = [*layers["names"], "seed_srm"]
    shapes = layers["shapes"]
    lines = [
        "## Layers over the floor",
        "",
        f"Batch {layers['batch']}, 1 thread, ResNet-50's stage shapes (H x W x C). Each cell: "
        "the layer's CPU time over the floor's (`x * g` with a per-(batch, channel) g) in the "
        "same mode, paired per round. Forward + backward: training-mode forward and the "
        "gradient with respect to the input and every weight, given an upstream gradient. "
        "`seed_srm` is the seed's TF1 `SRM_block` translated to TF2.",
        "",
    ]
    for direction, title in (("fwd", "Forward"), ("fwdbwd", "Forward + backward")):
        head = ["layer"] + [
            f"{_shape(e['shape'])} {mode}" for e in shapes for mode in ("graph", "XLA")
        ]
        floor = ["floor (ms CPU)"] + [
            _ms(runs, ("layers", "shapes", i, direction, "times", f"floor/{mode}"))
            for i, _ in enumerate(shapes)
            for mode in ("graph", "xla")
        ]
        rows = [floor]
        for name in names:
            rows.append(
                [f"`{name}`"]
                + [
                    cell(
                        runs,
                        ("layers", "shapes", i, direction, "ratios", f"{name}/{m} : floor/{m}"),
                        pct=False,
                    )
                    for i, _ in enumerate(shapes)
                    for m in ("graph", "xla")
                ]
            )
        lines += [f"### {title}", "", table(head, rows), ""]
    head = ["ratio"] + [f"{_shape(e['shape'])} {d}" for e in shapes for d in ("fwd", "fwdbwd")]
    rows = []
    for label in [f"seed_srm/{m} : srm/{m}" for m in ("graph", "xla")] + [
        f"{n}/xla : {n}/graph" for n in ["floor", *names]
    ]:
        rows.append(
            [f"`{label}`"]
            + [
                cell(runs, ("layers", "shapes", i, d, "ratios", label), pct=False)
                for i, _ in enumerate(shapes)
                for d in ("fwd", "fwdbwd")
            ]
        )
    lines += [
        "### The seed's SRM over the package's, and XLA over graph mode",
        "",
        table(head, rows),
        "",
    ]
    return lines


def _kecam(runs):
    kecam = get(runs[0], "sections", "kecam")
    if not kecam:
        return []
    if "error" in kecam:
        return ["## kecam", "", f"kecam could not be benchmarked: {kecam['error'][-500:]}", ""]
    shapes = kecam.get("shapes", [])
    rows = []
    for name in ("kecam_se", "kecam_eca"):
        for mode in ("graph", "xla"):
            label = f"{name}/{mode} : floor/{mode}"
            rows.append(
                [f"`{name}` {mode}"]
                + [
                    cell(runs, ("kecam", "shapes", i, d, "ratios", label), pct=False)
                    for i, _ in enumerate(shapes)
                    for d in ("fwd", "fwdbwd")
                ]
            )
    head = ["layer"] + [f"{_shape(e['shape'])} {d}" for e in shapes for d in ("fwd", "fwdbwd")]
    versions = ", ".join(f"{k} {v}" for k, v in (kecam.get("versions") or {}).items())
    return [
        "## kecam (keras-cv-attention-models, legacy Keras)",
        "",
        f"Run in its own virtualenv and process ({versions}); ratios to the floor measured in "
        "kecam's process, comparable with the layer tables above.",
        "",
        table(head, rows),
        "",
    ]


def _module_section(name, runs):
    """A section written by another module's `markdown(runs)` (peers, jax)."""
    entries = [get(run, "sections", name) for run in runs]
    if all(e is None for e in entries):
        return []
    if any(e is not None and "skipped" in e for e in entries):
        return [f"## {name}", "", f"Skipped: {entries[0]['skipped']}.", ""]
    if any(e is not None and "error" in e for e in entries):
        error = next(e["error"] for e in entries if e is not None and "error" in e)
        return [f"## {name}", "", f"Failed: `{str(error)[-500:]}`", ""]
    try:
        module = importlib.import_module(f"{name}_bench")
        return [module.markdown(entries), ""]
    except Exception as error:  # noqa: BLE001 - the rest of the report is still written
        return [f"## {name}", "", f"Could not be reported: {error}", ""]


def write(runs, out):
    """Writes `out/RESULTS.md` from a list of one or two runs' results."""
    first = runs[0]
    lines = ["# Benchmark results", ""]
    if len(runs) > 1:
        flagged = disagreements(runs)
        total = len(collect_ratios(first.get("sections", {})))
        lines.append(
            f"Two runs (`run.py --repeat-check`; raw numbers in `run1/results.json` and "
            f"`run2/results.json`). **{len(flagged)} of {total} ratios did not reproduce** "
            f'(their cells say "not reproduced {FLAG}"; excluded from the verdicts, values '
            "listed at the end)."
            if flagged
            else f"Two runs (`run.py --repeat-check`): all {total} ratios reproduced."
        )
    else:
        lines.append(
            "One run (raw numbers, every sample, in `results.json`); `run.py --repeat-check` "
            "checks that every ratio reproduces."
        )
    lines.append("")
    lines += _machine(runs)
    lines += [HOW_TO_READ]
    lines += _targets(runs)
    lines += _deploy(runs)
    lines += _train(runs)
    lines += _layers(runs)
    lines += _module_section("peers", runs)
    lines += _module_section("jax", runs)
    lines += _kecam(runs)
    if len(runs) > 1:
        flagged = disagreements(runs)
        if flagged:
            lines += [
                "## Ratios that did not reproduce",
                "",
                "Not published in the tables above; both runs' values, for the record.",
                "",
            ]
            first, second = (collect_ratios(r.get("sections", {})) for r in runs[:2])
            by_name = {" > ".join(path): path for path in set(first) | set(second)}
            for name in flagged:
                path = by_name.get(name)
                if path is None:
                    lines.append(f"- {name}")
                    continue
                shown = " / ".join(_one(run.get(path), False) for run in (first, second))
                lines.append(f"- {name}: {shown}")
            lines.append("")
    lines += ["## Notes", ""]
    notes = os.path.join(HERE, "NOTES.md")
    if os.path.exists(notes):
        with open(notes) as f:
            lines.append(f.read())
    else:
        lines.append("<!-- benchmarks/NOTES.md (prose written by hand) is appended here. -->")
    path = os.path.join(out, "RESULTS.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


if __name__ == "__main__":
    import json

    # Rewrites RESULTS.md from one or two results.json (default: benchmarks/results.json).
    sources = sys.argv[1:] or [os.path.join(HERE, "results.json")]
    loaded = []
    for source in sources:
        with open(source) as f:
            loaded.append(json.load(f))
    write(
        loaded,
        os.path.dirname(os.path.dirname(os.path.abspath(sources[-1])))
        if len(loaded) > 1
        else os.path.dirname(os.path.abspath(sources[0])),
    )
