# The front door. Each target runs one command and prints it; nothing hides Ray:
# after `source .cluster/env`, plain `ray job submit/list/logs` work too.
# `make help` lists the targets, from the `##` string beside each.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum < requirements.lock | cut -d' ' -f1)
# uv installs the lock in about a quarter of pip's time: it unpacks and byte-compiles in parallel (compiled
# up front, as pip does: with PYTHONDONTWRITEBYTECODE set, every Ray worker would compile Ray and torch again).
# uv does not read pip's configuration, so pip's find-links (where a machine keeps wheels, such as a CPU torch)
# are handed on.
UV_VERSION := 0.13.8
PIP_FIND_LINKS ?= $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null)
CONTROL := $(PY) -m controlplane

PROVIDER ?= local
EXPERIMENT ?= jobs/experiments/ppo-cartpole.yaml
SWEEP ?= jobs/sweeps/cartpole-seed.yaml
RESUME ?=
NAME ?=
CHECKPOINT ?=
EPISODES ?= 10
GPUS ?=
WORKERS ?=
GPU_FALLBACK ?=
# The Jobs API and dashboard on 127.0.0.1 (empty: Ray's own, jobs/common/cluster/ports.py).
DASHBOARD_PORT ?=
# make test's pytest-xdist workers: the local-cluster tests in one, the container tests in another.
TEST_WORKERS ?= 2
# The RayCluster every provider runs (k8s/overlays/<name> or a folder); empty: local, or dev for kuberay.
OVERLAY ?=
DRY_RUN ?=
# make bench-latency times this tree and, run for run beside it, this commit (empty: this tree only).
AGAINST ?= HEAD~1
export PROVIDER DASHBOARD_PORT OVERLAY DRY_RUN

# Images follow the one pin: the Ray version and Python tag are read from pyproject.toml.
RAY_VERSION := $(shell sed -nE 's/.*"ray\[[^]]*\]==([0-9.]+)".*/\1/p' pyproject.toml)
PYTHON_TAG := $(shell sed -nE 's/^requires-python = ">=3\.([0-9]+).*/py3\1/p' pyproject.toml)
REGISTRY ?= ghcr.io/your-org
TAG ?= $(RAY_VERSION)-$(PYTHON_TAG)
IMAGE := $(REGISTRY)/ray-rl
# PROVIDER=docker runs $(IMAGE):$(TAG)-cpu|gpu; DELETE_S3_DATA=1 makes its cluster-down delete the S3 data too.
DELETE_S3_DATA ?=
VARIANTS ?= cpu gpu
BASE_IMAGE ?=
export RL_IMAGE := $(IMAGE)
export RL_IMAGE_TAG := $(TAG)
export DELETE_S3_DATA

.DEFAULT_GOAL := help
.PHONY: tensorboard rerun gpu-check gpu-bundle help venv demo cluster-up cluster-down cluster-status train evaluate sweep jobs sweep-report test test-all test-chaos lint bench bench-ppo bench-sweeps bench-faults bench-load bench-cluster-up bench-autoscale bench-latency bench-throughput bench-sampling bench-halfcheetah lock images images-push images-local docker-engine docker-engine-stop kind-up

help:  ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

venv: $(STAMP)  ## create .venv with the locked dependencies
$(STAMP): requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv pip install --quiet --python $(PY) --compile-bytecode $(foreach link,$(PIP_FIND_LINKS),--find-links $(link)) -r requirements.lock
	rm -f $(VENV)/.installed-* && touch $@

demo: cluster-up train evaluate  ## quick start: local cluster, train PPO, evaluate it

cluster-up: venv  ## start the cluster (PROVIDER=local|docker|kuberay|vm, OVERLAY=local|dev|gpu|<folder>, DRY_RUN=1)
	$(CONTROL) up

cluster-status: venv  ## nodes, worker groups, S3 endpoint
	$(CONTROL) status

