"""The project's promises about itself: one dependency list, two commands, a front door that agrees
with the lessons, and docs pages that reach the website."""

from __future__ import annotations

import importlib.metadata as md
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
DOCS = sorted((REPO_ROOT / "docs").glob("*.md"))
# What `make test` needs and `make course` must not install.
TEST_AND_SITE_TOOLS = {"pytest", "nbval", "playwright", "sphinx", "myst-nb", "sphinx-book-theme"}


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


def _extras():
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]


def _installed_closure(requirements: list[str]) -> tuple[set[str], set[str]]:
    """Every distribution ``requirements`` pull in, walked through this environment's installed metadata.

    Returns (names reached, names not installed here, whose own dependencies could not be walked).
    """
    project = _extras()
    todo, seen, missing = [Requirement(r) for r in requirements], set(), set()
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name == "course-utils":  # the course's own extras: read from pyproject, not from an install
            for extra in req.extras:
                todo += [Requirement(r) for r in project["optional-dependencies"][extra]]
            continue
        key = (name, tuple(sorted(req.extras)))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            missing.add(name)
            continue
        for text in dist.requires or []:
            dep = Requirement(text)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in ("", *req.extras)):
                todo.append(dep)
    return {name for name, _ in seen}, missing


def test_dependencies_come_in_three_layers():
    """Runtime = what the lessons import (all Colab needs); `course` = notebook tooling; `dev` = tests + course."""
    project = _extras()
    runtime = {_requirement_name(r) for r in project["dependencies"]}
    assert runtime == {"torch", "torchvision", "numpy", "matplotlib", "seaborn", "ipywidgets", "pyyaml", "tqdm"}, (
        f"runtime dependencies must be exactly what the lessons import, got {sorted(runtime)}")
    assert "ipywidgets>=7.6" in project["dependencies"], "Colab ships ipywidgets 7.7: the floor must admit 7"
    course = {_requirement_name(r) for r in project["optional-dependencies"]["course"]}
    assert {"jupyterlab", "papermill", "ipykernel"} <= course, f"the course extra lacks tooling: {course}"
    assert not course & TEST_AND_SITE_TOOLS, f"the course extra installs test or site tools: {course & TEST_AND_SITE_TOOLS}"
    dev = project["optional-dependencies"]["dev"]
    assert "course_utils[course]" in dev, "'.[dev]' must include the course extra (make test executes notebooks)"
    assert "course_utils[site]" in dev, "'.[dev]' must include the site extra (make test builds the website)"
    assert {"pytest", "nbval", "playwright"} <= {_requirement_name(r) for r in dev}


def test_the_course_extra_pulls_in_no_test_site_or_browser_tool():
    """`make course` installs '.[course]': neither it nor anything it depends on may bring pytest, Sphinx, Playwright."""
    project = _extras()
    course, missing = _installed_closure([*project["dependencies"], "course_utils[course]"])
    assert {"torch", "papermill", "jupyterlab", "ipykernel", "nbformat"} <= course, (
        f"the walk did not reach the course's tooling (is it installed here?): {sorted(course)[:20]}")
    assert not course & TEST_AND_SITE_TOOLS, (
        f"'.[course]' pulls in {sorted(course & TEST_AND_SITE_TOOLS)}, which only `make test` should install")
    assert not missing & {"torch", "papermill", "jupyterlab", "ipykernel"}, f"not installed here: {sorted(missing)}"
    dev, _ = _installed_closure(["course_utils[dev]"])
    assert TEST_AND_SITE_TOOLS <= dev, f"the walk misses what '.[dev]' installs: {sorted(TEST_AND_SITE_TOOLS - dev)}"


