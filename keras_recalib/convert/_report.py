"""What a `load_torch_weights` call loaded and left out, by module, and its summarised errors."""

from __future__ import annotations

import collections
import dataclasses

from keras_recalib._table import format_table

# Names shown per kind of problem in an error; the counts per module say the rest.
_FIRST = 5
_MODULES_SHOWN = 12


@dataclasses.dataclass(frozen=True)
class LoadReport:
    """What `load_torch_weights(..., strict=False)` did with a PyTorch state dict.

    Attributes:
        loaded: keys copied into the model.
        skipped: keys of the state dict with no place in the model (left unused).
        missing: keys the model asked for and the state dict lacks: those variables keep
            their initial values.
        mismatched: `(key, shape in the state dict, expected shape)` for keys of the wrong
            shape: not loaded, the variables keep their initial values.
        unmapped_layers: layers with weights but no PyTorch mapping, left as they were.
        module_of: key -> the module (PyTorch path of the Keras layer) it belongs to.

    `num_batches_tracked` counters carry no weights and appear in none of the lists.
    """

    loaded: tuple[str, ...]
    skipped: tuple[str, ...]
    missing: tuple[str, ...]
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]
    unmapped_layers: tuple[str, ...] = ()
    module_of: dict[str, str] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @property
    def fits(self) -> bool:
        """True when every key was loaded and every weighted layer had a mapping."""
        return not (self.skipped or self.missing or self.mismatched or self.unmapped_layers)

    def by_module(self) -> dict[str, dict[str, list[str]]]:
        """module -> {"loaded": [...], "missing": [...], "mismatched": [...], "skipped": [...]},
        in the order the modules were met."""
        groups: dict[str, dict[str, list[str]]] = {}
        kinds = (
            ("loaded", self.loaded),
            ("missing", self.missing),
            ("mismatched", [key for key, _, _ in self.mismatched]),
            ("skipped", self.skipped),
        )
        for kind, keys in kinds:
            for key in keys:
                module = self.module_of.get(key, "")
                entry = groups.setdefault(
                    module, {"loaded": [], "missing": [], "mismatched": [], "skipped": []}
                )
                entry[kind].append(key)
        return groups

    def summary(self) -> str:
        """Totals, then one table row per module that was not loaded completely."""
        groups = self.by_module()
        incomplete = [
            (module, entry)
            for module, entry in groups.items()
            if entry["missing"] or entry["mismatched"] or entry["skipped"]
        ]
        complete = len(groups) - len(incomplete)
        lines = [
            f"loaded {len(self.loaded)} tensors; not loaded (those variables keep their values): "
            f"{len(self.missing)} missing, {len(self.mismatched)} mis-shaped; "
            f"unused keys of the state dict: {len(self.skipped)}; "
            f"{complete} modules loaded completely"
        ]
        if self.unmapped_layers:
            unmapped = ", ".join(self.unmapped_layers)
            lines.append(f"layers without a PyTorch mapping, left as they were: {unmapped}")
        if incomplete:
            rows = [
                (
                    module or "(top level)",
                    len(entry["loaded"]),
                    len(entry["missing"]),
                    len(entry["mismatched"]),
                    len(entry["skipped"]),
                )
                for module, entry in incomplete
            ]
            header = ("module", "loaded", "missing", "mismatched", "skipped")
            lines.append(format_table(header, rows))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def problem_lines(self) -> str:
        """The problems, one indented line each: shape mismatches first, then counts per
        module and the first few names of missing and unexpected keys."""
        parts = []
        if self.mismatched:
            shown = [
                f"key {key!r} has shape {got}, expected {want}"
                for key, got, want in self.mismatched[:_FIRST]
            ]
            parts.append("shape mismatches: " + "; ".join(shown) + _more(self.mismatched))
        for title, phrase, keys in (
            ("missing keys", "missing key", self.missing),
            ("unexpected keys", "unexpected key", self.skipped),
        ):
            if keys:
                counts = collections.Counter(self.module_of.get(k, "") for k in keys)
                by_module = ", ".join(
                    f"{module or '(top level)'} {count}"
                    for module, count in list(counts.items())[:_MODULES_SHOWN]
                )
                if len(counts) > _MODULES_SHOWN:
                    by_module += f", and {len(counts) - _MODULES_SHOWN} more modules"
                first = "; ".join(f"{phrase} {k!r}" for k in keys[:_FIRST])
                parts.append(f"{title} by module: {by_module}; first: {first}{_more(keys)}")
        return "\n  ".join([""] + parts)

    def error_message(self, what: str, num_keys: int) -> str:
        """The strict mode's error: counts, the problems summarised, what to do."""
        counts = [
            _plural(len(self.mismatched), "shape mismatch", "shape mismatches"),
            _plural(len(self.missing), "missing key", "missing keys"),
            _plural(len(self.skipped), "unexpected key", "unexpected keys"),
        ]
        counts = [c for c in counts if c]
        return (
            f"The state dict does not fit {what}: {', '.join(counts)}; nothing was loaded. "
            "To load the matching tensors and leave the rest at their initialisation, pass "
            f"strict=False.{self.problem_lines()}\nReceived: state_dict=<{num_keys} keys>"
        )


def _plural(count, one, many):
    return "" if not count else f"1 {one}" if count == 1 else f"{count} {many}"


def _more(items):
    return f" (and {len(items) - _FIRST} more)" if len(items) > _FIRST else ""
