"""Sphinx configuration of the course website (``make site``; staged by ``make_site.py``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_site import BRANCH, repository  # noqa: E402

REPOSITORY = repository()

project = "Training a ResNet from scratch on CIFAR-10"
author = "the course authors"
extensions = ["myst_nb"]
exclude_patterns = [".doctrees", "**/.ipynb_checkpoints"]

# The pages show the notebooks' committed outputs; nothing is executed.
nb_execution_mode = "off"
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

suppress_warnings = [
    "myst.header",  # some lessons go from their title (H1) to H3 sections
    "misc.highlighting_failure",  # IPython's `!cmd` in python fences: Pygments retries relaxed, fine
]

html_theme = "sphinx_book_theme"
html_title = project
html_theme_options = {
    "repository_url": f"https://github.com/{REPOSITORY}",
    "repository_branch": BRANCH,
    "path_to_docs": "",  # staged pages keep their repository paths (notebooks/NN_name.ipynb)
    "use_repository_button": True,
    "launch_buttons": {"colab_url": "https://colab.research.google.com"},
    "show_toc_level": 2,
}
html_show_sourcelink = False
