"""Colab: where the course lives, the setup cell every lesson starts with, and Drive for runs.

``COURSE_REPO`` below is the one place that names the course's repository. Every notebook's
setup cell and the README's "Open in Colab" badges are generated from it; for a fork run

    python -m course_utils.colab --repo OWNER/NAME

which rewrites ``COURSE_REPO`` here, the setup cell of every lesson and the README badges.

On Colab the setup cell clones the repository and calls ``install``: the course itself is
installed with ``pip install --no-deps`` so that pip never replaces Colab's CUDA-matched torch
and torchvision or its ipywidgets 7 (Colab does not support ipywidgets 8); of the light
dependencies, only those missing are installed. Then ``keep_runs_on_drive`` mounts Google
Drive and points ``$COURSE_EXPERIMENTS_DIR`` at it, so that a disconnect loses no finished
epoch: ``engine.train`` resumes a run from its last checkpoint.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

# OWNER/NAME on GitHub: the one source of truth. A placeholder until the course is published (the README
# says so beside the fork command); `python -m course_utils.colab --repo OWNER/NAME` points it at a copy.
COURSE_REPO = "course-authors/cifar10-resnet-course"

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
DRIVE_MOUNT = "/content/drive"  # where Colab mounts Google Drive ($COURSE_DRIVE_MOUNT overrides, for tests)
DRIVE_RUNS = "MyDrive/cifar10-resnet-course/experiments"  # runs on Drive, inside the mount

# Imported by the lessons but installed only when missing: Colab ships all of them.
LIGHT_DEPENDENCIES = {"numpy": "numpy", "matplotlib": "matplotlib", "seaborn": "seaborn", "yaml": "pyyaml",
                      "tqdm": "tqdm"}
# Never installed or upgraded on Colab: its builds match its CUDA and its notebook front end.
COLAB_OWNED = ("torch", "torchvision", "ipywidgets")

SETUP_MARKER = "# Setup: on Colab, fetch and install the course"
SETUP_CELL = '''# Setup: on Colab, fetch and install the course and keep runs on Google Drive (elsewhere: nothing to do).
import os, subprocess, sys
if "google.colab" in sys.modules:
    # The course's address. A fork: python -m course_utils.colab --repo OWNER/NAME (or set COURSE_REPO_URL).
    REPO_URL = os.environ.get("COURSE_REPO_URL", "{url}")
    COURSE_DIR = os.environ.get("COURSE_DIR", "/content/course")
    if not (os.path.isdir(COURSE_DIR) or REPO_URL and subprocess.run(["git", "clone", "-q", REPO_URL, COURSE_DIR]).returncode == 0):
        raise RuntimeError(f"Could not fetch the course from {{REPO_URL!r}}: set COURSE_REPO_URL to your copy's git address "
                           "(e.g. https://github.com/OWNER/NAME) and run this cell again.")
    sys.path.insert(0, COURSE_DIR)
    from course_utils import colab
    colab.install(COURSE_DIR)  # the course only: Colab's torch, torchvision and ipywidgets stay as they are
    colab.keep_runs_on_drive(use_drive)

from course_utils.profiles import resolve_profile
PROFILE = resolve_profile(profile)'''


def repo_url(repo: str = COURSE_REPO) -> str:
    return f"https://github.com/{repo}"


def setup_cell(repo: str = COURSE_REPO) -> str:
    """The source of every lesson's setup cell (the cell after ``parameters``)."""
    return SETUP_CELL.format(url=repo_url(repo))


def badge(notebook: str, repo: str = COURSE_REPO, branch: str = "main") -> str:
    """Markdown for an "Open in Colab" badge of ``notebooks/<notebook>``."""
    link = f"https://colab.research.google.com/github/{repo}/blob/{branch}/notebooks/{notebook}"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({link})"


def on_colab() -> bool:
    return "google.colab" in sys.modules


def _pip(*args: str) -> None:
    """``pip install -q ARGS`` in this kernel's Python; its chatter is shown only if it fails."""
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", *args], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"pip install {' '.join(args)} failed:\n{done.stdout}{done.stderr}")


def _installed_from(course_dir) -> bool:
    """Whether course_utils is already installed, editable, from ``course_dir`` (a re-run of the cell)."""
    import importlib.metadata as md

    try:
        direct_url = md.distribution("course_utils").read_text("direct_url.json") or "{}"
    except md.PackageNotFoundError:
        return False
    url = json.loads(direct_url).get("url", "")
    return url.rstrip("/") == Path(course_dir).resolve().as_uri()


