#!/usr/bin/env bash
# Creates (or reuses) the Python environment boxwalk builds against and its parity tests run in.
#
# libtorch comes from the pinned PyPI torch wheel, so the venv is large (~4.5 GB). It lives under the
# user's cache dir, keyed by the pinned versions, and is shared by every clone (CI included): the
# second call only checks a stamp file. Prints the venv path on stdout.
set -euo pipefail

TORCH_VERSION=2.11.0
TORCHVISION_VERSION=0.26.0
PY_EXTRA=(safetensors==0.7.0 packaging==25.0 numpy==2.3.5 pillow==12.0.0 pycocotools==2.0.11 selenium==4.45.0)

py=${BOXWALK_PYTHON:-python3}
pyver=$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
cache=${XDG_CACHE_HOME:-$HOME/.cache}
venv=${BOXWALK_VENV:-$cache/boxwalk/venv-py$pyver-torch$TORCH_VERSION-tv$TORCHVISION_VERSION}
want="torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION ${PY_EXTRA[*]}"
stamp=$venv/.boxwalk-stamp

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$venv"
  exit 0
fi

mkdir -p "$(dirname "$venv")"
# One installer at a time: two clones setting up at once share the same venv.
exec 9>"$venv.lock"
flock 9
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$venv"
  exit 0
fi

echo "boxwalk: creating Python venv at $venv (torch $TORCH_VERSION, ~4.5 GB, once per machine)" >&2
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" "${PY_EXTRA[@]}" >&2
"$venv/bin/python" -c "import torch, torchvision, safetensors" >&2
echo "$want" >"$stamp"
echo "$venv"
