#!/usr/bin/env bash
# The GPU check (issue 5), one script for a machine with CUDA and a python3 that has torch 2.11,
# torchvision 0.26, numpy, pillow and safetensors (no cargo needed: carry target/release/boxwalk).
#   1. parity on the device: the Python reference's CPU results (tests/reference, generated here
#      with the same seeds) against boxwalk on CUDA in fp32, within 1e-3;
#   2. fp16: every fp32 detection scoring >= 0.3 matched by a --half detection at IoU >= 0.95;
#   3. throughput: end to end (annotated JPEGs + report; the whole run, and after model loading)
#      and the models-only floor on N 640×480 JPEGs (plus 4 at 4000×3000) at batch 1, 8, 32, 64,
#      with and without --half, with the GPU's mean utilisation (nvidia-smi) during each end-to-end
#      run;
#   4. the demo models end to end on all the machine's CPU cores against the Python pipeline
#      (bench/run.sh's comparison, at a core count the build machines do not have).
#
# usage: bench/gpu-check.sh [--cpu] [N]
#   --cpu  runs the same steps on the CPU (parity only in fp32, batches 1 and 8, N default 24),
#          so the script can be exercised without a GPU.
# Exit status: non-zero when a parity or fp16 check fails.
set -uo pipefail
cd "$(dirname "$0")/.."
dev=cuda batches="1 8 32 64" halves="off on" n=2000
if [ "${1:-}" = --cpu ]; then
  dev=cpu batches="1 8" halves="off" n=24
  shift
fi
n=${1:-$n}
py=${BOXWALK_PYTHON:-python3}
bin=${BOXWALK_BIN:-target/release/boxwalk}
work=${BOXWALK_GPU_WORK:-target/gpu-check}
mkdir -p "$work"
# The binary finds libtorch through its RUNPATH (the build machine's venv); elsewhere, python3's.
if ! "$bin" --version >/dev/null 2>&1; then
  LD_LIBRARY_PATH=$("$py" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
  export LD_LIBRARY_PATH
fi
"$bin" --version || exit 2
[ "$dev" = cuda ] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
status=0
fail() { echo "FAILED: $*"; status=1; }

echo "== 1. parity, $dev fp32 against the CPU reference"
# Keyed by the reference scripts, so that a changed reference is never read from an old run.
ref=$work/reference-$(cat tests/reference/make_reference.py tests/reference/ssd_reference.py | sha256sum | cut -c1-16)
[ -f "$ref/done" ] || { "$py" tests/reference/make_reference.py "$ref" >/dev/null && touch "$ref/done"; } || exit 2
weights=(--detector-weights "$ref/ssd300.safetensors" --classifier-weights "$ref/resnet18.safetensors")
rm -rf "$work/p32" "$work/p16"
"$bin" detect "$ref/images" --out "$work/p32" --device "$dev" --batch-size 4 --threshold 0.25 "${weights[@]}" --quiet \
  || fail "detect on $dev"
"$py" bench/gpu_check.py parity "$ref/expected.json" "$work/p32/report.json" 1e-3 || fail "fp32 parity on $dev"
if [ "$dev" = cuda ]; then
  echo "== 2. fp16 against fp32 on $dev"
  "$bin" detect "$ref/images" --out "$work/p16" --device "$dev" --half --batch-size 4 --threshold 0.25 "${weights[@]}" \
    --quiet || fail "detect --half"
  "$py" bench/gpu_check.py half "$work/p32/report.json" "$work/p16/report.json" || fail "fp16 against fp32"
fi

echo "== 3. throughput on $dev: $n JPEGs, SSD300-R50 + ResNet-18, annotated JPEG output"
imgs=$work/images-$n
bench/images.sh "$bin" "$py" "$imgs" "$n" || exit 2
# end-to-end/s counts the whole run; after-load/s leaves out loading the models (on CUDA that
# includes creating the context), which a short run cannot amortise and a nightly one does.
printf '%-6s %-5s %14s %14s %14s %10s %14s\n' batch half "end-to-end/s" "after-load/s" "models-only/s" "e2e/floor" \
  "GPU util"
for b in $batches; do
  for h in $halves; do
    flags=("${weights[@]}" --device "$dev" --batch-size "$b")
    [ "$h" = on ] && flags+=(--half)
    rm -rf "$work/out"
    : >"$work/util"
    smi=
    if [ "$dev" = cuda ]; then
      nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -lms 200 >"$work/util" &
      smi=$!
    fi
    "$bin" detect "$imgs" --out "$work/out" --format jpeg --quiet "${flags[@]}" || fail "detect batch $b half $h"
    [ -n "$smi" ] && kill "$smi" 2>/dev/null
    util=$("$py" bench/gpu_check.py util "$work/util")
    read -r e2e after_load < <("$py" -c 'import json,sys; r=json.load(open(sys.argv[1])); n, t=r["counts"]["processed"], r["timing"]
print(n / t["total_s"], n / (t["total_s"] - t["load_models_s"]))' "$work/out/report.json")
    floor=$("$bin" detect "$imgs" --out "$work/floor" --bench-forward "${flags[@]}" \
      | "$py" -c 'import json,sys; print(json.load(sys.stdin)["images_per_s"])')
    printf '%-6s %-5s %14.1f %14.1f %14.1f %10.2f %14s\n' "$b" "$h" "$e2e" "$after_load" "$floor" \
      "$("$py" -c "print($floor / $e2e)")" "$util"
  done
done

echo "== 4. CPU end to end on all $(nproc) cores: demo models, boxwalk against the Python pipeline"
demo=(--detector-weights models/demo/detector.safetensors --classifier-weights models/demo/classifier.safetensors)
rm -rf "$work/out" "$work/out-python"
"$bin" detect "$imgs" --out "$work/out" --format jpeg --quiet --device cpu --threads "$(nproc)" "${demo[@]}" \
  || fail "detect on the CPU"
"$py" bench/python_pipeline.py "$imgs" "$work/out-python" --ssd models/demo/detector.safetensors \
  --resnet models/demo/classifier.safetensors --threads "$(nproc)" >"$work/python.json" || fail "python pipeline"
"$py" - "$work/out/report.json" "$work/python.json" <<'PY'
import json, sys
r, p = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
t = r["timing"]
ours = r["counts"]["processed"] / t["total_s"]
print(f"boxwalk {ours:.1f} images/s ({1000 * t['cpu_s'] / r['counts']['processed']:.1f} ms CPU each), "
      f"python {p['images_per_s']:.1f} images/s: {ours / p['images_per_s']:.2f}x")
PY
exit $status
