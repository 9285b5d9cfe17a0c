"""Writes checkpoints in the official formats from the parity fixtures' weights (for the import
tests): NVIDIA's pickled training dict (`nvidia_ssdpyt_amp_200703.pt` layout: epoch, iteration,
optimizer, scheduler, label_map, model), the same saved from a DDP-wrapped model ('module.'
keys), and a torchvision zip-format state dict named `resnet18-<sha256[:8]>.pth`.

usage: make_checkpoints.py FIXTURES OUT
"""
import hashlib
import os
import sys

import torch
import torchvision
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ssd_reference import SSD300  # noqa: E402


def main(fixtures, out):
    os.makedirs(out, exist_ok=True)
    ssd = SSD300()
    ssd.load_state_dict(load_file(os.path.join(fixtures, "ssd300.safetensors")))
    ssd.eval()
    # One step at lr 0 fills the optimizer state (momentum buffers) without changing the weights.
    opt = torch.optim.SGD(ssd.parameters(), lr=0.0, momentum=0.9, weight_decay=5e-4)
    ssd(torch.zeros(1, 3, 300, 300))[1].sum().backward()
    opt.step()
    opt.param_groups[0]["lr"] = 2.6e-3
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[43, 54], gamma=0.1)
    label_map = {i + 1: c for i, c in enumerate([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])}
    train_dict = {"epoch": 65, "iteration": 120000, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                  "label_map": label_map, "model": ssd.state_dict()}
    torch.save(train_dict, os.path.join(out, "nvidia_ssdpyt_amp_200703.pt"))
    ddp = dict(train_dict, model={"module." + k: v for k, v in ssd.state_dict().items()})
    torch.save(ddp, os.path.join(out, "ssd_ddp.pt"))

    res = torchvision.models.resnet18(weights=None)
    res.load_state_dict(load_file(os.path.join(fixtures, "resnet18.safetensors")))
    tmp = os.path.join(out, "resnet18.tmp")
    torch.save(res.state_dict(), tmp)
    digest = hashlib.sha256(open(tmp, "rb").read()).hexdigest()
    os.replace(tmp, os.path.join(out, f"resnet18-{digest[:8]}.pth"))
    print(digest)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
