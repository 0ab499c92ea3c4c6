# The two commands of the README. Each builds its own virtual environment on a fresh clone.
#   make serve  run the reward service on its embedded default (http://127.0.0.1:8000/docs)
#   make test   ruff, mypy, then the test suite
#   make demo   score the bundled example candidates against their reference, on the command line
#   make demo-train  the miniature: SFT then GRPO on the service, 3 seeds, figures (about 10 min on 2 cores)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: serve demo demo-train test bench clean

$(BIN)/.installed: pyproject.toml
	bash scripts/system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch and torchvision first, pinned to a pair that lies on these machines' local wheel store.
	# dreamsim and open_clip import torchvision, and PyPI has no CPU torchvision matching the local
	# CPU torch 2.13.0 ('operator torchvision::nms does not exist'), so the tests use the 2.14.1 pair
	# (a CUDA build that runs on the CPU). An unpinned torch would fetch whatever is newest.
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

serve: $(BIN)/.installed
	$(BIN)/rlrf serve

demo: $(BIN)/.installed
	$(BIN)/rlrf score --reference examples/reference.svg examples/candidates/*.txt

demo-train: $(BIN)/.installed
	$(BIN)/python examples/miniature/run.py --out runs/miniature --seeds 0 1 2 --figures docs/figures/miniature

test: $(BIN)/.installed
	# verl's and OpenRLHF's own venvs for tests/trainer (cached outside the checkout; minutes the first time).
	PYTHON=$(PYTHON) bash scripts/trainer-venvs.sh
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

bench: $(BIN)/.installed
	$(BIN)/python bench/bench_pipeline.py --size 224

clean:
	rm -rf $(VENV)
