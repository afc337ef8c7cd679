# csc — the CellMap Segmentation Challenge toolbox as small stages composed by Make.
#
# Every stage target is the stage's output manifest, so Make reruns only what is
# stale. `make demo` and `make test` set up .venv on first use.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON  ?= python3
VENV    ?= .venv
DATA    ?= data
MODEL   ?= demo
RUNNER  ?= local
SOURCE  ?= synthetic
SIZE    ?= demo
SEED    ?= 0
CROPS   ?=
CLASSES ?=
TRAIN_ARGS   ?=
PREDICT_ARGS ?=
PROCESS_ARGS ?=
VIEW_ARGS    ?= --bind-address 127.0.0.1 --port 8080
PYTEST_ARGS  ?=
FETCH_ARGS   ?=

STAGES   := fetcher trainer exporter predictor postprocessor packer evaluator viewer
STAMP    := $(VENV)/.installed
BIN      := $(VENV)/bin

# Where the stages see DATA: the folder itself locally, /data inside containers.
ifeq ($(RUNNER),docker)
  include images/images.mk
  D := /data
  STAGE_DEPS = images
  stage = $(call docker_run,$(1))
else ifeq ($(RUNNER),local)
  -include images/images.mk
  D := $(DATA)
  STAGE_DEPS = $(STAMP)
  stage = $(BIN)/$(2)
else
  $(error RUNNER must be local or docker, got '$(RUNNER)')
endif

opt = $(if $(2),$(1) $(2))
SELECT := $(call opt,--crops,$(CROPS)) $(call opt,--classes,$(CLASSES))
MODEL_DIR := models/$(MODEL)

PHONY_EXTRA := submission
.PHONY: help demo test $(PHONY_EXTRA) lint venv clean view montage bench bench-fetch bench-train bench-predict bench-process bench-evaluate bench-fidelity \
        fetch train export predict process pack evaluate

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_%-]+:.*## ' $(MAKEFILE_LIST) | sort | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'
	@echo "Variables: DATA=$(DATA) RUNNER=$(RUNNER) SOURCE=$(SOURCE) MODEL=$(MODEL) CROPS=$(CROPS) CLASSES=$(CLASSES)"

# ---------------------------------------------------------------- set-up
venv: $(STAMP) ## create .venv and install every service (editable) and the test tools

