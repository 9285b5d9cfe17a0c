# boxwalk's two entry points (see README): `make run` and `make test`.
# Both create or reuse the pinned Python venv (scripts/venv.sh), build against its libtorch, and
# are fast the second time.
SAMPLES_OUT ?= out/samples
ENV := scripts/with-venv.sh

.DEFAULT_GOAL := run
.PHONY: run test build lint browser

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

test: build browser
	$(ENV) cargo test --release --locked
	$(ENV) cargo clippy --release --locked --all-targets -- -D warnings
	cargo fmt --check

lint:
	$(ENV) cargo clippy --release --locked --all-targets -- -D warnings
	cargo fmt --check
