# Two commands on a fresh machine with Python 3.10+:
#   make demo   set up .venv, train and evaluate on the embedded shapes data -> runs/demo/
#   make test   set up .venv, run the unit tests and every notebook under nbval
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED ?= 0

.PHONY: setup demo test unit notebooks browser lab bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test,notebooks,serve]"
	rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)
	$(BIN)/frcnn demo --out runs/demo

test: unit notebooks

unit: $(STAMP)
	$(BIN)/python -m pytest tests -q -n 2 --durations=10

notebooks: $(STAMP)
	FRCNN_FAST=1 $(BIN)/python -m pytest --nbval-lax notebooks -q -p no:randomly

browser: $(STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[browser]"
	FRCNN_BROWSER=1 $(BIN)/python -m pytest tests/browser -q

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache
