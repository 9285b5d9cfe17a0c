"""Drives the `boxwalk serve` page in headless Chromium: uploads IMAGE through the file picker
and checks that the boxes are drawn, the detection list and the top-5 are filled, and that the
threshold slider changes what is drawn.

usage: check_serve.py URL IMAGE SCREENSHOT.png
Exit status 1 with a message on the first failed check.
"""
import json
import os
import sys

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_sheet import browser, check  # noqa: E402


def main(url, image, shot):
    d = browser()
    try:
        d.get(url)
        d.find_element(By.ID, "file").send_keys(os.path.abspath(image))
        WebDriverWait(d, 60).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state"))
        state = d.find_element(By.TAG_NAME, "body").get_attribute("data-state")
        check(state == "done", f"upload ended in state {state}: {d.find_element(By.ID, 'error').text}")
        WebDriverWait(d, 10).until(lambda d: d.find_element(By.ID, "canvas").get_attribute("data-boxes"))
        canvas = d.find_element(By.ID, "canvas")
        boxes = int(canvas.get_attribute("data-boxes"))
        rows = d.find_elements(By.CSS_SELECTOR, "#dets tr")
        top5 = d.find_elements(By.CSS_SELECTOR, "#top5 tr")
        check(boxes > 0 and len(rows) == boxes, f"{boxes} boxes drawn, {len(rows)} listed")
        check(len(top5) == 5, f"top-5 has {len(top5)} rows")
        # The canvas shows the upload at full size with coloured box outlines on it.
        size = d.execute_script("const c = document.getElementById('canvas'); return [c.width, c.height]")
        check(size[0] > 0 and size[1] > 0, f"canvas is {size}")
        d.save_screenshot(shot)
        d.execute_script("const t = document.getElementById('threshold'); t.value = '1'; t.dispatchEvent(new Event('input'))")
        check(int(canvas.get_attribute("data-boxes")) == 0, "threshold 1 still draws boxes")
        d.execute_script("const t = document.getElementById('threshold'); t.value = '0.05'; t.dispatchEvent(new Event('input'))")
        check(int(canvas.get_attribute("data-boxes")) >= boxes, "a lower threshold draws fewer boxes")
        print(json.dumps({"boxes": boxes, "top5": [r.text for r in top5]}))
    finally:
        d.quit()


if __name__ == "__main__":
    main(*sys.argv[1:])
