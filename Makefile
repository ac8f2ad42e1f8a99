# tricolor: `make serve` runs the embedded Triton (CPU), `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
EXPORT_VENV := .venv-export
# imagenet (torchvision IMAGENET1K_V2; seeded random weights with a loud warning when offline),
# random, or the path of a state-dict checkpoint (then LABELS=file with one class per line)
WEIGHTS ?= imagenet
LABELS ?=
ONNX_MODEL := model_repository/resnet50/1/model.onnx
LABELS_FILE := model_repository/postprocess/labels.txt
RUFF := $(VENV)/bin/ruff

.PHONY: setup serve demo test perf check fmt clean

setup: $(VENV)/.installed $(EXPORT_VENV)/.installed $(ONNX_MODEL) $(LABELS_FILE)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -e ".[dev]"
	touch $@

$(EXPORT_VENV)/.installed: build_engines/requirements.txt
	$(PYTHON) -m venv $(EXPORT_VENV)
	$(EXPORT_VENV)/bin/pip install --quiet -r build_engines/requirements.txt
	touch $@

$(ONNX_MODEL) $(LABELS_FILE) &: | $(EXPORT_VENV)/.installed
	$(EXPORT_VENV)/bin/python build_engines/export.py --weights "$(WEIGHTS)" \
		$(if $(LABELS),--labels "$(LABELS)")

serve: setup
	$(VENV)/bin/tricolor serve

test: setup
	$(VENV)/bin/pytest

check: $(VENV)/.installed
	$(RUFF) check .
	$(RUFF) format --diff .

fmt: $(VENV)/.installed
	$(RUFF) check --fix .
	$(RUFF) format .

clean:
	rm -rf .tricolor test-artifacts perf/out
