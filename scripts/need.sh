#!/usr/bin/env bash
# Installs the Debian packages of the commands that are missing, for WHAT (said in messages).
# Does nothing when every command is on PATH; needs apt and root (or sudo) otherwise.
# usage: scripts/need.sh WHAT COMMAND:PACKAGE...
set -euo pipefail
what=$1
shift
missing=()
for pair in "$@"; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "boxwalk: install these packages for $what: ${missing[*]}" >&2
  exit 1
fi
sudo=
[ "$(id -u)" -eq 0 ] || sudo=sudo
echo "boxwalk: installing ${missing[*]} for $what" >&2
$sudo apt-get update -qq >&2 || true
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
