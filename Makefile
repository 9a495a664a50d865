# On a fresh machine: `make lab` opens the lessons in JupyterLab, `make course` runs the course, `make test` runs
# the tests. Each creates .venv on first use; `make lab` and `make course` install the same. `make course` installs what the lessons import and the notebook
# tooling ('.[course]': jupyterlab, papermill, ipykernel); `make test` adds the test tools, the
# website's and the browser driver ('.[dev]': pytest, nbval, sphinx, myst-nb, playwright).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= auto

.PHONY: lab course test site bench gpu-check venv clean-build

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	touch $@

# The course: the lessons' imports and the notebook tooling, with a "python3" kernel inside .venv.
$(VENV)/.course-installed: pyproject.toml $(VENV)/.created
	$(PY) -m pip install --quiet -e '.[course]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# Everything: the course plus the tools of the tests, the website and the benchmarks' GPU check.
$(VENV)/.installed: pyproject.toml $(VENV)/.course-installed
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.course-installed

## JupyterLab on notebooks/ with the course installed; nothing is executed first (the committed outputs show).
lab: $(VENV)/.course-installed
	$(VENV)/bin/jupyter lab notebooks/

## Execute every notebook in order with papermill (PROFILE=auto|smoke|laptop|gpu|full).
course: $(VENV)/.course-installed
	$(PY) -m course_utils.course --profile $(PROFILE)

## The whole test suite (pytest's "no tests collected" exit code 5 fails, like any other).
test: $(VENV)/.installed
	$(PY) -m pytest

## The course as a website in build/site/ (Sphinx + myst-nb), from the notebooks' committed outputs:
## nothing is executed. The site extra comes with '.[dev]'; installed here when it is missing.
site: $(VENV)/.course-installed
	$(PY) -c "import myst_nb, sphinx_book_theme" 2>/dev/null || $(PY) -m pip install --quiet -e '.[site]'
	$(PY) website/make_site.py --out build/site

## Speed benchmarks (not part of `make test`); DEVICE=cuda on a GPU.
DEVICE ?= cpu
bench: $(VENV)/.installed
	$(PY) -m benchmarks.run --device $(DEVICE)

## The whole GPU check (CUDA tests, every benchmark on cuda, airbench94 beside fast_gpu_50k.yaml, the 200-epoch
## projection), each step under a time limit (9.75 min in all); the summary is build/gpu-check/summary.txt and the
## output's end. No install step: it runs with .venv if it exists, else $(PYTHON) (benchmarks/gpu_check.sh says how
## it finds the data; the peer step needs airbench==0.1.8, from the dev extra).
gpu-check:
	PYTHON=$(if $(wildcard $(PY)),$(PY),$(PYTHON)) bash benchmarks/gpu_check.sh build/gpu-check

clean-build:
	rm -rf build
