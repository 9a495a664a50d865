"""Plain-text tables for notebook output (monospace columns, no dependencies).
"""

from __future__ import annotations


def text_table(header, rows) -> str:
    """Rows of values as aligned plain text (it reads the same in a terminal, papermill and GitHub)."""
    cells = [[str(v) for v in header]] + [[str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
