#!/usr/bin/env bash
# Benchmark (issue 5; not part of the test suite). On one image set, one machine and one thread
# count, in one run, for each model set:
#   1. boxwalk end to end (annotated JPEGs + report.json), wall time from its report (model
#      loading and input hashing included);
#   2. boxwalk's models alone on pre-decoded batches (`detect --bench-forward`): the floor;
#   3. the straightforward Python pipeline (bench/python_pipeline.py) with the same libtorch,
#      architectures, weights, decoding and labels (model loading excluded from its time).
# Model sets: `official` = NVIDIA SSD300-ResNet50 + torchvision ResNet-18 (the parity reference's
# random weights: same architectures and cost as the real ones), `demo` = models/demo.
#
# usage: bench/run.sh [N_IMAGES=200] [THREADS=all cores] [BATCH=8] [official|demo|both=both] [DEVICE=cpu]
# Prints images/s and peak RSS for each, the ratios boxwalk/Python and end-to-end/floor, and the
# CPU time per image of both with the throughput ratio it allows on THREADS cores.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200}
threads=${2:-$(nproc)}
batch=${3:-8}
sets=${4:-both}
device=${5:-cpu}
make -s build >/dev/null
venv=$(scripts/venv.sh)
py=$venv/bin/python
bin=./target/release/boxwalk
work=target/bench
# Keyed by the reference scripts, so that a changed reference is never read from an old run.
ref=$work/reference-$(cat tests/reference/make_reference.py tests/reference/ssd_reference.py | sha256sum | cut -c1-16)
[ -f "$ref/done" ] || { "$py" tests/reference/make_reference.py "$ref" >/dev/null && touch "$ref/done"; }
imgs=$work/images-$n
bench/images.sh "$bin" "$py" "$imgs" "$n"

case $sets in
  both) sets="official demo" ;;
  official | demo) ;;
  *) echo "unknown model set $sets (official, demo or both)" >&2; exit 1 ;;
esac
echo "$n JPEGs ($((n - 4)) at 640x480, 4 at 4000x3000), $threads threads, batch $batch, $device"
for set in $sets; do
  if [ "$set" = official ]; then
    det=$ref/ssd300.safetensors cls=$ref/resnet18.safetensors
  else
    det=models/demo/detector.safetensors cls=models/demo/classifier.safetensors
  fi
  common=(--device "$device" --threads "$threads" --batch-size "$batch" --detector-weights "$det" --classifier-weights "$cls")
  rm -rf "$work/out-boxwalk" "$work/out-python"
  "$bin" detect "$imgs" --out "$work/out-boxwalk" "${common[@]}" --format jpeg --quiet
  floor=$("$bin" detect "$imgs" --out "$work/out-floor" "${common[@]}" --bench-forward)
  pyout=$("$py" bench/python_pipeline.py "$imgs" "$work/out-python" --ssd "$det" --resnet "$cls" \
    --threads "$threads" --batch-size "$batch")
  "$py" - "$set" "$work/out-boxwalk/report.json" "$floor" "$pyout" "$threads" <<'PY'
import json, sys
name, report, floor, py = sys.argv[1], json.load(open(sys.argv[2])), json.loads(sys.argv[3]), json.loads(sys.argv[4])
t = report["timing"]
e2e = report["counts"]["processed"] / t["total_s"]
print(f"[{name}]")
print(f"  boxwalk end to end : {e2e:8.2f} images/s  peak RSS {report['peak_rss_mib']:6.0f} MiB"
      f"  (load {t['load_models_s']:.1f} s, inference {100 * t['inference_s'] / t['total_s']:.0f}% of wall time)")
print(f"  boxwalk models only: {floor['images_per_s']:8.2f} images/s  (the floor, pre-decoded batches)")
print(f"  python pipeline    : {py['images_per_s']:8.2f} images/s  peak RSS {py['peak_rss_mib']:6.0f} MiB")
print(f"  boxwalk / python   : {e2e / py['images_per_s']:8.2f}x throughput")
print(f"  end to end / floor : {floor['images_per_s'] / e2e:8.2f}x time")
# CPU cost per image (boxwalk's includes hashing inputs and loading models). On C cores boxwalk
# can at best run at C / (its CPU per image), so against Python's time per image its ratio is
# bounded by C * (python s/image) / (boxwalk CPU s/image).
n, threads = report["counts"]["processed"], int(sys.argv[5])
ours, theirs, py_wall = t["cpu_s"] / n, py["cpu_s"] / py["images"], py["seconds"] / py["images"]
print(f"  CPU per image      : boxwalk {1000 * ours:6.1f} ms, python {1000 * theirs:6.1f} ms"
      f"  (bound on {threads} threads: {threads * py_wall / ours:.2f}x python)")
PY
done
