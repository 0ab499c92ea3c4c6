# The two commands of the README. Each builds its own virtual environment on a fresh clone.
#   make demo   score the bundled example candidates against their reference (the main job until
#               the HTTP service lands: then `make serve`)
#   make test   run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/.installed: pyproject.toml
	bash scripts/system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/rlrf score --reference examples/reference.svg examples/candidates/*.txt

test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: $(BIN)/.installed
	$(BIN)/python bench/bench_pipeline.py --size 224

clean:
	rm -rf $(VENV)
