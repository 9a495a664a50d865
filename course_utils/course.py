"""``make course``: execute every lesson notebook in order with papermill.

``python -m course_utils.course --profile smoke [--only 03 05] [--build-dir build/course]``

Executed copies go to ``build/course/<profile>/`` (never committed); the notebooks in
``notebooks/`` are left as they are. Figures go where each profile puts them (see
``profiles.figures_dir``). Offline without data it stops at once with the data layer's message.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from course_utils.data import DataError, load_cifar10
from course_utils.profiles import REPO_ROOT, resolve_profile

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
# What JupyterLab writes when it opens a lesson: committing anything else marks every lesson unsaved.
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def lesson_notebooks(only=()) -> list[Path]:
    """The numbered lesson notebooks (``NN_name.ipynb``), in order, optionally filtered by number."""
    paths = sorted(p for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    if only:
        paths = [p for p in paths if p.name[:2] in set(only)]
    return paths


def clean_metadata(path: Path) -> None:
    """Drop papermill's per-run metadata (machine paths, timestamps) from an executed notebook,
    and keep the kernelspec JupyterLab writes (``KERNELSPEC``)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("papermill", None)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)


def run_course(profile: str, build_dir: Path, only=(), in_place: bool = False) -> list[tuple[str, float, str]]:
    """Execute the notebooks; returns ``(name, seconds, status)`` rows and stops at the first failure.

    ``in_place`` writes the executed notebooks back into notebooks/ (to commit their outputs).
    The profile then travels as ``$COURSE_PROFILE`` instead of an injected parameters cell, so
    the committed notebook still says ``profile = "auto"`` and nbval can re-run it as smoke.
    """
    import os

    import papermill

    out_dir = NOTEBOOKS_DIR if in_place else build_dir / profile
    out_dir.mkdir(parents=True, exist_ok=True)
    parameters = {} if in_place else {"profile": profile}
    if in_place:
        os.environ["COURSE_PROFILE"] = profile  # inherited by each kernel
    # Text progress bars (engine.progress_style): unattended, a tqdm widget shows nothing live and
    # leaves only its state in the saved notebook's metadata; a text bar stays readable there.
    os.environ.setdefault("COURSE_PROGRESS", "text")
    notebooks = lesson_notebooks(only)
    rows = []
    for i, path in enumerate(notebooks, start=1):
        print(f"[{i}/{len(notebooks)}] {path.name} ...", flush=True)
        started = time.perf_counter()
        status = "ok"
        try:
            papermill.execute_notebook(
                str(path), str(out_dir / path.name), parameters=parameters,
                cwd=str(NOTEBOOKS_DIR), kernel_name="python3", progress_bar=False,
            )
        except papermill.PapermillExecutionError as err:
            status = f"failed: {err.ename}: {err.evalue}"
        if in_place:
            clean_metadata(out_dir / path.name)
        seconds = time.perf_counter() - started
        rows.append((path.name, seconds, status))
        print(f"    {status} in {seconds:.0f} s", flush=True)
        if status != "ok":
            break
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Execute the course's notebooks in order with papermill.")
    parser.add_argument("--profile", default="auto", help="auto | smoke | laptop | gpu | full")
    parser.add_argument("--only", nargs="*", default=(), help="notebook numbers to run, e.g. 00 05")
    parser.add_argument("--build-dir", type=Path, default=REPO_ROOT / "build" / "course")
    parser.add_argument("--in-place", action="store_true",
                        help="write the executed notebooks back into notebooks/ (to commit real outputs)")
    args = parser.parse_args(argv)
    profile = resolve_profile(args.profile)
    try:
        load_cifar10()  # downloads and caches once; offline without a copy: one clear message
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    rows = run_course(profile, args.build_dir, args.only, in_place=args.in_place)
    print(f"\nprofile {profile}: {len(rows)} notebook(s) in {time.perf_counter() - started:.0f} s")
    for name, seconds, status in rows:
        print(f"  {name:<32} {seconds:7.1f} s  {status}")
    print(f"executed notebooks: {NOTEBOOKS_DIR if args.in_place else args.build_dir / profile}")
    failed = [r for r in rows if r[2] != "ok"]
    return 1 if failed or not rows else 0


if __name__ == "__main__":
    from course_utils.allocator import keep_freed_memory

    keep_freed_memory()  # the lessons' kernels inherit the setting: their CPU training runs as train.py's does
    raise SystemExit(main())
