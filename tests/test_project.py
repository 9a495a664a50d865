"""The project's promises about itself: one dependency list, two commands."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]


def _requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower()


def test_environment_yml_pins_the_same_packages_as_pyproject():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = {r for r in [*project["dependencies"], *extras["course"], *extras["site"], *extras["dev"]]
              if not r.startswith("course_utils")}
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {p for p in pip_section if p != "-e ."}
    assert listed == wanted, f"only in pyproject: {wanted - listed}; only in environment.yml: {listed - wanted}"
    assert "-e ." in pip_section, "environment.yml must install the course itself"


def test_dependencies_come_in_three_layers():
    """Runtime = what the lessons import (all Colab needs); `course` = notebook tooling; `dev` = tests + course."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_requirement_name(r) for r in project["dependencies"]}
    assert runtime == {"torch", "torchvision", "numpy", "matplotlib", "seaborn", "ipywidgets", "pyyaml", "tqdm"}, (
        f"runtime dependencies must be exactly what the lessons import, got {sorted(runtime)}")
    assert "ipywidgets>=7.6" in project["dependencies"], "Colab ships ipywidgets 7.7: the floor must admit 7"
    course = {_requirement_name(r) for r in project["optional-dependencies"]["course"]}
    assert {"jupyterlab", "papermill", "nbval", "ipykernel"} <= course, f"the course extra lacks tooling: {course}"
    dev = project["optional-dependencies"]["dev"]
    assert "course_utils[course]" in dev, "'.[dev]' must include the course extra (make test executes notebooks)"
    assert "course_utils[site]" in dev, "'.[dev]' must include the site extra (make test builds the website)"
    assert "pytest" in {_requirement_name(r) for r in dev}


def test_readme_gives_the_two_commands():
    readme = (REPO_ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", readme, flags=re.S)
    commands = [line.strip() for block in blocks for line in block.splitlines()]
    assert "make course" in commands and "make test" in commands, "README must show both commands"
