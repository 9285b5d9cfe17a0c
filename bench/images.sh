#!/usr/bin/env bash
# Writes the benchmark image set: N JPEGs (quality 90) of boxwalk synth scenes, N-LARGE of them
# at 640×480 and LARGE at 4000×3000, into DIR (skipped when DIR already holds them).
#
# usage: bench/images.sh BOXWALK PYTHON DIR N [LARGE=4]
set -euo pipefail
bin=$1 py=$2 dir=$3 n=$4 large=${5:-4}
[ -f "$dir/.done" ] && exit 0
rm -rf "$dir" "$dir.synth"
"$bin" synth --out "$dir.synth/small" --n $((n - large)) --seed 77 --width 640 --height 480 >/dev/null
[ "$large" -gt 0 ] && "$bin" synth --out "$dir.synth/large" --n "$large" --seed 78 --width 4000 --height 3000 >/dev/null
mkdir -p "$dir"
"$py" - "$dir.synth" "$dir" <<'PY'
import os, sys
from PIL import Image
src, dst = sys.argv[1], sys.argv[2]
for kind in sorted(os.listdir(src)):
    d = os.path.join(src, kind, "images")
    for f in sorted(os.listdir(d)):
        Image.open(os.path.join(d, f)).convert("RGB").save(os.path.join(dst, f"{kind}-{f[:-4]}.jpg"), quality=90)
PY
rm -rf "$dir.synth"
touch "$dir/.done"
