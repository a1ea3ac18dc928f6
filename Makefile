# Sluice developer and CI entry points. `make test` is what CI runs (via .ci/run).

CARGO ?= cargo
PYTHON_VENV := $(CURDIR)/.cache/venv
SLUICE_BIN_DEBUG := $(CURDIR)/target/debug/sluice
# Example configs reference ${OPENAI_API_KEY}; validation only needs it to be set.
CHECK_CONFIG_ENV := OPENAI_API_KEY=sk-placeholder-for-validation

# The SDK compatibility tests (tests/tests/sdk_*.rs) run tests/python/* with this interpreter.
export SLUICE_PYTHON := $(PYTHON_VENV)/bin/python

.PHONY: all deps build lint fmt-check clippy check-configs test run bench

all: build

## deps: install system packages and the Python venv (.cache/venv) the tests need
deps:
	bash scripts/install-deps.sh

## build: build every binary of the workspace (debug)
build:
	$(CARGO) build --workspace --bins --locked

## lint: rustfmt check and clippy with warnings as errors
lint: fmt-check clippy

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

## check-configs: validate every config/examples/*.yaml with the real binary
check-configs: build
	@set -e; status=0; n=0; \
	for f in config/examples/*.yaml; do \
		n=$$((n + 1)); \
		if $(CHECK_CONFIG_ENV) $(SLUICE_BIN_DEBUG) --check-config "$$f"; then \
			echo "check-config: ok $$f"; \
		else \
			echo "check-config: FAILED $$f" >&2; status=1; \
		fi; \
	done; \
	if [ "$$n" -eq 0 ]; then echo "check-config: no config/examples/*.yaml found" >&2; exit 1; fi; \
	exit $$status

## test: everything CI checks
test: deps lint build
	$(CARGO) test --workspace --locked
	$(MAKE) --no-print-directory check-configs

## run: the gateway with the quickstart config (release build)
run:
	$(CARGO) run --release --locked -p sluice --bin sluice -- --config config/examples/quickstart.yaml

## bench: criterion micro-benchmarks, then the whole-process load test
bench:
	$(CARGO) bench -p sluice-benches --locked
	bash benches/load.sh
