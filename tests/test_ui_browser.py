"""Loupe's real UI in Debian's chromium, served by `loupe --browser` with tiny models: caption
a photo, classify one (three labels), and the first-run download with its progress."""
from __future__ import annotations

import os
import re
import signal

import pytest

from app_process import AppProcess

pytestmark = pytest.mark.browser

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "desktop", "examples", "cat.jpg")



def _serve():
    proc = AppProcess("--browser", env=dict(os.environ))
    proc.__enter__()
    proc.wait_for_url(timeout=120)
    return proc


def _stop(proc):
    code, _ = proc.stop(signal.SIGINT)
    assert code == 0, proc.output


def _page(browser, url, artifacts=None):
    page = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
    page.set_default_timeout(60_000)
    hosts = set()
    page.on("request", lambda r: hosts.add(r.url.split("/")[2]))
    page.goto(url)
    page.wait_for_selector("#loupe-caption")
    return page, hosts


def test_caption_and_classify_in_chromium(installed, browser, artifacts):
    app = _serve()
    try:
        page, hosts = _page(browser, app.url)
        # a file that is not a photo: a readable message, and the app goes on working
        bad = artifacts / "not-a-photo.jpg"
        bad.write_text("hello")
        page.set_input_files("#loupe-caption-photo input[type=file]", str(bad))
        page.wait_for_selector(".toast-body, [data-testid='toast-body']")
        toast = page.locator(".toast-body, [data-testid='toast-body']").first.inner_text()
        page.screenshot(path=str(artifacts / "ui-bad-photo.png"), full_page=True)
        assert "Traceback" not in toast and len(toast) < 300, toast
        page.reload()
        page.wait_for_selector("#loupe-caption")
        page.set_input_files("#loupe-caption-photo input[type=file]", EXAMPLE)
        page.wait_for_function("document.querySelector('#loupe-caption textarea').value.length > 0")
        caption = page.input_value("#loupe-caption textarea")
        assert re.search(r"[a-z]", caption)
        page.get_by_role("tab", name="Classify").click()
        page.set_input_files("#loupe-classify-photo input[type=file]", EXAMPLE)
        page.wait_for_function("document.querySelectorAll('#loupe-labels .confidence-set').length === 3")
        rows = page.locator("#loupe-labels .confidence-set").all_inner_texts()
        assert len(rows) == 3 and all("%" in r for r in rows), rows
        page.screenshot(path=str(artifacts / "ui-classify.png"), full_page=True)
        assert hosts == {f"127.0.0.1:{app.port}"}, hosts
    finally:
        _stop(app)


def test_first_run_download_shows_progress_then_classifies(own_hub, browser, artifacts):
    own_hub.faults["resnet18-f37072fd.pth"] = "slow"  # so a person (and this test) sees it move
    own_hub.slow_delay = 0.05
    app = _serve()
    try:
        page, _ = _page(browser, app.url)
        page.get_by_role("tab", name="Classify").click()
        assert page.locator("#loupe-classify-btn").is_disabled()
        page.get_by_role("button", name="Download the classifier").click()
        page.wait_for_selector("text=/of 4\\d\\.\\d MB/")
        seen = page.locator("text=/of 4\\d\\.\\d MB/").first.inner_text()
        page.screenshot(path=str(artifacts / "ui-download-progress.png"))
        page.wait_for_function("!document.querySelector('#loupe-classify-btn').disabled", timeout=120_000)
        page.wait_for_selector("text=installed and verified")
        assert "ResNet-18" in seen
        page.set_input_files("#loupe-classify-photo input[type=file]", EXAMPLE)
        page.wait_for_function("document.querySelectorAll('#loupe-labels .confidence-set').length === 3")
    finally:
        _stop(app)


def test_library_tab_scans_a_folder_and_finds_photos_by_words(installed, browser, artifacts, tmp_path):
    from image_corpus import gradient

    folder = tmp_path / "Holiday Photos"
    (folder / "day 2").mkdir(parents=True)
    for i in range(6):
        gradient(200 + 20 * i, 150, seed=40 + i).rotate(30 * i).save(folder / ("day 2" if i % 2 else "") / f"IMG_{i:03d}.JPG")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    originals = {p: p.read_bytes() for p in folder.rglob("*.JPG")}
    app = _serve()
    try:
        page, hosts = _page(browser, app.url)
        page.get_by_role("tab", name="Library").click()
        page.locator("#loupe-lib-folder input, #loupe-lib-folder textarea").first.fill(str(folder))
        page.locator("#loupe-lib-scan").click()
        page.wait_for_function("document.querySelector('#loupe-lib-progress-line').innerText.startsWith('Done')",
                               timeout=180_000)
        summary = page.inner_text("#loupe-lib-progress-line")
        assert "7 photos, 6 captioned" in summary and "1 could not be read" in summary, summary
        assert "broken.jpg" in page.inner_text("#loupe-lib-report")
        # sidecars by default: originals byte-identical, a .xmp beside each
        assert all(p.read_bytes() == data for p, data in originals.items())
        assert all(p.with_name(p.name + ".xmp").is_file() for p in originals)
        from engine import library

        import json

        library.export(tmp_path / "index.json")
        captions = [row["caption"] for row in json.loads((tmp_path / "index.json").read_text())]
        word = next(w for c in captions for w in c.split() if len(w) > 2)
        page.locator("#loupe-lib-text input, #loupe-lib-text textarea").first.fill(word)
        page.locator("#loupe-lib-text input, #loupe-lib-text textarea").first.press("Enter")
        page.wait_for_selector(f"#loupe-lib-page >> text=“{word}”")
        assert page.locator("#loupe-lib-grid .lib-card img").count() >= 1
        page.screenshot(path=str(artifacts / "ui-library.png"), full_page=True)
        assert hosts == {f"127.0.0.1:{app.port}"}, hosts
    finally:
        _stop(app)
