# Two commands on a fresh machine with Python 3.11-3.13 (the pinned set of constraints.txt):
#   make demo   set up .venv, train and evaluate on the embedded shapes data -> runs/demo/
#   make test   set up .venv, run the unit tests and every notebook under nbval
# and `make oldest`: the oldest TensorFlow/Keras/numpy that pyproject.toml allows, in .venv-oldest.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
PINNED_PYTHONS := 3.11 3.12 3.13
# TensorFlow 2.16 has wheels for Python 3.9-3.12; the first of these found runs `make oldest`.
OLDEST_PYTHONS := 3.10 3.11 3.12
OLDEST_PYTHON  ?= $(shell for v in $(OLDEST_PYTHONS); do python$$v -c '' 2>/dev/null && { echo python$$v; break; }; done)
OLDEST_VENV    := .venv-oldest
OLDEST_STAMP   := $(OLDEST_VENV)/.installed-$(shell cat pyproject.toml constraints-oldest.txt | cksum | cut -d' ' -f1)
OLDEST_TESTS   := tests/test_boxes.py tests/test_nms.py tests/test_roi.py tests/test_model.py tests/test_cli.py \
                  tests/test_optimizers.py tests/test_precision.py \
                  tests/test_startup.py
export PYTHONHASHSEED ?= 0
# The test targets hide TensorFlow's info lines; `frcnn` (make demo) hides its native log itself.
unit notebooks oldest bench browser: export TF_CPP_MIN_LOG_LEVEL ?= 2

# $(call require_python,INTERPRETER,VERSIONS,WHAT,HINT): stop with one line unless it is one of VERSIONS.
python_version = $(shell $(1) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
require_python = $(if $(filter $(2),$(call python_version,$(1))),,$(error $(3) needs Python \
	$(subst $() $(),/,$(2)); '$(1)' is $(or $(call python_version,$(1)),not found): $(4)))

.PHONY: setup demo test unit notebooks oldest binder course browser lab bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(call require_python,$(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)),$(PINNED_PYTHONS),the pinned set (constraints.txt),set PYTHON=python3.X (for Python 3.10 see README: Supported versions))
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test,notebooks,serve,onnx]"
	rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)
	$(BIN)/frcnn demo --out runs/demo

test: unit notebooks

unit: $(STAMP)
	$(BIN)/python -m pytest tests -q -n 2 --dist worksteal --durations=15

# The notebooks in fast mode: those that use the course's trained model (06, 08, 10, 11, 12) run
# as on Colab (notebooks/_tools/colab_layout.py: alone in a folder outside the checkout, frcnn_lib
# from a wheel, the model downloaded from 127.0.0.1), after the others ran in the checkout
# (make lab's layout), where 09 writes the fast-mode model that the download serves. Two notebooks
# run at once in each part (each in its own kernel; a fast-mode notebook mostly keeps one core busy).
COLAB_NOTEBOOKS := $(addprefix notebooks/,06_proposals_and_nms.ipynb 08_rcnn_head_and_targets.ipynb \
                   10_inference_and_map.ipynb 11_use_frcnn_lib_in_your_project.ipynb 12_where_next.ipynb)
notebooks: $(STAMP)
	FRCNN_FAST=1 $(BIN)/python -m pytest --nbval-lax -q -p no:randomly -n 2 --dist loadfile \
	  $(filter-out $(COLAB_NOTEBOOKS),$(wildcard notebooks/[0-9][0-9]_*.ipynb))
	$(BIN)/python notebooks/_tools/colab_layout.py --jobs 2 --model runs/course/model_fast.keras $(COLAB_NOTEBOOKS)

# The oldest allowed TensorFlow/Keras/numpy (constraints-oldest.txt) on a test subset.
oldest: $(OLDEST_STAMP)
	$(OLDEST_VENV)/bin/python -m pytest $(OLDEST_TESTS) -q -n 2

$(OLDEST_STAMP): pyproject.toml constraints-oldest.txt
	$(call require_python,$(if $(wildcard $(OLDEST_VENV)/bin/python),$(OLDEST_VENV)/bin/python,$(or $(OLDEST_PYTHON),python3)),$(OLDEST_PYTHONS),make oldest (TensorFlow 2.16),set OLDEST_PYTHON=python3.X)
	test -x $(OLDEST_VENV)/bin/python || $(OLDEST_PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(OLDEST_VENV)/bin/python -m pip install -q -c constraints-oldest.txt -e . "pytest>=8" "pytest-xdist>=3" "hypothesis>=6.100"
	$(OLDEST_VENV)/bin/python -m pip check
	rm -f $(OLDEST_VENV)/.installed-* && touch $@

# Binder's launch path without docker: the environment repo2docker builds from binder/ (a fresh
# venv with runtime.txt's Python, `pip install -r binder/requirements.txt` from the repository
# root, postBuild with its own HOME), then one notebook executed in it, in fast mode, from the
# checkout's notebooks folder, as Binder opens it, with nbval as make notebooks runs them.
# Minutes: it installs TensorFlow. .ci/run calls it after make oldest.
BINDER_DIR    ?= /tmp/frcnn-binder
BINDER_PYTHON ?= python$(shell sed 's/^python-//' binder/runtime.txt)
binder:
	rm -rf $(BINDER_DIR) && mkdir -p $(BINDER_DIR)/home
	$(BINDER_PYTHON) -m venv $(BINDER_DIR)/venv
	$(BINDER_DIR)/venv/bin/python -m pip install -q --upgrade pip
	$(BINDER_DIR)/venv/bin/python -m pip install -q -r binder/requirements.txt
	HOME=$(BINDER_DIR)/home bash binder/postBuild
	grep -q 'default_url = "/lab/tree/notebooks"' $(BINDER_DIR)/home/.jupyter/jupyter_server_config.py
	$(BINDER_DIR)/venv/bin/python -m pip install -q -c constraints.txt pytest nbval   # the test harness only
	cd notebooks && HOME=$(BINDER_DIR)/home FRCNN_FAST=1 $(BINDER_DIR)/venv/bin/python -m pytest \
	  --nbval-lax --nbval-current-env --nbval-cell-timeout=300 -q -p no:cacheprovider 06_proposals_and_nms.ipynb
	@echo "binder: 06_proposals_and_nms.ipynb ran in $(BINDER_DIR)/venv"

# Full mode, in place, outputs cleaned for committing (notebooks/_tools/run_course.py); hours on a CPU.
course: $(STAMP)
	$(BIN)/python notebooks/_tools/run_course.py --promote-reference-answers

browser: $(STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[browser]"
	FRCNN_BROWSER=1 $(BIN)/python -m pytest tests/browser -q

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) $(OLDEST_VENV) runs .pytest_cache
