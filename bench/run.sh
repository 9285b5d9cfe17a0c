#!/usr/bin/env bash
# Benchmark (issue 5, not part of the test suite): boxwalk end to end against the straightforward
# Python pipeline (bench/python_pipeline.py), same images, same official architectures and
# weights (the parity reference's), same thread count, in one run. Prints images/s, the ratio and
# peak RSS of each.
#
# usage: bench/run.sh [N_IMAGES=200] [THREADS=all cores] [BATCH=8]
# Not measured yet: boxwalk's forward pass alone (the floor); that comes with the engine work.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200}
threads=${2:-$(nproc)}
batch=${3:-8}
make -s build >/dev/null
venv=$(scripts/venv.sh)
py=$venv/bin/python
work=target/bench
ref=$work/reference
if [ ! -f "$ref/ssd300.safetensors" ]; then
  "$py" tests/reference/make_reference.py "$ref" >/dev/null
fi
imgs=$work/images-$n
if [ ! -d "$imgs" ]; then
  ./target/release/boxwalk synth --out "$work/synth-$n" --n "$n" --seed 77 --width 640 --height 480 >/dev/null
  mkdir -p "$imgs"
  "$py" - "$work/synth-$n/images" "$imgs" <<'PY'
import os, sys
from PIL import Image
src, dst = sys.argv[1], sys.argv[2]
for f in sorted(os.listdir(src)):
    Image.open(os.path.join(src, f)).convert("RGB").save(os.path.join(dst, f[:-4] + ".jpg"), quality=90)
PY
fi
rm -rf "$work/out-boxwalk" "$work/out-python"
./target/release/boxwalk detect "$imgs" --out "$work/out-boxwalk" --device cpu --threads "$threads" \
  --batch-size "$batch" --detector-weights "$ref/ssd300.safetensors" --classifier-weights "$ref/resnet18.safetensors" \
  --format jpeg --quiet
bw=$("$py" -c "import json,sys; r=json.load(open(sys.argv[1])); t=r['timing']; print(r['counts']['images']/t['total_s'], r['peak_rss_mib'], t['inference_s']/t['total_s'])" "$work/out-boxwalk/report.json")
pyout=$("$py" bench/python_pipeline.py "$imgs" "$work/out-python" --ssd "$ref/ssd300.safetensors" \
  --resnet "$ref/resnet18.safetensors" --threads "$threads" --batch-size "$batch")
"$py" - "$bw" "$pyout" "$n" "$threads" "$batch" <<'PY'
import json, sys
b_ips, b_rss, b_inf = map(float, sys.argv[1].split())
p = json.loads(sys.argv[2])
print(f"{sys.argv[3]} JPEGs 640x480, {sys.argv[4]} threads, batch {sys.argv[5]}, SSD300-R50 + ResNet-18 on CPU")
print(f"boxwalk end to end : {b_ips:7.2f} images/s  peak RSS {b_rss:6.0f} MiB  (inference {100*b_inf:.0f}% of wall time)")
print(f"python pipeline    : {p['images_per_s']:7.2f} images/s  peak RSS {p['peak_rss_mib']:6.0f} MiB")
print(f"boxwalk / python   : {b_ips / p['images_per_s']:7.2f}x")
PY
