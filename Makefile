# boxwalk's two entry points (see README): `make run` and `make test`.
# Both create or reuse the pinned Python venv (scripts/venv.sh), build against its libtorch, and
# are fast the second time.
SAMPLES_OUT ?= out/samples
ENV := scripts/with-venv.sh

.DEFAULT_GOAL := run
.PHONY: run test build lint browser

build:
	$(ENV) cargo build --release --locked

run: build
	./target/release/boxwalk detect samples --out $(SAMPLES_OUT)

# The browser tests drive Debian's chromium (installed once by scripts/install-browser.sh).
browser:
	scripts/install-browser.sh

test: build browser
	$(ENV) cargo test --release --locked
	$(ENV) cargo clippy --release --locked --all-targets -- -D warnings
	cargo fmt --check

lint:
	$(ENV) cargo clippy --release --locked --all-targets -- -D warnings
	cargo fmt --check
