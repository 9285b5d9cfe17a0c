"""Python reference for boxwalk's models, built from torchvision and PyTorch only.

- `SSD300`: NVIDIA DeepLearningExamples SSD300 v1.1 (ssd/model.py) re-stated from its description:
  torchvision ResNet-50 cut after layer3 with layer3[0]'s strides set to 1, five additional
  blocks, loc/conf heads, plain-reshape output layout. Its state-dict keys are the hub
  checkpoint's keys.
- `Encoder`: NVIDIA's default boxes and `decode_batch` / `decode_single` semantics.
- `detector_input` / `classifier_input`: the exact op sequences boxwalk runs with libtorch.

Nothing here imports boxwalk; it is the independent side of the parity tests.
"""
from math import sqrt

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def slim_resnet18(divisor=1, num_classes=1000):
    """torchvision's ResNet-18 with every width divided by `divisor` (1 = torchvision's own), built
    from torchvision's BasicBlock and `_make_layer` so that keys and structure are unchanged."""
    net = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    if divisor == 1:
        return net
    base = 64 // divisor
    net.inplanes = base
    net.conv1 = nn.Conv2d(3, base, kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1 = nn.BatchNorm2d(base)
    block = torchvision.models.resnet.BasicBlock
    net.layer1 = net._make_layer(block, base, 2)
    net.layer2 = net._make_layer(block, 2 * base, 2, stride=2)
    net.layer3 = net._make_layer(block, 4 * base, 2, stride=2)
    net.layer4 = net._make_layer(block, 8 * base, 2, stride=2)
    net.fc = nn.Linear(8 * base, num_classes)
    return net


class Backbone(nn.Module):
    """NVIDIA `ResNet('resnet50')`: children[:7] of torchvision resnet50, conv4_block1 stride 1.
    `ResNet('resnet18')` likewise, optionally slimmed by `divisor` (boxwalk's demo detector)."""

    def __init__(self, arch="resnet50", divisor=1):
        super().__init__()
        if arch == "resnet50":
            net = torchvision.models.resnet50(weights=None)
            self.out_channels = [1024, 512, 512, 256, 256, 256]
        elif arch == "resnet18":
            net = slim_resnet18(divisor)
            self.out_channels = [c // divisor for c in [256, 512, 512, 256, 256, 128]]
        else:
            raise ValueError(arch)
        self.divisor = divisor
        self.feature_extractor = nn.Sequential(*list(net.children())[:7])
        block1 = self.feature_extractor[-1][0]
        block1.conv1.stride = (1, 1)
        block1.conv2.stride = (1, 1)
        block1.downsample[0].stride = (1, 1)

    def forward(self, x):
        return self.feature_extractor(x)


class SSD300(nn.Module):
    def __init__(self, backbone=None, label_num=81):
        super().__init__()
        self.feature_extractor = backbone or Backbone()
        self.label_num = label_num
        self.num_defaults = [4, 6, 6, 6, 4, 4]
        oc = self.feature_extractor.out_channels
        mids = [c // getattr(self.feature_extractor, "divisor", 1) for c in [256, 256, 128, 128, 128]]
        blocks = []
        for i, (cin, mid, cout) in enumerate(zip(oc[:-1], mids, oc[1:])):
            stride, pad = (2, 1) if i < 3 else (1, 0)
            blocks.append(nn.Sequential(
                nn.Conv2d(cin, mid, kernel_size=1, bias=False),
                nn.BatchNorm2d(mid),
                nn.ReLU(inplace=True),
                nn.Conv2d(mid, cout, kernel_size=3, padding=pad, stride=stride, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ))
        self.additional_blocks = nn.ModuleList(blocks)
        self.loc = nn.ModuleList([nn.Conv2d(c, nd * 4, 3, padding=1) for nd, c in zip(self.num_defaults, oc)])
        self.conf = nn.ModuleList([nn.Conv2d(c, nd * label_num, 3, padding=1) for nd, c in zip(self.num_defaults, oc)])

    def forward(self, x):
        x = self.feature_extractor(x)
        feats = [x]
        for b in self.additional_blocks:
            x = b(x)
            feats.append(x)
        n = feats[0].shape[0]
        locs = torch.cat([l(f).reshape(n, 4, -1) for f, l in zip(feats, self.loc)], 2)
        confs = torch.cat([c(f).reshape(n, self.label_num, -1) for f, c in zip(feats, self.conf)], 2)
        return locs, confs


def default_boxes_xywh():
    """NVIDIA dboxes300_coco: map -> size -> row -> col, float32, clamped in place to [0,1]."""
    fig, feats = 300, [38, 19, 10, 5, 3, 1]
    steps = [8, 16, 32, 64, 100, 300]
    scales = [21, 45, 99, 153, 207, 261, 315]
    ratios = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
    boxes = []
    for idx, sfeat in enumerate(feats):
        sk1, sk2 = scales[idx] / fig, scales[idx + 1] / fig
        sk3 = sqrt(sk1 * sk2)
        sizes = [(sk1, sk1), (sk3, sk3)]
        for a in ratios[idx]:
            w, h = sk1 * sqrt(a), sk1 / sqrt(a)
            sizes += [(w, h), (h, w)]
        fk = fig / steps[idx]
        for w, h in sizes:
            for i in range(sfeat):
                for j in range(sfeat):
                    boxes.append(((j + 0.5) / fk, (i + 0.5) / fk, w, h))
    t = torch.tensor(boxes, dtype=torch.float32)
    t.clamp_(min=0, max=1)
    return t


def calc_iou(a, b):
    """Plain ltrb IoU matrix, no +1."""
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter)


class Encoder:
    def __init__(self):
        self.dboxes_xywh = default_boxes_xywh()

    def scale_back(self, locs, confs):
        """locs N×4×B, confs N×C×B -> ltrb boxes N×B×4, softmax scores N×B×C."""
        d = self.dboxes_xywh
        l = locs.permute(0, 2, 1)
        cx = 0.1 * l[..., 0] * d[:, 2] + d[:, 0]
        cy = 0.1 * l[..., 1] * d[:, 3] + d[:, 1]
        w = torch.exp(0.2 * l[..., 2]) * d[:, 2]
        h = torch.exp(0.2 * l[..., 3]) * d[:, 3]
        boxes = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], -1)
        return boxes, F.softmax(confs.permute(0, 2, 1), dim=-1)

    @staticmethod
    def decode_single(boxes, scores, criteria=0.5, max_output=200, max_num=200):
        out_b, out_l, out_s = [], [], []
        for i in range(1, scores.shape[1]):
            s = scores[:, i]
            mask = s > 0.05
            b, s = boxes[mask], s[mask]
            if s.numel() == 0:
                continue
            order = torch.argsort(s, stable=True)[-max_num:]
            while order.numel() > 0:
                idx = order[-1].item()
                iou = calc_iou(b[order], b[idx:idx + 1]).squeeze(1)
                order = order[iou < criteria]
                out_b.append(b[idx])
                out_l.append(i)
                out_s.append(s[idx].item())
        if not out_s:
            return []
        dets = sorted(zip(out_s, out_l, out_b), key=lambda t: -t[0])[:max_output]
        return [(lab, sc, bx.tolist()) for sc, lab, bx in dets]


def _normalize(x):
    mean = torch.tensor(MEAN, dtype=torch.float64).to(torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=torch.float64).to(torch.float32).view(1, 3, 1, 1)
    return (x - mean) / std


def detector_input(u8):
    """1×3×H×W uint8 -> NVIDIA eval protocol (PIL `Resize((300,300))`, `ToTensor`, `Normalize`):
    the whole image stretched to 300×300 by libtorch's uint8 antialiased bilinear kernel (PIL's
    arithmetic, within one level), /255, mean/std."""
    x = F.interpolate(u8, size=(300, 300), mode="bilinear", align_corners=False, antialias=True)
    return _normalize(x.float() / 255.0)


def classifier_size(h, w):
    """torchvision `resize(img, [256])`: short side 256, long side truncated."""
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(256 * long / short)
    return (new_long, 256) if w <= h else (256, new_long)


def classifier_input(u8):
    """1×3×H×W uint8 -> torchvision ImageClassification(crop 224, resize 256) as the published
    evaluation runs it on PIL images: uint8 antialiased bilinear resize (PIL's arithmetic, within
    one level), centre crop, /255, mean/std."""
    nh, nw = classifier_size(*u8.shape[-2:])
    x = F.interpolate(u8, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    top, left = int(round((nh - 224) / 2.0)), int(round((nw - 224) / 2.0))
    x = x[..., top:top + 224, left:left + 224]
    return _normalize(x.float() / 255.0)
