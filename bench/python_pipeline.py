"""The straightforward Python pipeline boxwalk is compared with (issue 5): the same job with the
same libtorch, written the way a Python user would.

PIL decode (EXIF applied) -> torchvision-style preprocessing (the ops boxwalk runs) -> the same
SSD300 / ResNet-18 architectures with the same weights (tests/reference) -> NVIDIA's decoding ->
PIL drawing of the same labels -> JPEG files -> one JSON report.

usage: python_pipeline.py IMAGES_DIR OUT_DIR --ssd FILE --resnet FILE [--batch-size 8] [--threads N]
A boxwalk model card beside a weight file (boxwalk's demo models) selects its architecture and names.
Prints one JSON line: images, seconds, images_per_s, cpu_s (user + system CPU time of the timed
part, all threads), peak_rss_mib.
"""
import argparse
import json
import os
import resource
import sys
import time

import numpy as np
import torch
import torchvision
from PIL import Image, ImageDraw, ImageFont, ImageOps
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
from ssd_reference import SSD300, Backbone, Encoder, classifier_input, detector_input, slim_resnet18  # noqa: E402


def card(weights):
    """boxwalk's model card beside `weights` (X.safetensors -> X.json), if any."""
    path = os.path.splitext(weights)[0] + ".json"
    return json.load(open(path)) if os.path.exists(path) else None


def load_models(ssd_file, resnet_file):
    """The architectures and class names the weights are for: NVIDIA's SSD300-R50 on COCO and
    torchvision's ResNet-18 on ImageNet, or what a model card (boxwalk's demo models) says."""
    root = os.path.join(HERE, "..", "models")
    det_card, cls_card = card(ssd_file), card(resnet_file)
    if det_card:
        names = [c["name"] for c in det_card["classes"]]
        div = det_card["width_divisor"]
        ssd = SSD300(Backbone("resnet18", div), label_num=len(names) + 1)
    else:
        names = [l.split("\t")[2].strip() for l in open(os.path.join(root, "coco_classes.tsv")) if not l.startswith("#")]
        ssd = SSD300()
    if cls_card:
        cls_names = [c["name"] for c in cls_card["classes"]]
        res = slim_resnet18(cls_card["width_divisor"], len(cls_names))
    else:
        cls_names = [l.strip() for l in open(os.path.join(root, "imagenet_classes.txt"))]
        res = torchvision.models.resnet18(weights=None)
    ssd.load_state_dict(load_file(ssd_file))
    res.load_state_dict(load_file(resnet_file))
    return ssd.eval(), res.eval(), names, cls_names


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("images")
    ap.add_argument("out")
    ap.add_argument("--ssd", required=True)
    ap.add_argument("--resnet", required=True)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--threshold", type=float, default=0.4)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    ssd, res, coco, imagenet = load_models(a.ssd, a.resnet)
    font = ImageFont.truetype(os.path.join(HERE, "..", "fonts", "DejaVuSans.ttf"), 14)
    enc = Encoder()

    files = sorted(f for f in os.listdir(a.images) if f.lower().endswith((".jpg", ".jpeg", ".png")))
    report = []
    t0, cpu0 = time.perf_counter(), cpu_s()
    with torch.no_grad():
        for i in range(0, len(files), a.batch_size):
            names = files[i:i + a.batch_size]
            imgs = [ImageOps.exif_transpose(Image.open(os.path.join(a.images, n))).convert("RGB") for n in names]
            u8 = [torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).unsqueeze(0) for im in imgs]
            locs, confs = ssd(torch.cat([detector_input(u) for u in u8]))
            probs = torch.softmax(res(torch.cat([classifier_input(u) for u in u8])), 1)
            boxes, scores = enc.scale_back(locs, confs)
            for k, (name, im) in enumerate(zip(names, imgs)):
                w, h = im.size
                dets = [(l, s, b) for l, s, b in enc.decode_single(boxes[k], scores[k]) if s > a.threshold]
                top = torch.topk(probs[k], 5)
                draw = ImageDraw.Draw(im)
                for l, s, b in dets:
                    box = [b[0] * w, b[1] * h, b[2] * w, b[3] * h]
                    text = f"{coco[l - 1]} {s:.2f}"
                    draw.rectangle(box, outline=(255, 0, 0), width=2)
                    tb = draw.textbbox((box[0], box[1]), text, font=font)
                    draw.rectangle(tb, fill=(255, 0, 0))
                    draw.text((box[0], box[1]), text, fill=(255, 255, 255), font=font)
                banner = f"{imagenet[int(top.indices[0])]} {float(top.values[0]):.2f}"
                draw.text((4, h - 18), banner, fill=(255, 255, 255), font=font)
                out = os.path.join(a.out, os.path.splitext(name)[0] + ".jpg")
                im.save(out, quality=90)
                report.append({"path": name, "width": w, "height": h,
                               "detections": [{"label": coco[l - 1], "score": s, "box": [b[0] * w, b[1] * h, b[2] * w, b[3] * h]}
                                              for l, s, b in dets],
                               "classification": [{"index": int(ix), "prob": float(p)} for p, ix in zip(top.values, top.indices)]})
    with open(os.path.join(a.out, "report.json"), "w") as f:
        json.dump({"images": report}, f)
    secs, cpu = time.perf_counter() - t0, cpu_s() - cpu0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"images": len(files), "seconds": secs, "images_per_s": len(files) / secs, "cpu_s": cpu,
                      "peak_rss_mib": rss}))


def cpu_s():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


if __name__ == "__main__":
    main()