def install(course_dir: str | os.PathLike) -> dict:
    """Install the course on Colab without touching Colab's own packages.

    ``pip install --no-deps -e``: pip resolves nothing, so it cannot upgrade torch, torchvision
    or ipywidgets (a plain ``-e`` install may, and the notebook tooling of the ``course``
    extra would pull jupyterlab and ipywidgets 8 into Colab's runtime). Light dependencies are
    installed only when missing. Returns ``{"installed": [...], "kept": {name: version}}``.
    """
    import importlib.metadata as md

    installed = []
    if not _installed_from(course_dir):
        _pip("--no-deps", "--no-build-isolation", "-e", str(course_dir))
        installed.append("course_utils (editable, --no-deps)")
    missing = [pkg for module, pkg in LIGHT_DEPENDENCIES.items() if importlib.util.find_spec(module) is None]
    if missing:
        _pip(*missing)
        installed += missing
    absent = [name for name in COLAB_OWNED if importlib.util.find_spec(name) is None]
    if absent:
        raise RuntimeError(f"{', '.join(absent)} missing: this runtime is not a Colab one; "
                           "install the course with pip install -e '.[course]' instead.")
    kept = {name: md.version(name) for name in COLAB_OWNED}
    print(f"course installed from {course_dir}: {', '.join(installed) or 'already there'}; "
          f"left as they were: {', '.join(f'{k} {v}' for k, v in kept.items())}")
    return {"installed": installed, "kept": kept}


def keep_runs_on_drive(use_drive: bool = True) -> Path | None:
    """On Colab, mount Google Drive and keep runs there (``$COURSE_EXPERIMENTS_DIR``).

    A no-op off Colab, when ``use_drive`` is False, or when ``$COURSE_EXPERIMENTS_DIR`` is
    already set. After a disconnect, re-running the lesson resumes each run from Drive.
    Returns the experiments folder it set, or None.
    """
    if not (use_drive and on_colab()) or os.environ.get("COURSE_EXPERIMENTS_DIR"):
        return None
    from google.colab import drive

    mount = os.environ.get("COURSE_DRIVE_MOUNT", DRIVE_MOUNT)
    drive.mount(mount)
    runs = Path(mount) / DRIVE_RUNS
    runs.mkdir(parents=True, exist_ok=True)
    os.environ["COURSE_EXPERIMENTS_DIR"] = str(runs)
    print(f"runs are kept on Google Drive: {runs} (a disconnect loses at most the current epoch; "
          "set use_drive = False to keep them in the runtime instead)")
    return runs


# --- pointing the course at a fork -------------------------------------------------------------

REPO_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
BADGE_LINK = re.compile(r"https://colab\.research\.google\.com/github/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+/blob/")


def lesson_notebooks() -> list[Path]:
    return sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


def setup_cell_index(cells: list) -> int:
    """Index of the setup cell: the code cell that starts with ``SETUP_MARKER``."""
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "code" and "".join(cell["source"]).startswith(SETUP_MARKER):
            return i
    raise ValueError(f"no setup cell (a code cell starting with {SETUP_MARKER!r})")


def rewrite_notebook(path: Path, repo: str, old_repo: str = COURSE_REPO) -> bool:
    """Set the setup cell of ``path`` to ``setup_cell(repo)`` (outputs kept) and move any mention of the
    old address or badge in its markdown (lesson 00 shows the cell); True if anything changed."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    nb.cells[setup_cell_index(nb.cells)].source = setup_cell(repo)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            text = cell.source.replace(repo_url(old_repo), repo_url(repo))
            cell.source = BADGE_LINK.sub(f"https://colab.research.google.com/github/{repo}/blob/", text)
    if nbformat.writes(nb) == before:
        return False
    nbformat.write(nb, str(path))
    return True


def rewrite_readme(path: Path, repo: str) -> bool:
    text = path.read_text()
    new = BADGE_LINK.sub(f"https://colab.research.google.com/github/{repo}/blob/", text)
    if new != text:
        path.write_text(new)
    return new != text


def point_at(repo: str, root: Path = REPO_ROOT) -> list[Path]:
    """Make ``repo`` (OWNER/NAME) the course's address: this module, every setup cell, the README badges."""
    if not REPO_PATTERN.match(repo):
        raise ValueError(f"--repo must look like OWNER/NAME (a GitHub repository), got {repo!r}")
    changed = []
    module = root / "course_utils" / "colab.py"
    text = module.read_text()
    old_repo = re.search(r'^COURSE_REPO = "([^"]*)"', text, flags=re.M).group(1)
    new = re.sub(r'^COURSE_REPO = "[^"]*"', f'COURSE_REPO = "{repo}"', text, count=1, flags=re.M)
    if new != text:
        module.write_text(new)
        changed.append(module)
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        if rewrite_notebook(path, repo, old_repo):
            changed.append(path)
    if rewrite_readme(root / "README.md", repo):
        changed.append(root / "README.md")
    return changed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Point the course's Colab setup cells and badges at a repository.")
    parser.add_argument("--repo", help="OWNER/NAME of your fork on GitHub (default: rewrite with the current "
                                       f"address, {COURSE_REPO})", default=COURSE_REPO)
    args = parser.parse_args(argv)
    try:
        changed = point_at(args.repo)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"course repository: {args.repo} ({repo_url(args.repo)})")
    for path in changed:
        print(f"  rewrote {path.relative_to(REPO_ROOT)}")
    if not changed:
        print("  nothing to change")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