cluster-down: venv  ## stop exactly what cluster-up started (S3 data is kept)
	$(CONTROL) down

train: venv  ## submit PPO training (EXPERIMENT=..., GPUS=N, WORKERS=M, GPU_FALLBACK=cpu)
	$(CONTROL) submit -- python -m jobs.train --config $(EXPERIMENT)$(if $(GPUS), --num-gpus $(GPUS))$(if $(WORKERS), --num-workers $(WORKERS))$(if $(GPU_FALLBACK), --gpu-fallback $(GPU_FALLBACK))

evaluate: venv  ## evaluate CHECKPOINT=s3://... (default: EXPERIMENT's latest); video in results/
	$(CONTROL) evaluate $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT),--config $(EXPERIMENT)) --episodes $(EPISODES)

sweep: venv  ## submit a Tune sweep (SWEEP=...); rerunning resumes it from S3 (RESUME=1: insist on resuming)
	$(CONTROL) submit -- python -m jobs.sweep --config $(SWEEP)$(if $(RESUME), --resume)

jobs: venv  ## the cluster's Ray jobs, one line each (same list as `ray job list`)
	$(CONTROL) jobs

tensorboard: venv  ## a run's TensorBoard files synced from S3, served on 127.0.0.1:6006 (NAME=<experiment or sweep>)
	@test -n "$(NAME)" || { echo "error: NAME is required, e.g. make tensorboard NAME=ppo-cartpole" >&2; exit 2; }
	$(CONTROL) tensorboard --name $(NAME)

rerun: venv  ## train experiment NAME again from its run.json in storage, as NAME-rerun (same settings and seed)
	@test -n "$(NAME)" || { echo "error: NAME is required, e.g. make rerun NAME=ppo-cartpole" >&2; exit 2; }
	$(CONTROL) submit -- python -m jobs.train --rerun $(NAME)

sweep-report: venv  ## rebuild a sweep's report from S3 alone (NAME=<sweep name>); copy in results/sweeps/
	@test -n "$(NAME)" || { echo "error: NAME is required, e.g. make sweep-report NAME=cartpole-seed" >&2; exit 2; }
	$(CONTROL) report --name $(NAME)

test: venv lint  ## lint, then the test suite (unit + end-to-end on a local cluster); CI runs this
	$(PY) -m pytest -m "not slow" -n $(TEST_WORKERS) --durations=20

lint: venv  ## ruff: lint and formatting
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test-all: venv  ## every test, slow ones included
	$(PY) -m pytest

test-chaos: venv  ## every fault test: nodes, the head and S3 killed mid-run (slow ones included)
	$(PY) -m pytest -m chaos tests/e2e

images:  ## build the CPU and GPU images with docker buildx (REGISTRY=..., TAG=..., BASE_IMAGE=... for another base)
	docker buildx build -f docker/Dockerfile --build-arg RAY_VERSION=$(RAY_VERSION) --build-arg PYTHON_TAG=$(PYTHON_TAG) --build-arg VARIANT=cpu$(if $(BASE_IMAGE), --build-arg BASE_IMAGE=$(BASE_IMAGE)) -t $(IMAGE):$(TAG)-cpu --load .
	docker buildx build -f docker/Dockerfile --build-arg RAY_VERSION=$(RAY_VERSION) --build-arg PYTHON_TAG=$(PYTHON_TAG) --build-arg VARIANT=gpu$(if $(BASE_IMAGE), --build-arg BASE_IMAGE=$(BASE_IMAGE)) -t $(IMAGE):$(TAG)-gpu --load .

images-local: venv  ## no registry: a stand-in base from Debian's packages, then both images on it (VARIANTS="cpu gpu")
	$(PY) -m controlplane.containers images --variants $(VARIANTS)

docker-engine: venv  ## start the project's own dockerd (when no Docker Engine runs); prints DOCKER_HOST
	$(PY) -m controlplane.containers engine start

