# The two commands of the README. Each builds its own virtual environment on a fresh clone.
#   make serve  run the reward service on its embedded default (http://127.0.0.1:8000/docs)
#   make test   run the test suite
#   make demo   score the bundled example candidates against their reference, on the command line
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: serve demo test bench clean

$(BIN)/.installed: pyproject.toml
	bash scripts/system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: on these machines pip finds the CPU build of 2.13.0 locally, whereas an
	# unpinned torch (pulled in by trl) would fetch a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

serve: $(BIN)/.installed
	$(BIN)/rlrf serve

demo: $(BIN)/.installed
	$(BIN)/rlrf score --reference examples/reference.svg examples/candidates/*.txt

test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: $(BIN)/.installed
	$(BIN)/python bench/bench_pipeline.py --size 224

clean:
	rm -rf $(VENV)
