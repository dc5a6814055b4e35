"""The package's one table printer: plain text for terminals and logs, Markdown for docs.

Used by the command line (demo, zoo, export reports), the demo's README table and the
benchmark report, so every table the package prints has the same layout.
"""

from __future__ import annotations

from collections.abc import Sequence


def format_table(
    header: Sequence[str],
    rows: Sequence[Sequence[object]],
    markdown: bool = False,
    align: str | None = None,
) -> str:
    """Rows of cells as one table string.

    Args:
        header: column titles.
        rows: one sequence of cells per row; cells are shown with `str`.
        markdown: a Markdown table (`| a | b |`) instead of aligned plain text.
        align: one character per column, `"l"` or `"r"`; defaults to the first column left and
            the others right (names, then numbers).

    Returns:
        The table, lines joined by newlines, without a trailing newline.
    """
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    columns = len(header)
    for line in cells:
        if len(line) != columns:
            raise ValueError(
                f"Every row needs {columns} cells, one per column of the header. "
                f"Received: row={line}"
            )
    align = align or "l" + "r" * (columns - 1)
    if markdown:
        rule = ["---:" if a == "r" else "---" for a in align]
        return "\n".join("| " + " | ".join(line) + " |" for line in [cells[0], rule, *cells[1:]])
    widths = [max(len(line[i]) for line in cells) for i in range(columns)]

    def render(line):
        padded = (
            c.rjust(w) if a == "r" else c.ljust(w)
            for c, w, a in zip(line, widths, align, strict=True)
        )
        return "  ".join(padded).rstrip()

    lines = [render(line) for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
