"""``make site``: the course as a static website, built from the notebooks' committed outputs.

``python website/make_site.py [--out build/site]``

Nothing is executed: the pages show the outputs committed in ``notebooks/``. The script stages
a source tree next to the output (``build/site-src``) and runs Sphinx with myst-nb on it:

- the README is the front page; its relative links are rewritten so that each one works on
  the site (lessons, ``docs/`` pages and figures stay on the site, other repository files link
  to GitHub);
- the lessons are every ``notebooks/NN_name.ipynb``, in the order of their names (a toctree
  glob, so a new lesson appears without editing anything here);
- every ``docs/*.md`` page follows under "About", with the notebooks' README, again by glob;
- each lesson page opens with an "Open in Colab" link to the same notebook in the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
WEBSITE_DIR = Path(__file__).resolve().parent
LESSON_GLOB = "[0-9][0-9]_*.ipynb"
DOCS_GLOB = "*.md"  # the pages of docs/
BRANCH = "main"
# Markdown links and images: [text](target) and ![alt](target); targets without spaces.
LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)(\))")
# Colab's badge image, served from the site itself (the site works offline, and loads nothing from Google).
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
BADGE_ON_SITE = "_assets/colab-badge.svg"


def repository() -> str:
    """``OWNER/NAME`` of the course on GitHub: ``course_utils.colab.COURSE_REPO``, the one place that names it."""
    from course_utils.colab import COURSE_REPO

    return COURSE_REPO


def colab_url(repo: str, path: str) -> str:
    return f"https://colab.research.google.com/github/{repo}/blob/{BRANCH}/{path}"


def rewrite_links(markdown: str, source: str, repo: str) -> str:
    """Point each relative link of ``source`` (a repository path) at its place on the site.

    Lessons, the notebooks' README, the ``docs/`` pages and ``figures/`` are on the site (MyST
    resolves links to documents and copies linked files); the README becomes ``index``; any other
    repository file is linked on GitHub.
    """
    base = posixpath.dirname(source)

    def fix(match: re.Match) -> str:
        target = match.group(2)
        if target == COLAB_BADGE:
            return f"{match.group(1)}{posixpath.relpath(BADGE_ON_SITE, base or '.')}{match.group(3)}"
        if re.match(r"^[a-z][a-z0-9+.-]*:|^#|^/", target):
            return match.group(0)  # absolute URL, anchor or site-absolute path
        path, _, anchor = target.partition("#")
        repo_path = posixpath.normpath(posixpath.join(base, path))  # repository-relative
        on_site = (repo_path == "README.md" or repo_path == "notebooks/README.md"
                   or re.fullmatch(r"notebooks/\d\d_[^/]+\.ipynb", repo_path) or re.fullmatch(r"docs/[^/]+\.md", repo_path)
                   or repo_path.startswith("figures/"))
        if not on_site:
            kind = "tree" if (REPO_ROOT / repo_path).is_dir() else "blob"
            new = f"https://github.com/{repo}/{kind}/{BRANCH}/{repo_path}"
        else:
            if repo_path == "README.md":
                repo_path = "index.md"
            new = posixpath.relpath(repo_path, base or ".")
        return f"{match.group(1)}{new}{'#' + anchor if anchor else ''}{match.group(3)}"

    return LINK.sub(fix, markdown)


def stage(src: Path, repo: str) -> list[str]:
    """Write the Sphinx source tree into ``src``; returns the lesson names, in order."""
    shutil.rmtree(src, ignore_errors=True)
    (src / "notebooks").mkdir(parents=True)
    readme = rewrite_links((REPO_ROOT / "README.md").read_text(), "README.md", repo)
    toc = [
        "", "```{toctree}", ":hidden:", ":caption: Lessons", ":glob:", "",
        f"notebooks/{LESSON_GLOB.removesuffix('.ipynb')}", "```",
        "", "```{toctree}", ":hidden:", ":caption: About", ":glob:", "",
        f"docs/{DOCS_GLOB.removesuffix('.md')}", "notebooks/README", "```", "",
    ]
    (src / "index.md").write_text(readme.rstrip() + "\n" + "\n".join(toc))
    notes = rewrite_links((REPO_ROOT / "notebooks" / "README.md").read_text(), "notebooks/README.md", repo)
    (src / "notebooks" / "README.md").write_text(notes)
    (src / "docs").mkdir()
    for page in sorted((REPO_ROOT / "docs").glob(DOCS_GLOB)):
        (src / "docs" / page.name).write_text(rewrite_links(page.read_text(), f"docs/{page.name}", repo))
    shutil.copytree(REPO_ROOT / "figures", src / "figures")
    (src / "_assets").mkdir()
    shutil.copy(WEBSITE_DIR / "colab-badge.svg", src / BADGE_ON_SITE)
    lessons = []
    for path in sorted((REPO_ROOT / "notebooks").glob(LESSON_GLOB)):
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "markdown":
                text = rewrite_links("".join(cell["source"]), f"notebooks/{path.name}", repo)
                cell["source"] = text.splitlines(keepends=True)
        badge = f"[![Open In Colab](../{BADGE_ON_SITE})]({colab_url(repo, f'notebooks/{path.name}')})"
        title = next((i for i, cell in enumerate(nb["cells"]) if cell["cell_type"] == "markdown"), None)
        text = "".join(nb["cells"][title]["source"]) if title is not None else ""
        if text.lstrip().startswith("# "):  # the badge goes right under the lesson's title
            heading, _, rest = text.lstrip().partition("\n")
            nb["cells"][title]["source"] = f"{heading}\n\n{badge}\n{rest}".splitlines(keepends=True)
        else:
            nb["cells"].insert(0, {"cell_type": "markdown", "id": "open-in-colab", "metadata": {}, "source": [badge]})
        (src / "notebooks" / path.name).write_text(json.dumps(nb, indent=1))
        lessons.append(path.stem)
    return lessons


def build(out: Path, src: Path | None = None, jobs: str = "auto") -> float:
    """Stage and build the site into ``out``; returns the seconds it took."""
    started = time.perf_counter()
    src = src or out.with_name(out.name + "-src")
    repo = repository()
    lessons = stage(src, repo)
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-E", "-j", jobs, "-c", str(WEBSITE_DIR),
           "-d", str(src / ".doctrees"), str(src), str(out)]
    subprocess.run(cmd, check=True)
    seconds = time.perf_counter() - started
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    print(f"site: {len(lessons)} lessons ({lessons[0]} ... {lessons[-1]}) -> {out}/index.html in {seconds:.1f} s "
          f"(machine load {load:.1f} per CPU over the last minute)")
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "site")
    parser.add_argument("--jobs", default="auto", help="Sphinx's -j (default auto)")
    args = parser.parse_args(argv)
    build(args.out.resolve(), jobs=args.jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
