"""Writes the parity-test fixtures into OUT:

- `ssd300.safetensors`, `resnet18.safetensors`: deterministic random weights under the official
  key names (BatchNorm running statistics randomised so eval mode matters; the conf head scaled
  so that some scores exceed 0.4);
- `images/*.png`: deterministic test images of odd sizes;
- `expected.safetensors`: per image the preprocessed inputs, raw locs/confs and classifier logits;
- `expected.json`: per image the decoded detections and the classifier's top-5;
- `jpegs/*.jpg` and `jpegs.safetensors`: JPEGs saved by PIL in the variants cameras and tools
  write (4:2:0, 4:4:4, 4:2:2, progressive, greyscale, odd sizes) and the pixels PIL decodes from
  them, which the Python pipeline feeds its models.

Usage: python make_reference.py OUT
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ssd_reference import STD, SSD300, Encoder, _normalize, classifier_input, detector_input  # noqa: E402

SIZES = [(300, 300), (37, 23), (640, 480), (481, 359), (97, 511), (1000, 41)]


def randomise_bn(model, gen):
    """Random affine parameters and running statistics, drawn around the batch statistics of a
    calibration pass so that activations stay in range through deep stacks."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:
        m.momentum = 1.0  # running stats := this batch's stats
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 300, 300, generator=gen))
    model.eval()
    with torch.no_grad():
        for m in bns:
            c = m.num_features
            m.running_mean.add_(0.2 * torch.randn(c, generator=gen) * m.running_var.sqrt())
            m.running_var.mul_(torch.empty(c).uniform_(0.5, 2.0, generator=gen))
            m.weight.copy_(torch.empty(c).uniform_(0.5, 1.5, generator=gen))
            m.bias.copy_(0.2 * torch.randn(c, generator=gen))
            m.momentum = 0.1
            m.num_batches_tracked.fill_(1000)


def make_ssd(gen, conf_std=1.0, loc_std=0.7, bg_bias=4.0):
    """Head weights are rescaled so that, on a calibration image, logits have std `conf_std`
    (a mix of confident and weak scores) and offsets std `loc_std` (boxes stay plausible)."""
    torch.manual_seed(1)
    ssd = SSD300()
    randomise_bn(ssd, gen)
    calib = detector_input(torch.from_numpy(np.asarray(make_image(300, 300, seed=99)).copy()).permute(2, 0, 1)[None])
    with torch.no_grad():
        for c in ssd.conf:
            c.bias.copy_(0.2 * torch.randn(c.bias.shape, generator=gen))
        feats = [ssd.feature_extractor(calib)]
        for b in ssd.additional_blocks:
            feats.append(b(feats[-1]))
        for f, c, l in zip(feats, ssd.conf, ssd.loc):
            c.weight.mul_(conf_std / F.conv2d(f, c.weight, padding=1).std())
            l.weight.mul_(loc_std / F.conv2d(f, l.weight, padding=1).std())
            # Background (class 0: channels 0..nd-1 in the class-major layout) dominates most boxes.
            nd = c.out_channels // ssd.label_num
            c.bias[:nd] += bg_bias
    return ssd.eval()


def make_resnet18(gen):
    torch.manual_seed(2)
    net = torchvision.models.resnet18(weights=None)
    randomise_bn(net, gen)
    with torch.no_grad():
        net.fc.weight.mul_(8.0)
    return net.eval()


