"""The Colab setup cell: one address, one cell in every lesson, and what it does on a (stand-in) Colab.

The execution tests run the setup cell exactly as committed in the notebooks, in a fresh Python
process with a stand-in ``google.colab`` module (``drive.mount`` makes a folder), a ``file://``
address of a clone of this repository and temporary target folders. The install happens in a
temporary venv that sees this project's packages through a path file, as Colab's runtime
already holds torch, torchvision and ipywidgets: the test then checks that pip put the course
there and nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest

from course_utils import colab

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = colab.lesson_notebooks()
FETCH_SENTENCE = "set COURSE_REPO_URL to your copy's git address"


def _setup_source(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return nb.cells[colab.setup_cell_index(nb.cells)].source


def test_every_lesson_starts_with_the_same_setup_cell_made_from_course_repo():
    assert len(NOTEBOOKS) >= 12
    expected = colab.setup_cell()
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code[1].source == expected, (
            f"{path.name}: the cell after 'parameters' is not the setup cell of course_utils.colab.COURSE_REPO; "
            "run `python -m course_utils.colab` to regenerate it")
        assert "use_drive" in code[0].source, f"{path.name}: the parameters cell must define use_drive"
    assert colab.repo_url() in expected


def test_the_setup_cell_uses_no_shell_magics_and_never_reinstalls_colab_packages():
    cell = colab.setup_cell()
    assert "!" not in cell.replace("!r}", ""), "shell magics (!git, !pip) cannot be tested in a plain kernel"
    compile(cell, "setup-cell", "exec")  # plain Python
    assert "--no-deps" in Path(colab.__file__).read_text(), "the course must be installed with --no-deps on Colab"


def test_training_lessons_keep_runs_on_drive_by_default():
    for path in NOTEBOOKS:
        params = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        trains = int(path.name[:2]) >= 5
        expected = "use_drive = True" if trains else "use_drive = False"
        assert expected in params.source, f"{path.name}: expected {expected!r} in the parameters cell"


def test_pointing_at_a_fork_rewrites_the_module_every_setup_cell_and_the_readme_badges(tmp_path):
    root = tmp_path / "repo"
    (root / "course_utils").mkdir(parents=True)
    shutil.copy(colab.__file__, root / "course_utils" / "colab.py")
    shutil.copytree(REPO_ROOT / "notebooks", root / "notebooks")
    shutil.copy(REPO_ROOT / "README.md", root / "README.md")
    badges_before = (root / "README.md").read_text().count("colab.research.google.com/github/")
    outputs_before = [nbformat.read(p, as_version=4).cells[2].outputs for p in sorted((root / "notebooks").glob("[0-9]*.ipynb"))]

    changed = colab.point_at("someone/my-fork", root)

    assert 'COURSE_REPO = "someone/my-fork"' in (root / "course_utils" / "colab.py").read_text()
    lessons = sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    for path in lessons:
        assert _setup_source(path) == colab.setup_cell("someone/my-fork"), f"{path.name} not rewritten"
    assert [nbformat.read(p, as_version=4).cells[2].outputs for p in lessons] == outputs_before, "outputs were lost"
    readme = (root / "README.md").read_text()
    assert readme.count("colab.research.google.com/github/someone/my-fork/blob/") == badges_before, "a badge kept the old address"
    lesson00 = nbformat.read(root / "notebooks" / "00_setup.ipynb", as_version=4)
    prose = "".join(c.source for c in lesson00.cells if c.cell_type == "markdown")
    assert colab.repo_url("someone/my-fork") in prose and colab.repo_url() not in prose, "lesson 00's copy of the cell"
    assert len(changed) == 2 + len(lessons)
    assert colab.point_at("someone/my-fork", root) == [], "a second run must change nothing"
    with pytest.raises(ValueError, match="OWNER/NAME"):
        colab.point_at("https://github.com/someone/my-fork", root)


def test_readme_has_one_colab_badge_per_lesson_at_the_course_address():
    readme = (REPO_ROOT / "README.md").read_text()
    for path in NOTEBOOKS:
        link = f"https://colab.research.google.com/github/{colab.COURSE_REPO}/blob/main/notebooks/{path.name}"
        assert link in readme, f"README lacks the Open-in-Colab badge of {path.name}"


def test_readme_says_beside_the_fork_command_that_the_address_is_a_placeholder():
    readme = (REPO_ROOT / "README.md").read_text()
    paragraph = next((p for p in readme.split("\n\n") if "python -m course_utils.colab --repo OWNER/NAME" in p), "")
    assert paragraph, "README must give the command that points the course at a fork"
    assert "placeholder" in paragraph and "until the course is published" in paragraph.lower(), (
        f"README must say, next to the fork command, that the address is a placeholder:\n{paragraph}")


# --- executing the cell on a stand-in Colab --------------------------------------------------------

STAND_IN = {
    "google/__init__.py": "",
    "google/colab/__init__.py": '"""Stand-in for Colab\'s module (tests only)."""\n',
    "google/colab/drive.py": (
        "import json, os, pathlib\n"
        "def mount(mountpoint, force_remount=False):\n"
        "    pathlib.Path(mountpoint, 'MyDrive').mkdir(parents=True, exist_ok=True)\n"
        "    pathlib.Path(os.environ['TEST_MOUNT_LOG']).write_text(json.dumps(mountpoint))\n"
    ),
}
RUNNER = """
import json, os, sys
import google.colab  # in sys.modules, as on Colab
profile, use_drive = "smoke", True  # the parameters cell
exec(compile(open(sys.argv[1]).read(), "setup-cell", "exec"))
from course_utils import tables  # the lessons' next import
import course_utils
print("RESULT " + json.dumps({"course_utils": course_utils.__file__, "tables": tables.__file__,
                              "profile": PROFILE, "experiments": os.environ.get("COURSE_EXPERIMENTS_DIR")}))
"""


