# boxwalk's two entry points (see README): `make run` and `make test`.
# Both create or reuse the pinned Python venv (scripts/venv.sh), build against its libtorch, and
# are fast the second time.
SHELL := /bin/bash
.DEFAULT_GOAL := run
SAMPLES_OUT ?= out/samples

VENV = $(shell scripts/venv.sh)
# torch-sys finds libtorch through the venv's python (LIBTORCH_USE_PYTORCH=1).
CARGO_ENV = export VIRTUAL_ENV="$(VENV)" PATH="$(VENV)/bin:$$PATH" LIBTORCH_USE_PYTORCH=1 BOXWALK_PYTHON="$(VENV)/bin/python";

.PHONY: run test build lint venv
venv:
	@scripts/venv.sh >/dev/null

build: venv
	@$(CARGO_ENV) cargo build --release --locked

run: build
	./target/release/boxwalk detect samples --out $(SAMPLES_OUT)

test: venv
	@$(CARGO_ENV) cargo build --release --locked && \
	  cargo test --release --locked && \
	  cargo clippy --release --locked --all-targets -- -D warnings && \
	  cargo fmt --check

lint: venv
	@$(CARGO_ENV) cargo clippy --release --locked --all-targets -- -D warnings && cargo fmt --check