docker-engine-stop: venv  ## stop the project's own dockerd (images stay in ~/.cache/ray-rl/docker)
	$(PY) -m controlplane.containers engine stop

kind-up: images  ## optional: a local kind cluster with both images loaded (needs kind and Docker)
	kind create cluster --name ray-rl
	kind load docker-image --name ray-rl $(IMAGE):$(TAG)-cpu $(IMAGE):$(TAG)-gpu

images-push: images  ## push both images to REGISTRY
	docker push $(IMAGE):$(TAG)-cpu
	docker push $(IMAGE):$(TAG)-gpu

bench: bench-latency bench-ppo bench-sweeps bench-faults bench-load bench-throughput bench-sampling  ## the benchmarks (not bench-halfcheetah: hours): each prints a table and writes bench/out/*.json

bench-latency: venv  ## where make train's and make sweep's time goes, beside commit AGAINST's (default HEAD~1; AGAINST= for none)
	$(PY) -m bench.latency$(if $(AGAINST), --against $(AGAINST))

bench-ppo: venv  ## PPO CartPole to 450: ours vs plain RLlib defaults (bench/ppo_cartpole.py)
	$(PY) -m bench.ppo_cartpole

bench-sweeps: venv  ## seed and ASHA sweeps: wall time, trials/min, ours vs plain Tune (bench/sweeps.py)
	$(PY) -m bench.sweeps

bench-faults: venv  ## fault injection: each fault once, what the run did, time to recover, what was lost
	$(PY) -m bench.faults

bench-cluster-up: venv  ## cluster-up to ready, PROVIDER=docker next to PROVIDER=local (after make images-local)
	$(PY) -m bench.cluster_up

bench-autoscale: venv  ## docker cluster: pending demand to a new node in Ray, idle to its container gone (after make images-local)
	$(PY) -m bench.autoscale

bench-load: venv  ## 20 training jobs at once; a 500-trial sweep's driver peak RSS (bench/load.py)
	$(PY) -m bench.load

bench-throughput: venv  ## MuJoCo PPO on CPUs: an iteration's sampling, learning and the rest, against this machine's limit
	$(PY) -m bench.throughput

bench-sampling: venv  ## one env runner's round of MuJoCo sampling: RLlib's loop, the batched filter and runner, the limit
	$(PY) -m bench.sampling

bench-halfcheetah: venv  ## time to a return of 1,500 on HalfCheetah: ours, Stable-Baselines3 + RL Zoo, plain RLlib (up to hours)
	$(PY) -m bench.halfcheetah

gpu-check: venv  ## on a CUDA machine: CPU vs GPU learner bench + a short GPU training run (bench/out/gpu.json)
	$(PY) -m bench.gpu_check

gpu-bundle: venv  ## pack Ray and what else the GPU check needs for a CUDA machine without Ray (.gpu-bundle/, VERIFY=1 tries it here)
	PIP_FIND_LINKS="$(PIP_FIND_LINKS)" $(PY) -m bench.gpu_bundle$(if $(VERIFY), --verify)

# pyproject.toml holds the pins (Ray's among them, once); the lock is every
# package they pull in, resolved in a throw-away venv. torch's local "+cpu" tag is
# dropped so that GPU images can install the CUDA build of the same version.
lock:  ## recompile requirements.lock from pyproject.toml's pins
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	$(PYTHON) -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['test']))" > .lock-venv/requirements.in
	.lock-venv/bin/pip install --quiet --disable-pip-version-check -r .lock-venv/requirements.in
	(echo "# Compiled from pyproject.toml by \`make lock\` (Linux x86_64, CPython 3.11). Do not edit."; \
	 .lock-venv/bin/pip freeze --all | grep -v -E '^pip==' | sed -E 's/^(torch==[^+]+)\+cpu$$/\1/') > requirements.lock
	rm -rf .lock-venv
