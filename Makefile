# boxwalk's two entry points (see README): `make run` and `make test`.
# Both create or reuse the pinned Python venv (scripts/venv.sh), build against its libtorch, and
# are fast the second time.
SAMPLES_OUT ?= out/samples
ENV := scripts/with-venv.sh

.DEFAULT_GOAL := run
.PHONY: run test build lint browser slurm gpu-carry

# libjpeg-turbo (the JPEG codec) is built from the turbojpeg crate's bundled source: cmake and nasm.
build:
	scripts/need.sh "building libjpeg-turbo" cmake:cmake nasm:nasm
	$(ENV) cargo build --release --locked

run: build
	./target/release/boxwalk detect samples --out $(SAMPLES_OUT)

# The browser tests drive Debian's chromium (installed once; BOXWALK_CHROMIUM and
# BOXWALK_CHROMEDRIVER name others).
browser:
	scripts/need.sh "the browser tests" chromium:chromium chromedriver:chromium-driver

# tests/slurm.rs starts a one-node Slurm of its own on Debian's slurm-wlm and munge (installed
# once; the daemons run only during the test).
slurm:
	scripts/need.sh "the Slurm test" slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client munged:munge mungekey:munge

test: build browser slurm
	$(ENV) cargo test --release --locked
	$(ENV) cargo clippy --release --locked --all-targets -- -D warnings
	cargo fmt --check

lint:
	$(ENV) cargo clippy --release --locked --all-targets -- -D warnings
	cargo fmt --check

# What bench/gpu-check.sh runs on a GPU machine besides the tree: the binary and, as
# target/release/unit-tests, the library's unit tests (some check the GPU where there is one).
gpu-carry: build
	$(ENV) cargo test --release --locked --lib --no-run --message-format=json \
	  | python3 -c 'import json, sys; print(next(j["executable"] for j in map(json.loads, sys.stdin) if j.get("executable") and j["profile"]["test"]))' \
	  | xargs -I{} cp {} target/release/unit-tests
