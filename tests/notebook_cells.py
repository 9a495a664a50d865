"""A lesson's committed cells by id, and the text a code cell printed: what the prose tests compare."""

from __future__ import annotations

import nbformat

from course_utils.course import NOTEBOOKS_DIR


def cells(notebook: str) -> dict:
    """``{cell id: cell}`` of ``notebooks/<notebook>.ipynb`` as committed."""
    return {c.get("id"): c for c in nbformat.read(NOTEBOOKS_DIR / f"{notebook}.ipynb", as_version=4).cells}


def output_text(cell) -> str:
    """Everything a code cell printed: its streams and the plain-text form of its results."""
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output.get("text", ""))
        elif "data" in output:
            parts.append(output["data"].get("text/plain", ""))
    return "".join(parts)
