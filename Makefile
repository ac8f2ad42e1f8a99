# tricolor: `make serve` runs the embedded Triton (CPU), `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
EXPORT_VENV := .venv-export
UI_VENV := .venv-ui
# exactly the Triton image's pins (requirements-triton.txt), for tests/integration/test_triton_pins.py
TRITON_VENV := .venv-triton
# imagenet (torchvision IMAGENET1K_V2; seeded random weights with a loud warning when offline),
# random, or the path of a state-dict checkpoint (then LABELS=file with one class per line)
WEIGHTS ?= imagenet
LABELS ?=
# where `make setup` exports model.onnx, labels.txt and weights.json (a command-line variable:
# the tests export into a copy)
MODEL_REPOSITORY := model_repository
RUFF := $(VENV)/bin/ruff

.PHONY: setup serve demo test perf torchserve-venv litserve-venv perf-quiet int8 engine gpu-check check fmt clean test-deps \
	perf-deps

setup: $(VENV)/.installed $(EXPORT_VENV)/.installed $(UI_VENV)/.installed export

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -e ".[serve,http,dev,ui,perf]"
	touch $@

# tricolor itself without its serving dependencies: the export reads tricolor.weights
$(EXPORT_VENV)/.installed: build_engines/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(EXPORT_VENV)
	$(EXPORT_VENV)/bin/pip install --quiet -r build_engines/requirements.txt
	$(EXPORT_VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

# gradio caps pillow below 13: the UI (a pure gRPC client) gets its own venv
$(UI_VENV)/.installed: ui/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(UI_VENV)
	$(UI_VENV)/bin/pip install --quiet -r ui/requirements.txt
	$(UI_VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

# the Python-backend stubs' python3 when the suite serves the models with the image's pins
$(TRITON_VENV)/.installed: requirements-triton.txt pyproject.toml
	$(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/pip install --quiet -r requirements-triton.txt
	$(TRITON_VENV)/bin/pip install --quiet --no-deps -e .
	touch $@


# every time: export.py re-exports when WEIGHTS / LABELS differ from what weights.json
# records (and says why), else says the model is current without importing torch
.PHONY: export
export: | $(EXPORT_VENV)/.installed
	$(EXPORT_VENV)/bin/python build_engines/export.py --weights "$(WEIGHTS)" \
		--output $(MODEL_REPOSITORY)/resnet50/1/model.onnx \
		--labels-out $(MODEL_REPOSITORY)/postprocess/labels.txt $(if $(LABELS),--labels "$(LABELS)")

serve: setup
	$(VENV)/bin/tricolor serve

# the embedded Triton and the UI on 127.0.0.1:UI_PORT (7860); Ctrl-C stops both
demo: setup
	$(UI_VENV)/bin/python ui/app.py --with-server $(VENV)/bin/tricolor

# the Debian packages first (tools/system-deps.sh installs them, or says how), so a missing one
# stops the run in seconds, not after the venvs
test: test-deps setup $(TRITON_VENV)/.installed
	$(VENV)/bin/pytest

test-deps:
	tools/system-deps.sh test

# load runs, the in-process limit, the TorchServe peer (if .venv-torchserve exists), plots and
# perf/RESULTS.md (tens of minutes); `make perf SMOKE=1` checks the scripts in about a minute
perf: perf-deps setup
	$(VENV)/bin/python -m perf.run $(if $(SMOKE),--smoke --label smoke)

perf-deps:
	tools/system-deps.sh perf

# the TorchServe peer's own venv (torch; never in .venv)
torchserve-venv: .venv-torchserve/.installed

.venv-torchserve/.installed: perf/torchserve/requirements.txt
	$(PYTHON) -m venv .venv-torchserve
	.venv-torchserve/bin/pip install --quiet -r perf/torchserve/requirements.txt
	touch $@

# the LitServe peer's own venv (torch pinned as build_engines/requirements.txt: pip's cache)
litserve-venv: .venv-litserve/.installed

.venv-litserve/.installed: perf/litserve/requirements.txt
	$(PYTHON) -m venv .venv-litserve
	.venv-litserve/bin/pip install --quiet -r perf/litserve/requirements.txt
	touch $@

# the published numbers: both peers' venvs, then one full run on a quiet machine that
# regenerates perf/RESULTS.md (and refuses to if the machine was busy); about 60 minutes
perf-quiet: torchserve-venv litserve-venv
	$(MAKE) perf

# the opt-in INT8 variant (model_file: model.int8.onnx), calibrated on synthetic scenes + a few
# photos: the served input tensors are made in .venv, the quantisation runs in .venv-export
int8: setup
	$(VENV)/bin/python -m perf.inputs --out perf/out/int8-inputs --scenes 24
	$(EXPORT_VENV)/bin/python build_engines/quantize.py --tensors perf/out/int8-inputs/tensors.npz

# GPU host (README, "GPU production"): (re)build the TensorRT plan for this GPU in NVIDIA's
# TensorRT image (`make engine FORCE=1` rebuilds a current one), then prove the running stack
engine:
	docker compose --profile gpu run --rm engine $(if $(FORCE),--force)

# after `docker compose --profile gpu up -d`: plan current, FP16 vs FP32, contract, metrics, perf
gpu-check: $(VENV)/.installed
	$(VENV)/bin/python -m deploy.gpu_check

check: $(VENV)/.installed
	$(RUFF) check .
	$(RUFF) format --diff .

fmt: $(VENV)/.installed
	$(RUFF) check --fix .
	$(RUFF) format .

clean:
	rm -rf .tricolor test-artifacts perf/out