def _make_dry_run(target: str) -> str:
    if shutil.which("make") is None:
        pytest.fail("make is not installed: `make course` and `make test` are the project's two commands")
    # -B: every target out of date, so the whole recipe chain prints; -n: nothing runs.
    done = subprocess.run(["make", "-n", "-B", "-C", str(REPO_ROOT), target], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_course_installs_the_course_extra_and_make_test_the_dev_extra():
    course = _make_dry_run("course")
    assert "pip install --quiet -e '.[course]'" in course and "'.[dev]'" not in course, course
    assert "-m course_utils.course --profile" in course, course
    test = _make_dry_run("test")
    assert "pip install --quiet -e '.[dev]'" in test and "-m pytest" in test, test


def _readme_commands() -> list[list[str]]:
    """The README's shell blocks, each as its commands (comments after ``#`` dropped)."""
    readme = (REPO_ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", readme, flags=re.S)
    return [[line.partition("#")[0].strip() for line in block.splitlines() if line.partition("#")[0].strip()]
            for block in blocks]


def test_readme_first_screen_gives_lab_course_and_test():
    readme = (REPO_ROOT / "README.md").read_text()
    first = _readme_commands()[0]
    assert first == ["make lab", "make course", "make test"], f"README's first command block, got {first}"
    assert readme.index("make lab") < readme.index("## The lessons"), "`make lab` belongs on the README's first screen"
    assert len(readme.encode()) < 15_000, f"README is {len(readme.encode()):,} bytes: keep it under 15,000"


def test_readme_shows_one_lesson_through_papermill_with_a_profile():
    line = next((c for block in _readme_commands() for c in block if "papermill" in c), None)
    assert line is not None, "README must show the papermill command for one lesson"
    words = line.split()
    assert words[0] == ".venv/bin/papermill" and words[1].startswith("notebooks/") and (REPO_ROOT / words[1]).is_file(), line
    assert words[3:5] == ["-p", "profile"] and words[5] in ("smoke", "laptop", "gpu", "full"), line


def test_make_lab_installs_the_course_and_opens_jupyterlab_without_executing_it():
    lab = _make_dry_run("lab")
    assert "pip install --quiet -e '.[course]'" in lab and "'.[dev]'" not in lab, lab
    assert re.search(r"jupyter lab .*notebooks", lab), lab
    assert "course_utils.course" not in lab and "papermill" not in lab, f"`make lab` must execute nothing: {lab}"


def test_readme_lists_every_lesson_and_docs_machines_its_measured_times():
    readme = (REPO_ROOT / "README.md").read_text()
    machines = (REPO_ROOT / "docs" / "machines.md").read_text()
    for path in LESSONS:
        assert any(f"](notebooks/{path.name})" in line for line in readme.splitlines()), (
            f"README's lesson table lacks {path.name}")
        row = next((line for line in machines.splitlines() if f"](../notebooks/{path.name})" in line), None)
        assert row is not None, f"docs/machines.md's table of lesson times lacks {path.name}"
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        assert re.match(r"\d+ s \(load ", cells[1]) and re.match(r"\d+ s \(load ", cells[2]), (
            f"{path.name}: the laptop and smoke columns must give a measured time in seconds with its load: {cells[1:3]}")


def _gpu_estimates_in_lesson(path: Path) -> tuple[str, ...] | None:
    """(gpu T4, gpu A100, full T4, full A100) as the lesson's "How long the training below takes" cell states them."""
    import nbformat

    prose = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
    full = re.search(r"about \*\*(.+?) on a T4 and (.+?) on an A100\*\*", prose)
    gpu = re.search(r"the `gpu` profile[^:]*: about (.+?) on a T4 and (.+?) on an A100", prose)
    if not (full and gpu):
        return None
    return gpu.group(1), gpu.group(2), full.group(1), full.group(2)


def test_docs_gpu_estimates_agree_with_what_each_lesson_states():
    table = {}
    for line in (REPO_ROOT / "docs" / "machines.md").read_text().splitlines():
        row = re.match(r"^\| (\d\d) [^|]+\| (.+?) / (.+?) \| (.+?) / (.+?) \|$", line)
        if row:
            table[row.group(1)] = row.groups()[1:]
    checked = 0
    for path in LESSONS:
        stated = _gpu_estimates_in_lesson(path)
        if stated is None:
            continue
        checked += 1
        assert table.get(path.name[:2]) == stated, (
            f"docs/machines.md gives {path.name[:2]} as {table.get(path.name[:2])} (gpu T4, A100, full T4, A100); "
            f"the lesson says {stated}")
    assert checked >= 8, f"only {checked} lessons state their GPU estimates (05-12 train)"


def test_readme_and_lesson_00_name_the_lessons_that_keep_runs_on_drive():
    import nbformat

    on_drive = [p.name[:2] for p in LESSONS
                if "use_drive = True" in next(c.source for c in nbformat.read(p, as_version=4).cells if c.cell_type == "code")]
    span = f"{on_drive[0]}-{on_drive[-1]}"
    assert on_drive == [f"{n:02d}" for n in range(int(on_drive[0]), int(on_drive[-1]) + 1)], on_drive
    readme = (REPO_ROOT / "README.md").read_text()
    assert f"Lessons that train ({span})" in readme, f"README must say the lessons {span} keep runs on Drive"
    lesson00 = nbformat.read(REPO_ROOT / "notebooks" / "00_setup.ipynb", as_version=4)
    prose = "\n".join(c.source for c in lesson00.cells if c.cell_type == "markdown")
    assert f"({span}," in prose, f"lesson 00 must say the lessons {span} keep runs on Drive"


def _relative_links(markdown: str) -> list[str]:
    targets = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", markdown)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:|^#", t)]


