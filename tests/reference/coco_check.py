"""Evaluates boxwalk's `--coco-json` output with pycocotools, as a user would.

usage: coco_check.py GROUND_TRUTH.json RESULTS.json
Prints one JSON line: {"map50_95": AP@[.5:.95], "map50": AP@.5, "results": number of results}.
"""
import contextlib
import io
import json
import sys

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def main(gt_file, res_file):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_file)
        res = gt.loadRes(res_file)
        ev = COCOeval(gt, res, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    print(json.dumps({"map50_95": float(ev.stats[0]), "map50": float(ev.stats[1]),
                      "results": len(json.load(open(res_file)))}))


if __name__ == "__main__":
    main(*sys.argv[1:])
