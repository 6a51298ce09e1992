# Strata: `make run` and `make test` are the whole quick start (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUN_DIR ?= .run/services
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
# Debian packages of the real servers used by tests and benchmarks (docker-compose only
# validates docker-compose.yml; no engine runs here).
DEB_PACKAGES := redis-server memcached postgresql prometheus nginx docker-compose
DEB_BINARIES := /usr/bin/redis-server /usr/bin/memcached /usr/bin/prometheus /usr/sbin/nginx /usr/bin/docker-compose

.PHONY: help install system-deps proto lint test test-only run cluster bench services-up services-down services-status clean

help:
	@echo "make run            example upstream + sidecar (in-process tier) + kongsim with kong.yml, on loopback"
	@echo "make cluster        NGINX + two kongsim nodes (own sidecars) sharing the services' tiers, on loopback"
	@echo "make test           install, start real servers, lint + type-check + full test suite, stop"
	@echo "make install        system packages + virtualenv with the project and its dev tools"
	@echo "make services-up    start Redis, Memcached, PostgreSQL, Prometheus, Tansu on loopback"
	@echo "make services-down  stop them"
	@echo "make bench          run every benchmark (bench/) and regenerate BENCHMARKS.md"
	@echo "make proto          regenerate proto/strata/v1/*_pb2*.py from the .proto files"

system-deps:
	@missing=0; for b in $(DEB_BINARIES); do [ -x $$b ] || missing=1; done; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing=1; \
	if [ $$missing = 1 ]; then \
	  echo "installing Debian packages: $(DEB_PACKAGES)"; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $(DEB_PACKAGES); \
	fi

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -U pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: system-deps $(STAMP)

proto: $(STAMP)
	$(PY) -m tools.gen_proto

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

services-up: install
	$(PY) -m tools.services up --run-dir $(RUN_DIR)

services-down:
	@if [ -x $(PY) ]; then $(PY) -m tools.services down --run-dir $(RUN_DIR); fi

services-status:
	$(PY) -m tools.services status --run-dir $(RUN_DIR)

# The whole suite against real servers; servers are stopped whatever the outcome.
test: install
	@$(MAKE) --no-print-directory services-up; rc=$$?; \
	if [ $$rc = 0 ]; then $(MAKE) --no-print-directory test-only; rc=$$?; fi; \
	$(MAKE) --no-print-directory services-down; exit $$rc

test-only:
	@rc=0; $(MAKE) --no-print-directory lint || rc=$$?; \
	$(PY) -m pytest -q $(PYTEST_ARGS) || rc=$$?; exit $$rc

run: install
	@$(PY) -m tools.run

# The shared services stay up after Ctrl-C (make services-down stops them).
cluster: install
	@$(MAKE) --no-print-directory services-up
	@$(PY) -m tools.cluster

bench: install
	@$(MAKE) --no-print-directory services-up; rc=$$?; \
	if [ $$rc = 0 ]; then $(PY) -m bench all; rc=$$?; fi; \
	$(MAKE) --no-print-directory services-down; exit $$rc

clean: services-down
	rm -rf .run .mypy_cache .ruff_cache .pytest_cache
