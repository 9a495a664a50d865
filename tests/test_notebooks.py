"""The lessons: executed top to bottom in the smoke profile, and kept clean in git.

nbval executes every lesson (``--nbval-lax``, collected from notebooks/): any exception fails it,
and the cells marked ``# NBVAL_CHECK_OUTPUT`` are compared with the committed outputs. papermill
executes two lessons with the injected ``profile`` parameter, the path ``make course`` takes.
"""

from __future__ import annotations

import json
import re

import nbformat
import papermill
import pytest

from course_utils import course

NOTEBOOKS = course.lesson_notebooks()
EXPECTED = ["00_setup", "01_data_and_split", "02_augmentation", "03_resnet", "04_kaiming_init", "05_training",
            "06_lr_sensitivity", "07_calibration", "08_failure_analysis", "09_vit_vs_resnet", "10_cifar100",
            "11_depth_and_seeds", "12_training_fast"]
MACHINE_PATH = re.compile(r"/(?:work|tmp|home|root|Users|content)/")


def test_the_course_has_its_thirteen_lessons_in_order():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


# Every lesson runs top to bottom in the smoke profile once per `make test`: nbval executes each one
# (collected from notebooks/; with --nbval-lax an exception in any cell fails it) and compares the
# checked cells. papermill executes the two lessons that test its own path too: the injected
# `profile` parameter (what `make course` does) in a lesson that trains nothing (00) and in one that
# trains live (05). Running all thirteen twice doubled the suite's longest part for no extra check.
PAPERMILL_LESSONS = [p for p in NOTEBOOKS if p.name[:2] in ("00", "05")]


@pytest.mark.parametrize("path", PAPERMILL_LESSONS, ids=[p.stem for p in PAPERMILL_LESSONS])
def test_notebook_runs_top_to_bottom_in_the_smoke_profile(path, tmp_path):
    papermill.execute_notebook(str(path), str(tmp_path / path.name), parameters={"profile": "smoke"},
                               cwd=str(path.parent), kernel_name="python3", progress_bar=False)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebook_is_a_clean_real_execution(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert any("parameters" in c.metadata.get("tags", []) for c in code), "no papermill 'parameters' cell"
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), f"stale or partial execution counts: {counts}"
    assert any(c.outputs for c in code), "committed without outputs"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"committed with an error output: {errors[0].get('ename')}"
    metadata = json.dumps(nb.metadata) + json.dumps([c.metadata for c in nb.cells])
    assert not MACHINE_PATH.search(metadata), "machine paths in the notebook's metadata"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_kernelspec_is_what_jupyterlab_writes(path):
    """JupyterLab rewrites "Python 3" to "Python 3 (ipykernel)" on opening: anything else marks the lesson unsaved."""
    kernelspec = nbformat.read(path, as_version=4).metadata.get("kernelspec")
    assert kernelspec == course.KERNELSPEC, f"{path.name}: kernelspec {kernelspec}, JupyterLab writes {course.KERNELSPEC}"


def test_in_place_runs_keep_jupyterlabs_kernelspec(tmp_path):
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"display_name": "Python 3", "language": "python",
                                                           "name": "python3"}, "papermill": {"cwd": "/tmp"}})
    nb.cells.append(nbformat.v4.new_code_cell("1", metadata={"papermill": {"duration": 1.0}}))
    path = tmp_path / "lesson.ipynb"
    nbformat.write(nb, path)
    course.clean_metadata(path)
    cleaned = nbformat.read(path, as_version=4)
    assert cleaned.metadata.kernelspec == course.KERNELSPEC, "the runner wrote back papermill's kernelspec"
    assert "papermill" not in cleaned.metadata and "papermill" not in cleaned.cells[0].metadata


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_lesson_sizes_itself_for_every_profile(path):
    """Each SETTINGS = {...}[PROFILE] dict has one entry per profile (a new profile must reach every lesson)."""
    from course_utils.profiles import PROFILES

    sources = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    settings = [s for s in sources if "SETTINGS = {" in s]
    assert settings, f"{path.name} has no SETTINGS dict"
    for source in settings:
        block = source[source.index("SETTINGS = {"):source.index("}[PROFILE]")]
        keys = re.findall(r'^    "(\w+)":', block, flags=re.M)
        assert keys == list(PROFILES), f"{path.name}: SETTINGS keys {keys}, profiles {list(PROFILES)}"


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if int(p.name[:2]) >= 5], ids=lambda p: p.stem)
def test_lessons_that_train_announce_how_long_first(path):
    cells = nbformat.read(path, as_version=4).cells
    code = "\n".join(c.source for c in cells if c.cell_type == "code")
    prose = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    assert "announce_training(" in code, f"{path.name} trains without printing an estimate first"
    assert "on a T4" in prose and "on an A100" in prose and "estimates, not measurements" in prose, (
        f"{path.name} must state its full-profile cost on a T4 and an A100, labelled as estimates")


def test_course_runner_stops_at_once_offline_without_data(tmp_path, monkeypatch, capsys):
    import torchvision.datasets.cifar as tv_cifar

    def offline(*args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    rc = course.main(["--profile", "smoke", "--build-dir", str(tmp_path / "build")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "COURSE_DATA_DIR" in err and "cifar10.npz" in err, err
    assert not (tmp_path / "build").exists(), "the runner executed notebooks without data"
