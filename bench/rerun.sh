#!/usr/bin/env bash
# Benchmark (not part of the test suite): what a nightly rerun over an unchanged archive costs.
# A real run over 2,000 small generated images is replicated to N inputs (copies of those files
# under d01/, d02/, … with their report entries and hard-linked copies), then boxwalk reruns
# the tree three times:
#   1. the first rerun, which reads and hashes every input once and records its stat;
#   2. the unchanged rerun: inputs whose size, mtime, inode and ctime are those recorded are not
#      opened;
#   3. the same with --rehash, which reads every input, as every rerun did before.
# Prints wall time and bytes read (`rchar` of /proc/self/io, from the report) of each, and the
# ratios of 3 to 2. The page cache is warm for all three: on a cold disk the reads cost more.
#
# usage: bench/rerun.sh [N=100000]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
make -s build >/dev/null
bin=${BOXWALK_BIN:-$PWD/target/release/boxwalk}
work=$(mktemp -d "${TMPDIR:-/tmp}/boxwalk-rerun.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$bin" synth -o "$work/set" -n 2000 --width 32 --height 32 >/dev/null
mkdir -p "$work/in"
mv "$work/set/images" "$work/in/d00"
detect() { "$bin" detect "$work/in" --out "$work/out" --device cpu --batch-size 64 --quiet --no-html "$@"; }
detect
python3 - "$work" "$n" <<'PY'
import json, os, sys
work, n = sys.argv[1], int(sys.argv[2])
report_path = f"{work}/out/report.json"
report = json.load(open(report_path))
base = report["images"]
images = []
for k in range((n + len(base) - 1) // len(base)):
    for e in base:
        if len(images) == n:
            break
        name = e["path"].split("/", 1)[1]
        rel = f"d{k:02d}/{name}"
        if k > 0:
            os.makedirs(f"{work}/in/d{k:02d}", exist_ok=True)
            os.makedirs(f"{work}/out/d{k:02d}", exist_ok=True)
            with open(f"{work}/in/d00/{name}", "rb") as src, open(f"{work}/in/{rel}", "wb") as dst:
                dst.write(src.read())
            os.link(f"{work}/out/{e['output']}", f"{work}/out/{rel}")
        images.append(dict(e, path=rel, output=rel))
report["images"] = images
report["counts"]["images"] = report["counts"]["ok"] = len(images)
json.dump(report, open(report_path, "w"))
PY
# Files changed within a few seconds of a walk get no recorded stat (their timestamps could hide
# a change in the same tick): let them settle.
sleep 4
measure() {
  local label=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  detect "$@"
  t1=$(date +%s.%N)
  python3 - "$work/out/report.json" "$label" "$t0" "$t1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
c, t = r["counts"], r["timing"]
wall = float(sys.argv[4]) - float(sys.argv[3])
print(f"{sys.argv[2]:<16} {c['images']:>8} images {c['processed']:>3} processed {wall:8.2f} s wall "
      f"{t['read_bytes'] / 1e6:10.1f} MB read")
print(f"{wall} {t['read_bytes']}", file=open(sys.argv[1] + ".m", "w"))
PY
  cp "$work/out/report.json.m" "$work/$label.m"
}
measure first-rerun
measure unchanged
measure rehash --rehash
read -r ws bs < "$work/unchanged.m"
read -r wr br < "$work/rehash.m"
inputs=$(du -sb --apparent-size "$work/in" | cut -f1)
echo "report.json: $(( $(stat -c %s "$work/out/report.json") / 1000000 )) MB, read by every rerun"
python3 -c "
ws, bs, wr, br, inputs = $ws, $bs, $wr, $br, $inputs
print(f'inputs: {inputs / 1e6:.1f} MB in $n files')
print(f'rerun: unchanged {ws:.2f} s, {bs / 1e6:.1f} MB read; --rehash {wr:.2f} s, {br / 1e6:.1f} MB read; '
      f'ratio {wr / ws:.2f}x time, {br / max(bs, 1):.2f}x bytes')
"