def make_image(w, h, seed):
    """Gradients, a few filled shapes and noise: varied content at any size."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([
        255 * xx / max(w - 1, 1),
        255 * yy / max(h - 1, 1),
        127 + 120 * np.sin((xx + yy) / max(w, h) * 6.28 * rng.uniform(1, 4)),
    ], -1)
    for _ in range(4):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        x1, y1 = min(w, x0 + rng.integers(1, w + 1)), min(h, y0 + rng.integers(1, h + 1))
        img[y0:y1, x0:x1] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 12, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def check_against_pil(name, img, det_in, cls_in, preset):
    """The published protocols resize PIL images: NVIDIA's eval `Resize((300, 300))`, torchvision's
    preset on a PIL image. Our uint8 kernel must give PIL's pixels within one level, on all but a
    few (int16 against PIL's 22-bit fixed-point weights)."""
    level = 1.0 / 255 / min(STD)
    pil_det = detector_input_from_pil(img.resize((300, 300), Image.BILINEAR))
    for what, ours, pil in [("detector", det_in, pil_det), ("classifier", cls_in, preset(img).unsqueeze(0))]:
        d = (ours - pil).abs()
        off = (d > 1e-4).float().mean().item()
        assert d.max() <= level * 1.01 and off <= 0.02, (name, what, d.max().item(), off)


def detector_input_from_pil(resized):
    """NVIDIA's eval after its PIL resize: ToTensor (/255) and Normalize."""
    x = torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1).unsqueeze(0).float() / 255.0
    return _normalize(x)


JPEGS = [  # name, size, PIL save options
    ("420_q90", (640, 480), dict(quality=90)),
    ("444_q95", (481, 359), dict(quality=95, subsampling=0)),
    ("422_q75", (97, 511), dict(quality=75, subsampling=1)),
    ("progressive", (1000, 41), dict(quality=85, progressive=True)),
    ("grey", (37, 23), dict(quality=90)),
]


def write_jpegs(out):
    os.makedirs(os.path.join(out, "jpegs"), exist_ok=True)
    pixels = {}
    for i, (name, (w, h), options) in enumerate(JPEGS):
        img = make_image(w, h, seed=200 + i)
        if name == "grey":
            img = img.convert("L")
        path = os.path.join(out, "jpegs", f"{name}.jpg")
        img.save(path, **options)
        pixels[name] = torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).copy())
    save_file(pixels, os.path.join(out, "jpegs.safetensors"))


def main(out):
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    write_jpegs(out)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    gen = torch.Generator().manual_seed(1234)
    ssd, res = make_ssd(gen), make_resnet18(gen)
    save_file({k: v.contiguous() for k, v in ssd.state_dict().items()}, os.path.join(out, "ssd300.safetensors"))
    save_file({k: v.contiguous() for k, v in res.state_dict().items()}, os.path.join(out, "resnet18.safetensors"))

    preset = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()
    enc = Encoder()
    tensors, expected = {}, {"images": []}
    with torch.no_grad():
        for i, (w, h) in enumerate(SIZES):
            name = f"img{i}_{w}x{h}.png"
            img = make_image(w, h, seed=100 + i)
            img.save(os.path.join(out, "images", name))
            u8 = torch.from_numpy(np.asarray(Image.open(os.path.join(out, "images", name)).convert("RGB")).copy())
            u8 = u8.permute(2, 0, 1).unsqueeze(0)
            det_in, cls_in = detector_input(u8), classifier_input(u8)
            check_against_pil(name, img, det_in, cls_in, preset)
            locs, confs = ssd(det_in)
            logits = res(cls_in)
            boxes, scores = enc.scale_back(locs, confs)
            dets = enc.decode_single(boxes[0], scores[0])
            probs = torch.softmax(logits[0], 0)
            top = torch.topk(probs, 5)
            key = f"img{i}"
            tensors.update({
                f"{key}.det_input": det_in.contiguous(), f"{key}.cls_input": cls_in.contiguous(),
                f"{key}.locs": locs.contiguous(), f"{key}.confs": confs.contiguous(), f"{key}.logits": logits.contiguous(),
            })
            expected["images"].append({
                "key": key, "file": name, "width": w, "height": h,
                "detections": [{"label": l, "score": s, "box": b} for l, s, b in dets],
                "top5": [{"index": int(ix), "prob": float(p)} for p, ix in zip(top.values, top.indices)],
            })
            above = sum(1 for _, s, _ in dets if s > 0.4)
            print(f"{name}: {len(dets)} detections, {above} above 0.4, top-1 {int(top.indices[0])} {float(top.values[0]):.3f}")
    assert sum(1 for im in expected["images"] for d in im["detections"] if d["score"] > 0.4) >= 3, "too few confident detections"
    save_file(tensors, os.path.join(out, "expected.safetensors"))
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