$(STAMP): $(wildcard services/*/pyproject.toml)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check \
	  -e 'services/common[test,torch]' $(foreach s,$(STAGES),-e services/$(s))
	@touch $@

# ---------------------------------------------------------------- stages
fetch: $(DATA)/dataset.json ## fetcher: EM + ground truth (SOURCE=synthetic|s3)
$(DATA)/dataset.json: | $(STAGE_DEPS)
	@mkdir -p $(DATA)
	$(call stage,fetcher,csc-fetch) --source $(SOURCE) $(if $(filter synthetic,$(SOURCE)),--size $(SIZE) --seed $(SEED) --raw-padding 16) \
	  --dest $(D) --output $(D)/dataset.json $(SELECT) $(FETCH_ARGS)

train: $(DATA)/$(MODEL_DIR)/model.json ## trainer: a 3D U-Net on the training crops
$(DATA)/$(MODEL_DIR)/model.json: $(DATA)/dataset.json | $(STAGE_DEPS)
	$(call stage,trainer,csc-train) --dataset $(D)/dataset.json --output $(D)/$(MODEL_DIR)/model.json \
	  $(call opt,--classes,$(CLASSES)) $(TRAIN_ARGS)

export: $(DATA)/$(MODEL_DIR)/onnx-model.json ## onnx-exporter: verified ONNX model
$(DATA)/$(MODEL_DIR)/onnx-model.json: $(DATA)/$(MODEL_DIR)/model.json | $(STAGE_DEPS)
	$(call stage,exporter,csc-export) --model $(D)/$(MODEL_DIR)/model.json --output $(D)/$(MODEL_DIR)/onnx-model.json

predict: $(DATA)/predictions.json ## predictor: probabilities on the test crops
$(DATA)/predictions.json: $(DATA)/$(MODEL_DIR)/onnx-model.json $(DATA)/dataset.json | $(STAGE_DEPS)
	$(call stage,predictor,csc-predict) --model $(D)/$(MODEL_DIR)/onnx-model.json --dataset $(D)/dataset.json \
	  --output $(D)/predictions.json $(call opt,--crops,$(CROPS)) $(PREDICT_ARGS)

process: $(DATA)/processed.json ## postprocessor: semantic masks + instance labels
$(DATA)/processed.json: $(DATA)/predictions.json | $(STAGE_DEPS)
	$(call stage,postprocessor,csc-process) --predictions $(D)/predictions.json --output $(D)/processed.json $(PROCESS_ARGS)

pack: $(DATA)/submission.json ## packer: the submission zip in the challenge format
$(DATA)/submission.json: $(DATA)/processed.json $(DATA)/dataset.json | $(STAGE_DEPS)
	$(call stage,packer,csc-pack) --processed $(D)/processed.json --test-manifest $(D)/test_crop_manifest.csv \
	  --output $(D)/submission.json

evaluate: $(DATA)/scores.json ## evaluator: official scores (needs the held-apart truth of synthetic data)
$(DATA)/scores.json: $(DATA)/submission.json | $(STAGE_DEPS)
	$(call stage,evaluator,csc-evaluate) $(D)/submission.zip --truth $(D)/ground_truth.zarr \
	  --test-manifest $(D)/test_crop_manifest.csv --output $(D)/result.json --scores-manifest $(D)/scores.json \
	  --compare-empty

montage: $(DATA)/montage.png ## viewer: browser-free PNGs of every test crop + the score chart
$(DATA)/montage.png: $(DATA)/scores.json $(DATA)/processed.json | $(STAGE_DEPS)
	$(call stage,viewer,csc-view) --manifest $(D)/dataset.json $(D)/predictions.json $(D)/processed.json \
	  -c test --montage $(D)/montage.png --scores $(D)/scores.json --chart $(D)/scores.png

view: $(DATA)/processed.json ## viewer: neuroglancer on every volume (VIEW_ARGS for address/port)
	$(call stage,viewer,csc-view) --manifest $(D)/dataset.json $(D)/predictions.json $(D)/processed.json $(VIEW_ARGS)

submission: ## real data: fetch (S3) -> train -> export -> predict -> process -> pack, in containers unless RUNNER=local
	@$(MAKE) --no-print-directory RUNNER=$(if $(filter command line environment,$(origin RUNNER)),$(RUNNER),docker) \
	  SOURCE=s3 pack
	@echo "Submission: $(DATA)/submission.zip (check it: csc-pack --check $(DATA)/submission.zip)"

demo: $(STAGE_DEPS) ## the whole pipeline on the embedded synthetic dataset, then the score table
	@$(MAKE) --no-print-directory SOURCE=synthetic montage
	@echo "Scores: $(DATA)/result.json  (table above; pictures: $(DATA)/montage*.png, $(DATA)/scores.png)"

# ---------------------------------------------------------------- checks
lint: $(STAMP) ## ruff, ruff format --check and mypy over every package
	$(BIN)/ruff check services tests conftest.py
	$(BIN)/ruff format --check services tests conftest.py
	$(BIN)/mypy

test: $(STAMP) lint ## every test (lint + pytest); .ci/run calls this
	@rc=0; $(BIN)/pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests - treating as a failure"; exit 1; fi; \
	exit $$rc

bench: bench-fetch bench-train bench-predict bench-process bench-evaluate ## every benchmark

bench-fetch: $(STAMP) ## fetch: 32 vs 1 workers against a local S3 server with latency
	$(BIN)/python services/fetcher/bench/bench_fetch.py
bench-train: $(STAMP) ## train: iterations/s and RSS vs number of crops
	$(BIN)/python services/trainer/bench/bench_train.py
bench-predict: $(STAMP) ## predict: ONNX Runtime vs torch eager, RSS vs volume size
	$(BIN)/python services/predictor/bench/bench_predict.py
bench-process: $(STAMP) ## process: components + watershed, blockwise vs whole; pack 413 rows
	$(BIN)/python services/postprocessor/bench/bench_process.py
bench-evaluate: $(STAMP) ## evaluate: ours (1, 2 workers) vs a straightforward implementation
	$(BIN)/python services/evaluator/bench/bench_evaluate.py
bench-fidelity: $(STAMP) ## evaluate vs the official scorer on generated cases (CSC_ORACLE=DIR; BENCH_FIDELITY_CASES, _RULES)
	$(BIN)/python services/evaluator/bench/bench_fidelity.py

clean: ## remove pipeline outputs (DATA)
	rm -rf $(DATA)
