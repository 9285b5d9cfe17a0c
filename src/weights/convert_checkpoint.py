"""Converts an official PyTorch checkpoint to a .safetensors file with the official key names.

Run by `boxwalk models import` with the project's pinned torch. Reads with
`torch.load(weights_only=True)`, so no code in the file is executed.

- NVIDIA SSD (`nvidia_ssdpyt_amp_200703.pt`): a training dict {epoch, iteration, optimizer,
  scheduler, label_map, model}; the weights are under 'model'. A 'module.' prefix is stripped
  defensively, as the hub does ('module.1.' first, then 'module.').
- torchvision (`resnet18-f37072fd.pth`): a plain state dict.

usage: convert_checkpoint.py SRC DST   (prints a JSON summary on stdout)
"""
import json
import sys

import torch
from safetensors.torch import save_file


def main(src, dst):
    with open(src, "rb") as f:
        magic = f.read(4)
    if magic[:2] != b"PK" and magic[:1] != b"\x80":
        sys.exit("not a PyTorch checkpoint (neither torch.save's zip format nor a legacy pickle)")
    try:
        obj = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as e:  # the first line of the message says what was wrong with the file
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        sys.exit(f"cannot read it as a PyTorch checkpoint: {reason}")
    fmt = "state_dict"
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj, fmt = obj["model"], "training_dict['model']"
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj, fmt = obj["state_dict"], "dict['state_dict']"
    if not isinstance(obj, dict) or not obj:
        sys.exit(f"no state dict found (expected a dict of tensors or a dict with 'model')")
    if any("module." in k for k in obj):
        obj = {k.replace("module.1.", "").replace("module.", ""): v for k, v in obj.items()}
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        sys.exit(f"entries that are not tensors: {', '.join(bad[:5])}")
    tensors = {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in obj.items()}
    save_file(tensors, dst)
    role = "detector" if "conf.0.weight" in tensors else "classifier" if "fc.weight" in tensors else "unknown"
    print(json.dumps({"role": role, "format": fmt, "tensors": len(tensors)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
