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
# usage: bench/run.sh [N_IMAGES=200] [THREADS=all cores] [BATCH=8] [official|demo|both=both] [DEVICE=cpu] [ROUNDS=1]
# Prints images/s and peak RSS for each, the ratios boxwalk/Python and end-to-end/floor, and the
# CPU time per image of both with the throughput ratio it allows on THREADS cores. With ROUNDS > 1
# the three runs repeat, in alternating order, and each figure is the median over the rounds,
# each ratio the median of the rounds' ratios (a shared VM drifts by 10-20% within minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200}
threads=${2:-$(nproc)}
batch=${3:-8}
sets=${4:-both}
device=${5:-cpu}
rounds=${6:-1}
make -s build >/dev/null
venv=$(scripts/venv.sh)
py=$venv/bin/python
bin=${BOXWALK_BIN:-./target/release/boxwalk}
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
echo "$n JPEGs ($((n - 4)) at 640x480, 4 at 4000x3000), $threads threads, batch $batch, $device, $rounds round(s)"
for set in $sets; do
  if [ "$set" = official ]; then
    det=$ref/ssd300.safetensors cls=$ref/resnet18.safetensors
  else
    det=models/demo/detector.safetensors cls=models/demo/classifier.safetensors
  fi
  common=(--device "$device" --threads "$threads" --batch-size "$batch" --detector-weights "$det" --classifier-weights "$cls")
  results=$work/results-$set
  rm -rf "$results" && mkdir -p "$results"
  run_boxwalk() {
    rm -rf "$work/out-boxwalk"
    "$bin" detect "$imgs" --out "$work/out-boxwalk" "${common[@]}" --format jpeg --quiet
    cp "$work/out-boxwalk/report.json" "$results/$1.boxwalk.json"
  }
  run_floor() {
    "$bin" detect "$imgs" --out "$work/out-floor" "${common[@]}" --bench-forward >"$results/$1.floor.json"
  }
  run_python() {
    rm -rf "$work/out-python"
    "$py" bench/python_pipeline.py "$imgs" "$work/out-python" --ssd "$det" --resnet "$cls" \
      --threads "$threads" --batch-size "$batch" >"$results/$1.python.json"
  }
  for ((r = 0; r < rounds; r++)); do
    if ((r % 2 == 0)); then run_boxwalk $r; run_floor $r; run_python $r; else run_python $r; run_floor $r; run_boxwalk $r; fi
  done
  "$py" - "$set" "$results" "$threads" <<'PY'
import json, os, statistics, sys
name, results, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
runs = {}
for f in os.listdir(results):
    r, what, _ = f.split(".")
    runs.setdefault(int(r), {})[what] = json.load(open(os.path.join(results, f)))
rounds = [runs[k] for k in sorted(runs)]


def e2e(r):
    return r["boxwalk"]["counts"]["processed"] / r["boxwalk"]["timing"]["total_s"]


def cpu_per_image(r):
    """boxwalk's, Python's CPU seconds per image (boxwalk's include hashing inputs and loading
    models), and Python's wall seconds per image."""
    b, p = r["boxwalk"], r["python"]
    return b["timing"]["cpu_s"] / b["counts"]["processed"], p["cpu_s"] / p["images"], p["seconds"] / p["images"]


def med(f):
    return statistics.median(f(r) for r in rounds)


last = rounds[-1]
t = last["boxwalk"]["timing"]
print(f"[{name}]" + (f"  (medians over {len(rounds)} rounds)" if len(rounds) > 1 else ""))
print(f"  boxwalk end to end : {med(e2e):8.2f} images/s  peak RSS {med(lambda r: r['boxwalk']['peak_rss_mib']):6.0f} MiB"
      f"  (load {t['load_models_s']:.1f} s, inference {100 * t['inference_s'] / t['total_s']:.0f}% of wall time"
      f" in {t.get('model_lanes', 1)} lane(s), summed)")
print(f"  boxwalk models only: {med(lambda r: r['floor']['images_per_s']):8.2f} images/s  (the floor, pre-decoded batches)")
print(f"  python pipeline    : {med(lambda r: r['python']['images_per_s']):8.2f} images/s"
      f"  peak RSS {med(lambda r: r['python']['peak_rss_mib']):6.0f} MiB")
if len(rounds) > 1:
    print("  per round, boxwalk / python: " + ", ".join(f"{e2e(r) / r['python']['images_per_s']:.2f}" for r in rounds))
print(f"  boxwalk / python   : {med(lambda r: e2e(r) / r['python']['images_per_s']):8.2f}x throughput")
print(f"  end to end / floor : {med(lambda r: r['floor']['images_per_s'] / e2e(r)):8.2f}x time")
# On C cores boxwalk can at best run at C / (its CPU per image), so against Python's time per
# image its ratio is bounded by C * (python s/image) / (boxwalk CPU s/image).
ours, theirs = med(lambda r: cpu_per_image(r)[0]), med(lambda r: cpu_per_image(r)[1])
bound = med(lambda r: threads * cpu_per_image(r)[2] / cpu_per_image(r)[0])
print(f"  CPU per image      : boxwalk {1000 * ours:6.1f} ms, python {1000 * theirs:6.1f} ms"
      f"  (bound on {threads} threads: {bound:.2f}x python)")
PY
done
