"""Drives OUT/index.html (the contact sheet) in headless Chromium and checks what a grader sees.

usage: check_sheet.py OUT_DIR SCREENSHOT.png EXPECT_IMAGES EXPECT_FAILED_NAME CLASS
  - the grid renders one card per processed image, each with a loaded thumbnail from .thumbs/;
  - choosing CLASS in the class filter hides every image without a CLASS detection (and keeps
    at least one), raising the minimum score to 1 hides them all;
  - the failed view lists EXPECT_FAILED_NAME with its reason;
  - ArrowRight opens the viewer on the first image and steps to the second; Escape closes it;
  - a filter given in the URL fragment is applied on load.
Exit status 1 with a message on the first failed check.
"""
import json
import os
import sys

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select


def browser():
    o = Options()
    o.binary_location = os.environ.get("BOXWALK_CHROMIUM", "/usr/bin/chromium")
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900",
              "--allow-file-access-from-files"):
        o.add_argument(a)
    return webdriver.Chrome(service=Service(os.environ.get("BOXWALK_CHROMEDRIVER", "/usr/bin/chromedriver")), options=o)


def check(cond, msg):
    if not cond:
        print("FAIL:", msg)
        sys.exit(1)


def visible_cards(d):
    return [c for c in d.find_elements(By.CSS_SELECTOR, "#grid .card") if c.is_displayed()]


def main(out, shot, expect_images, failed_name, cls):
    expect_images = int(expect_images)
    page = "file://" + os.path.abspath(os.path.join(out, "index.html"))
    d = browser()
    try:
        d.get(page)
        cards = visible_cards(d)
        check(len(cards) == expect_images, f"grid shows {len(cards)} cards, expected {expect_images}")
        imgs = d.find_elements(By.CSS_SELECTOR, "#grid .card img")
        d.execute_script("document.querySelectorAll('#grid img').forEach(i => i.loading = 'eager')")
        d.set_script_timeout(20)
        loaded = d.execute_async_script("""
            const done = arguments[0];
            const imgs = [...document.querySelectorAll('#grid img')];
            Promise.all(imgs.map(i => i.complete ? 0 : new Promise(r => { i.onload = i.onerror = r; })))
              .then(() => done(imgs.map(i => [i.getAttribute('src'), i.naturalWidth])));""")
        check(all(w > 0 for _, w in loaded), f"some thumbnails did not load: {loaded}")
        check(all(src.startswith(".thumbs/") for src, _ in loaded), f"thumbnails are not the generated files: {loaded}")
        check(all(0 < w <= 320 for _, w in loaded), f"thumbnails are not small: {loaded}")
        d.save_screenshot(shot)

        Select(d.find_element(By.ID, "class")).select_by_value(cls)
        kept = visible_cards(d)
        check(0 < len(kept) < expect_images, f"class filter `{cls}` kept {len(kept)} of {expect_images}")
        for c in kept:
            chips = [s.text for s in c.find_elements(By.CSS_SELECTOR, ".chip.det")]
            check(any(t.startswith(cls + " ") for t in chips), f"card without `{cls}` kept: {chips}")
        check(f"class={cls}" in d.current_url, f"the filter is not in the URL: {d.current_url}")
        d.execute_script("const m = document.getElementById('min'); m.value = '1'; m.dispatchEvent(new Event('input'))")
        check(len(visible_cards(d)) == 0, "min score 1 should hide every image")
        Select(d.find_element(By.ID, "class")).select_by_value("")
        d.execute_script("const m = document.getElementById('min'); m.value = '0'; m.dispatchEvent(new Event('input'))")
        check(len(visible_cards(d)) == expect_images, "clearing the filters shows every image again")

        d.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_RIGHT)
        viewer = d.find_element(By.ID, "viewer")
        check("open" in viewer.get_attribute("class"), "ArrowRight did not open the viewer")
        first = d.find_element(By.ID, "viewer-name").text
        d.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_RIGHT)
        second = d.find_element(By.ID, "viewer-name").text
        check(first != second and d.find_element(By.ID, "viewer-pos").text.startswith("2 /"),
              f"ArrowRight did not step: {first} -> {second}")
        d.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_LEFT)
        check(d.find_element(By.ID, "viewer-name").text == first, "ArrowLeft did not step back")
        d.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
        check("open" not in viewer.get_attribute("class"), "Escape did not close the viewer")

        d.find_element(By.ID, "view-failed").click()
        rows = d.find_elements(By.CSS_SELECTOR, "#failed tr.failed-row")
        text = [r.text for r in rows]
        check(any(failed_name in t for t in text), f"failed view does not list {failed_name}: {text}")
        check(all(len(r.find_elements(By.TAG_NAME, "td")[2].text) > 0 for r in rows), "a failure without a reason")
        check(not d.find_element(By.ID, "images").is_displayed(), "the grid stays visible in the failed view")
        d.save_screenshot(shot.replace(".png", "-failed.png"))

        d.get(page + f"#class={cls}&sort=most")
        check(len(visible_cards(d)) == len(kept), "a filter in the URL fragment is not applied on load")
        print(json.dumps({"cards": len(cards), "class_kept": len(kept), "failed_rows": len(rows)}))
    finally:
        d.quit()


if __name__ == "__main__":
    main(*sys.argv[1:])
