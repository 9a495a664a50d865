# Two commands on a fresh machine: `make course` (the course) and `make test` (the tests).
# Both create .venv on first use and install the project with its dev extras.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= auto

.PHONY: course test site bench gpu-check venv clean-build

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

venv: $(VENV)/.installed

## Execute every notebook in order with papermill (PROFILE=auto|smoke|laptop|gpu|full).
course: $(VENV)/.installed
	$(PY) -m course_utils.course --profile $(PROFILE)

## The whole test suite (pytest's "no tests collected" exit code 5 fails, like any other).
test: $(VENV)/.installed
	$(PY) -m pytest

## The course as a website in build/site/ (Sphinx + myst-nb), from the notebooks' committed outputs:
## nothing is executed. The site extra comes with '.[dev]'; installed here too for venvs made without it.
site: $(VENV)/.installed
	$(PY) -c "import myst_nb, sphinx_book_theme" 2>/dev/null || $(PY) -m pip install --quiet -e '.[site]'
	$(PY) website/make_site.py --out build/site

## Speed benchmarks (not part of `make test`); DEVICE=cuda on a GPU.
DEVICE ?= cpu
bench: $(VENV)/.installed
	$(PY) -m benchmarks.run --device $(DEVICE)

## The whole GPU check (CUDA tests, every benchmark on cuda, the 200-epoch projection), each step under a time
## limit (9.25 min in all); the summary is build/gpu-check/summary.txt. No install step: it runs with .venv if it
## exists, else $(PYTHON) (benchmarks/gpu_check.sh says how it finds the data).
gpu-check:
	PYTHON=$(if $(wildcard $(PY)),$(PY),$(PYTHON)) bash benchmarks/gpu_check.sh build/gpu-check

clean-build:
	rm -rf build