@pytest.mark.parametrize("page", [REPO_ROOT / "README.md", *DOCS], ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_every_relative_link_of_the_front_pages_points_at_a_file(page):
    broken = [t for t in _relative_links(page.read_text())
              if not (page.parent / t.partition("#")[0]).resolve().exists()]
    assert not broken, f"{page.relative_to(REPO_ROOT)} links to files that do not exist: {broken}"


def _heading_slugs(markdown: str) -> set[str]:
    """GitHub's (and MyST's) anchors of a page's headings: lower case, punctuation dropped, spaces to dashes."""
    headings = re.findall(r"^#{1,6} (.+)$", markdown, flags=re.M)
    return {re.sub(r"[^a-z0-9 _-]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_links_into_the_readme_name_sections_that_exist():
    import nbformat

    slugs = _heading_slugs((REPO_ROOT / "README.md").read_text())
    sources = {p.relative_to(REPO_ROOT).as_posix(): p.read_text() for p in DOCS}
    for path in LESSONS:
        cells = nbformat.read(path, as_version=4).cells
        sources[path.name] = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    broken = [f"{name}: #{anchor}" for name, text in sources.items()
              for anchor in re.findall(r"README\.md#([A-Za-z0-9_-]+)", text) if anchor not in slugs]
    assert not broken, f"links to README sections that do not exist: {broken}"


def test_the_readme_links_every_docs_page_and_the_site_stages_them(tmp_path):
    assert DOCS, "docs/ holds no pages"
    readme = (REPO_ROOT / "README.md").read_text()
    for page in DOCS:
        assert f"](docs/{page.name})" in readme, f"README does not link docs/{page.name}"
    sys.path.insert(0, str(REPO_ROOT / "website"))
    try:
        import make_site
    finally:
        sys.path.pop(0)
    make_site.stage(tmp_path, "someone/fork")
    for page in DOCS:
        assert (tmp_path / "docs" / page.name).is_file(), f"make site does not stage docs/{page.name}"
    index = (tmp_path / "index.md").read_text()
    assert re.search(r":caption: About\n:glob:\n\ndocs/\*\n", index), "the site's About section does not list docs/*"
    assert "](docs/data.md)" in index, "the README's links to docs/ must stay on the site"
