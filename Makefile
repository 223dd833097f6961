# Two commands do all set-up: `make lab` (JupyterLab on the tutorials) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The torch release installed when the venv has none. pip prefers a local CPU wheel when one is
# on its find-links path; elsewhere it takes the standard build for your platform (CUDA on Linux).
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: lab test lint bench report clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test,lab]"
	touch $@

# root (containers, CI machines) must say so to Jupyter
LAB_FLAGS ?= $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/ $(LAB_FLAGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Test files run side by side on JOBS processes (a file's tests, and a notebook's cells, stay
# together on one); JOBS=0 runs everything in this process. Side by side, each process and the
# notebooks' kernels take one torch thread (two threads each on two busy cores wait on each other).
JOBS ?= 2
TEST_THREADS ?= $(if $(filter 0 1,$(JOBS)),2,1)

test: lint
	OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/python -m pytest -p no:cacheprovider -n $(JOBS) --dist loadfile tests gandissect_widgets --doctest-modules $(wildcard notebooks/*.ipynb) --nbval-lax --nbval-sanitize-with notebooks/sanitize.cfg -q -rs --durations=10

bench: $(STAMP)
	$(BIN)/python -m benchmarks

report: $(STAMP)
	$(BIN)/python -m gandissect_widgets.cli report --model hamlet --out out/hamlet_report.html

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
