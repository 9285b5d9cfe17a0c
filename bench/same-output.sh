#!/usr/bin/env bash
# Runs one boxwalk binary over a fixed set of scenarios (the samples, a generated scene set with
# broken files, shards and merge, render, an incremental rerun) and writes every output under DIR,
# with each command's exit code and the reports stripped of times. Run it for two binaries and
# compare the folders with `diff -r` to check that a change leaves behaviour byte for byte alone.
#
#   bench/same-output.sh BINARY DIR
set -uo pipefail
bin=$(realpath "$1"); dir=$2
repo=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$dir"; mkdir -p "$dir"; cd "$dir"
codes=$dir/exit-codes
# stderr without the progress rates and with the demo models' folder (the build's source tree) named alike.
run() {
  local name=$1; shift
  "$bin" "$@" >/dev/null 2>"$name.raw"; echo "$name $?" >>"$codes"
  grep -v ' images/s' "$name.raw" | sed -E 's#[^ ]*/models/demo#MODELS/demo#g' >"$name.stderr"; rm "$name.raw"
}

# Inputs: the samples, and synthetic scenes (deterministic) with a broken JPEG and a text file.
cp -r "$repo/samples" in-samples
"$bin" synth --out synth --n 12 --seed 3 --width 200 --height 150 >/dev/null
mkdir -p in-mixed/sub && cp synth/images/*.jpg in-mixed/sub/ 2>/dev/null || cp synth/images/* in-mixed/sub/
head -c 300 "$(ls in-mixed/sub/* | head -1)" >in-mixed/broken.jpg
echo "not an image" >in-mixed/notes.txt

run default detect in-samples --out out/default --device cpu --threads 2
run options detect in-samples --out out/options --device cpu --threads 2 --format png --threshold 0.2 \
  --classify-crops --csv out/options.csv --coco-json out/options.coco.json --batch-size 3
run classes detect in-mixed --out out/classes --device cpu --threads 2 --no-classify --classes circle,square --strict
run mixed detect in-mixed --out out/mixed --device cpu --threads 2 --top-k 3 --jpeg-quality 70
run rerun detect in-mixed --out out/mixed --device cpu --threads 2 --top-k 3 --jpeg-quality 70
run shard0 detect in-mixed --out out/shard0 --device cpu --threads 2 --shard 0/2
run shard1 detect in-mixed --out out/shard1 --device cpu --threads 2 --shard 1/2
run merge merge out/shard0 out/shard1 --out out/merged
run render render out/default --out out/render --threshold 0.6 --no-scores --line-width 4
run render-low render out/options --out out/render-low --threshold 0.1 --classes circle
run usage detect in-samples --out out/usage --device cpu --threshold 2
run no-weights detect in-samples --out out/no-weights --device cpu --detector-weights /nonexistent.safetensors

# Times, durations and memory differ from run to run: drop them from every report.
for r in $(find out -name report.json); do
  python3 - "$r" <<'PY'
import json, sys
p = sys.argv[1]; r = json.load(open(p))
for k in ("started", "finished", "timing", "peak_rss_mib"):
    r.pop(k, None)
for m in r.get("models", []):  # the demo models' folder is the build's source tree
    m["file"] = m["file"].split("/models/demo/")[-1]
json.dump(r, open(p + ".stable", "w"), indent=1, sort_keys=True)
PY
  rm "$r"
done
# The contact sheet embeds the report: keep it only without its times.
for p in $(find out -name index.html); do
  sed -E 's/"(started|finished)": ?"[^"]*"//g; s/"timing": ?\{[^}]*\}//g; s/"peak_rss_mib": ?[0-9.]+//g; s/"(total_s|cpu_s|[a-z_]+_s)": ?[0-9.e+-]+//g' "$p" >"$p.stable"
  rm "$p"
done
sort -o "$codes" "$codes"
cat "$codes"