def _run_cell(tmp_path: Path, python: str, repo_url: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """Run the setup cell with ``python``: always a throwaway venv's, since the cell pip-installs into it."""
    assert not Path(python).is_relative_to(sys.prefix), "never let the cell install into this project's venv"
    assert not (tmp_path / "content" / "course").exists(), "the target folder must start empty"
    stub = tmp_path / "stand-in"
    for name, text in STAND_IN.items():
        (stub / name).parent.mkdir(parents=True, exist_ok=True)
        (stub / name).write_text(text)
    (tmp_path / "cell.py").write_text(_setup_source(NOTEBOOKS[0]))
    (tmp_path / "runner.py").write_text(RUNNER)
    env = {k: v for k, v in os.environ.items()
           if k not in ("COURSE_EXPERIMENTS_DIR", "COURSE_PROFILE", "PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PYTHONPATH=str(stub), COURSE_REPO_URL=repo_url, COURSE_DIR=str(tmp_path / "content" / "course"),
               COURSE_DRIVE_MOUNT=str(tmp_path / "content" / "drive"), TEST_MOUNT_LOG=str(tmp_path / "mounted.json"),
               PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", COURSE_PROFILE="")
    return subprocess.run([python, str(tmp_path / "runner.py"), str(tmp_path / "cell.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _clone_of_this_repository(tmp_path: Path) -> Path:
    """A clone of this repository with the working tree's package, configs and pyproject committed on top."""
    origin = tmp_path / "origin"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(origin)], check=True)
    shutil.rmtree(origin / "course_utils")
    shutil.copytree(REPO_ROOT / "course_utils", origin / "course_utils", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO_ROOT / "configs", origin / "configs", dirs_exist_ok=True)
    shutil.copy(REPO_ROOT / "pyproject.toml", origin / "pyproject.toml")
    git = ["git", "-C", str(origin), "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "working tree"], check=True)
    return origin


def _colab_like_venv(tmp_path: Path) -> tuple[str, Path]:
    """A fresh venv whose python already sees torch, torchvision, ipywidgets (this project's site-packages)."""
    venv = tmp_path / "colab-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "colab_runtime.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # Colab's preinstalled packages
    return str(venv / "bin" / "python"), site


@pytest.mark.slow
def test_setup_cell_on_colab_clones_installs_only_the_course_and_keeps_runs_on_drive(tmp_path):
    origin = _clone_of_this_repository(tmp_path)
    python, site = _colab_like_venv(tmp_path)
    before = set(os.listdir(site))

    result = _run_cell(tmp_path, python, origin.as_uri())

    assert result.returncode == 0, f"the setup cell failed on the stand-in Colab:\n{result.stdout}\n{result.stderr}"
    line = next(l for l in result.stdout.splitlines() if l.startswith("RESULT "))
    facts = json.loads(line[len("RESULT "):])
    course_dir = tmp_path / "content" / "course"
    assert Path(facts["course_utils"]).resolve().is_relative_to(course_dir.resolve()), (
        f"course_utils came from {facts['course_utils']}, not from the clone in {course_dir}")
    assert Path(facts["tables"]).resolve().is_relative_to(course_dir.resolve())
    assert facts["profile"] == "smoke"
    drive = tmp_path / "content" / "drive"
    assert json.loads((tmp_path / "mounted.json").read_text()) == str(drive), "Google Drive was not mounted"
    assert facts["experiments"] == str(drive / colab.DRIVE_RUNS), f"runs are not kept on Drive: {facts['experiments']}"
    added = set(os.listdir(site)) - before - {"__pycache__"}
    assert added and all("course_utils" in name for name in added), f"pip installed more than the course: {sorted(added)}"
    assert "left as they were: torch" in result.stdout and "ipywidgets" in result.stdout, result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("case", ["unset", "unreachable"])
def test_setup_cell_stops_with_one_sentence_when_the_course_cannot_be_fetched(tmp_path, case):
    url = "" if case == "unset" else (tmp_path / "no-such-repository").as_uri()
    python, site = _colab_like_venv(tmp_path)
    result = _run_cell(tmp_path, python, url)
    assert result.returncode != 0, "the setup cell went on without the course"
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("RuntimeError: Could not fetch the course") and FETCH_SENTENCE in last, (
        f"expected one clear sentence, got:\n{result.stderr}")
    assert "ModuleNotFoundError" not in result.stderr
    assert not (tmp_path / "content" / "course").exists()
    assert not [name for name in os.listdir(site) if "course_utils" in name], "it installed the course anyway"
