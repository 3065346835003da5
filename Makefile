# aiostack developer entry points. On a fresh Debian 12 machine (as root):
#   make test    install + start PostgreSQL and RabbitMQ if needed, build .venv, run the test suite
#   make run     build .venv, run the whole cloud on this machine (`aiostack up`)
#   make check   lint (ruff), format check (ruff format) and type check (mypy)
#   make bench   benchmarks against the local PostgreSQL and RabbitMQ
# Extra arguments: make test PYTEST_ARGS='-k outbox -x'   make run RUN_ARGS='--listen 0.0.0.0:8774'

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
PYTEST_ARGS ?=
# One pytest worker per core (at most 4); a test module stays on one worker, so its fixtures are
# built once. PYTEST_PARALLEL= runs everything in one process.
PYTEST_PARALLEL ?= -n auto --maxprocesses 4 --dist loadfile
RUN_ARGS ?=
BENCH_ARGS ?=

# The services the tests use (scripts/ensure-services.sh provides exactly these).
export AIOSTACK_TEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
export AIOSTACK_TEST_AMQP_URL ?= amqp://guest:guest@127.0.0.1:5672/

.PHONY: help run test check bench venv services

help:
	@sed -n 's/^#   //p' $(firstword $(MAKEFILE_LIST))

venv:
	@bash scripts/venv.sh

services:
	@bash scripts/ensure-services.sh

run: venv
	$(VENV)/bin/aiostack up $(RUN_ARGS)

# Services first, then the venv (never in parallel: both may call apt-get). libvirtd and QEMU are
# for the libvirt driver's tests, which boot a real guest.
test:
	@bash scripts/ensure-services.sh
	@bash scripts/ensure-libvirt.sh
	@bash scripts/venv.sh
	@echo "test: AIOSTACK_TEST_DATABASE_URL=$$AIOSTACK_TEST_DATABASE_URL AIOSTACK_TEST_AMQP_URL=$$AIOSTACK_TEST_AMQP_URL"
	@rc=0; $(VENV)/bin/pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS) || rc=$$?; \
	if [[ $$rc -eq 5 ]]; then echo "test: ERROR: pytest collected no tests (exit 5)" >&2; fi; \
	exit $$rc

# Runs all three checkers even if one fails, then fails if any did.
check: venv
	@rc=0; \
	for cmd in "ruff check ." "ruff format --check ." "mypy"; do \
	  echo "check: $$cmd"; $(VENV)/bin/$$cmd || { rc=1; echo "check: FAILED: $$cmd" >&2; }; \
	done; \
	exit $$rc

bench:
	@bash scripts/ensure-services.sh
	@bash scripts/venv.sh
	$(VENV)/bin/python -m bench $(BENCH_ARGS)
