#!/usr/bin/env bash
# Installs what the browser tests drive (tests/browser.rs): Debian's chromium and chromium-driver.
# Does nothing when both are present; needs root (or sudo) and apt otherwise.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
sudo=
[ "$(id -u)" -eq 0 ] || sudo=sudo
if ! command -v apt-get >/dev/null; then
  echo "boxwalk: the browser tests need chromium and chromedriver; install them (BOXWALK_CHROMIUM / BOXWALK_CHROMEDRIVER name other paths)" >&2
  exit 1
fi
echo "boxwalk: installing chromium and chromium-driver for the browser tests" >&2
$sudo apt-get update -qq >&2 || true
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver >&2
