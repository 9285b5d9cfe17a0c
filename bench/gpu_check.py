"""Checks for bench/gpu-check.sh; standard library only.

  gpu_check.py parity EXPECTED_JSON REPORT_JSON TOL
      boxwalk's report (run on the device under test) against the Python reference's CPU results:
      every detection scoring above 0.4 (away from the threshold by more than TOL) on either side
      is on the other, same class, score within TOL, box within TOL of the image size; top-5
      classes equal, probabilities within TOL.
  gpu_check.py half FP32_REPORT FP16_REPORT [MIN_MATCHED=1.0 [MIN_MATCHED_OR_TIED=1.0]]
      fp32 detections scoring >= 0.3: at least MIN_MATCHED of them have an fp16 detection of the
      same class at IoU >= 0.95, and at least MIN_MATCHED_OR_TIED have that or a tie (an fp16
      box of the same object, IoU >= 0.5, scoring within 0.01: NMS kept the other of two boxes
      whose scores differ by about fp16's rounding).
  gpu_check.py util SAMPLES_FILE
      mean and max of nvidia-smi utilisation samples (one integer per line).
  gpu_check.py bias-background SRC DST K
      copies SSD300 weights (safetensors, fp32) with K added to every head's background logit
      bias, so that random weights leave as few boxes to draw as a trained detector does.
Exit status 1 and a message naming the image on any mismatch.
"""
import array
import json
import sys


def iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def by_path(report):
    return {e["path"]: e for e in json.load(open(report))["images"]}


def parity(expected, report, tol):
    ours, bad, worst = by_path(report), [], 0.0
    for im in json.load(open(expected))["images"]:
        e = ours.get(im["file"])
        if e is None or e.get("error"):
            bad.append(f"{im['file']}: missing or failed in the report")
            continue
        w, h = im["width"], im["height"]
        want = [(d["label"], d["score"], [d["box"][0] * w, d["box"][1] * h, d["box"][2] * w, d["box"][3] * h])
                for d in im["detections"]]
        got = [(d["class_index"], d["score"], d["box"]) for d in e["detections"]]
        for side, xs, ys in (("reference", want, got), ("boxwalk", got, want)):
            for label, score, box in xs:
                if score <= 0.4 + tol:
                    continue
                match = [y for y in ys if y[0] == label and abs(y[1] - score) <= tol
                         and max(abs(p - q) for p, q in zip(y[2], box)) <= tol * max(w, h)]
                if not match:
                    bad.append(f"{im['file']}: {side} detection (class {label}, {score:.4f}, {box}) has no match")
                else:
                    worst = max(worst, min(abs(y[1] - score) for y in match))
        top = [(c["index"], c["prob"]) for c in e["classification"]]
        ref = [(c["index"], c["prob"]) for c in im["top5"]]
        if [i for i, _ in top] != [i for i, _ in ref]:
            bad.append(f"{im['file']}: top-5 {top} differs from the reference {ref}")
        else:
            worst = max([worst] + [abs(p - q) for (_, p), (_, q) in zip(top, ref)])
            if any(abs(p - q) > tol for (_, p), (_, q) in zip(top, ref)):
                bad.append(f"{im['file']}: top-5 probabilities differ by more than {tol}")
    print(f"parity: {len(json.load(open(expected))['images'])} images, largest score/prob difference {worst:.2e} (tolerance {tol})")
    return bad


def half(fp32, fp16, min_matched="1.0", min_matched_or_tied="1.0"):
    """A tie: no fp16 box of the class at IoU >= 0.95, but one of the same object (IoU >= 0.5, NMS's
    own test) scoring within 0.01, i.e. NMS kept the other of two near-equal boxes."""
    a, b = by_path(fp32), by_path(fp16)
    n, ties, bad, low = 0, [], [], 1.0
    for path, e in a.items():
        for d in e.get("detections") or []:
            if d["score"] < 0.3:
                continue
            n += 1
            same = [(iou(d["box"], x["box"]), x["score"]) for x in (b[path].get("detections") or [])
                    if x["class_index"] == d["class_index"]]
            best = max((i for i, _ in same), default=0.0)
            low = min(low, best)
            if best >= 0.95:
                continue
            what = f"{path}: fp32 detection (class {d['class_index']}, {d['score']:.3f}) best fp16 IoU {best:.3f}"
            tie = [(i, sc) for i, sc in same if i >= 0.5 and abs(sc - d["score"]) <= 0.01]
            if tie:
                ties.append(f"{what}; tied with an fp16 box at IoU {tie[0][0]:.3f} scoring {tie[0][1]:.3f}")
            else:
                bad.append(what)
    if n == 0:
        return ["no fp32 detection scores >= 0.3: nothing was compared"]
    matched = n - len(ties) - len(bad)
    print(f"{n} fp32 detections scoring >= 0.3: {matched} ({100 * matched / n:.2f}%) matched by fp16 at IoU >= 0.95 "
          f"(needs {100 * float(min_matched):g}%), {len(ties)} ties, {len(bad)} neither (with the ties, needs "
          f"{100 * float(min_matched_or_tied):g}%); lowest best-match IoU {low:.4f}")
    for m in (ties + bad)[:5]:
        print("  not matched:", m)
    if matched / n >= float(min_matched) and (matched + len(ties)) / n >= float(min_matched_or_tied):
        return []
    return bad + ties

def util(samples):
    vals = [int(l) for l in open(samples) if l.strip().isdigit()]
    if vals:
        print(f"{sum(vals) / len(vals):.0f}% mean, {max(vals)}% max over {len(vals)} samples")
    else:
        print("n/a")
    return []


def bias_background(src, dst, k):
    """The conf heads' outputs are class-major (channel c * anchors + a): background is the first
    `anchors` channels, where `anchors` is the matching loc head's channels / 4."""
    raw = open(src, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    header, data = json.loads(raw[8:8 + n]), bytearray(raw[8 + n:])
    changed = 0
    for key, t in header.items():
        if not (key.startswith("conf.") and key.endswith(".bias")):
            continue
        assert t["dtype"] == "F32", f"{key}: {t['dtype']}"
        anchors = header["loc." + key[len("conf."):]]["shape"][0] // 4
        lo, hi = t["data_offsets"]
        vals = array.array("f", data[lo:hi])
        for a in range(anchors):
            vals[a] += float(k)
        data[lo:hi] = vals.tobytes()
        changed += 1
    assert changed, "no conf.N.bias tensors: not SSD300 weights"
    with open(dst, "wb") as f:
        f.write(raw[:8 + n] + bytes(data))
    return []


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    bad = {"parity": lambda: parity(args[0], args[1], float(args[2])), "half": lambda: half(*args),
           "util": lambda: util(*args), "bias-background": lambda: bias_background(*args)}[cmd]()
    for b in bad[:20]:
        print("MISMATCH", b)
    sys.exit(1 if bad else 0)
