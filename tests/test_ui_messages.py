"""Messages people can act on, in the real UI (Debian's chromium against `loupe --browser`) and
in the functions that word them: a file is named as the person dropped it (never gradio's upload
copy under /tmp), no red "Error" badge stays on an output after its toast, a missing or damaged
model points at the Download button in its tab (never a command to type), and a download says
"connecting" until bytes flow, offline within seconds, and "Cancelled" when cancelled.

Screenshots (1280x720) go to artifacts/ui-msg-*.png."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
from pathlib import Path

import pytest

from app_process import AppProcess

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "desktop", "examples", "cat.jpg")
TOAST = ".toast-body, [data-testid='toast-body']"
HEX64 = re.compile(r"[0-9a-f]{64}")
# The words of the engine's command-line advice, which the page must never show.
CLI = re.compile(r"loupe (models|library)|`loupe|loupe import")


# --------------------------------------------------------------------------- wording, no browser


def test_upload_copies_are_named_as_dropped():
    from desktop.messages import user_paths

    copy = "/tmp/loupe-4242-k3j/" + "ab" * 32 + "/IMG 0042.jpg"
    assert user_paths(f"{copy}: not a photo Loupe can read", [copy, "", None]) == "IMG 0042.jpg: not a photo Loupe can read"
    # a path met in the text that is not among the arguments (another upload, a resolved copy)
    other = "C:\\Users\\Jo Smith\\AppData\\Local\\Temp\\loupe-1-x\\" + "0f" * 32 + "\\scan.png"
    assert user_paths(f"cannot read {other}", [[other]]) == "cannot read scan.png"
    assert user_paths("cannot read /tmp/gradio/" + "c" * 64 + "/x.png (truncated)") == "cannot read x.png (truncated)"
    # a person's own paths are theirs: kept whole
    assert user_paths("/home/me/Pictures/IMG_1.jpg: unreadable", ["/home/me/Pictures"]) == \
        "/home/me/Pictures/IMG_1.jpg: unreadable"


def test_missing_damaged_and_offline_point_at_the_button(tiny_sources, installed, tmp_path):
    from engine import paths, weights
    from engine.errors import Unreachable, WeightsMissing
    from desktop import messages as ui

    copy = tmp_path / "weights"
    shutil.copytree(installed, copy)
    paths.save_setting("weights_dir", str(copy))
    weights.remove("resnet18")
    missing = ui.say(WeightsMissing("resnet18: Run `loupe models download`", model="resnet18"))
    assert "Download the classifier" in missing and "Classify tab" in missing and not CLI.search(missing)
    assert "Download the classifier" in ui.missing_text("resnet18") and not CLI.search(ui.missing_text("resnet18"))
    cfg = copy / "blip-base" / "config.json"
    cfg.write_text(cfg.read_text().replace('"', "'", 1))  # same size, other bytes
    banner = ui.missing_text("blip-base")
    assert "damaged" in banner and "config.json" in banner and "Download the captioning model" in banner, banner
    assert not CLI.search(banner), banner
    with pytest.raises(Exception) as info:
        weights.model_dir("blip-base")
    line = ui.say(info.value)
    assert "damaged" in line and "repair" in line and not CLI.search(line), line
    offline = ui.say(Unreachable("x: cannot reach huggingface.co ... `loupe models import FOLDER`", host="huggingface.co"))
    assert offline == ("Cannot reach huggingface.co: this computer seems to be offline. Try again when online, "
                       "or import the files (Models → Import).")


def test_progress_says_connecting_until_bytes_flow():
    from engine import weights
    from desktop.messages import progress_words

    p = weights.DownloadProgress("blip-base", "", 0, 0, 0, 990_800_000, phase=weights.CONNECTING, host="huggingface.co")
    assert progress_words(p, "BLIP") == "BLIP: connecting to huggingface.co…"
    p = weights.DownloadProgress("blip-base", "m.bin", 5_000_000, 990_000_000, 5_000_000, 990_800_000)
    assert progress_words(p, "BLIP") == "BLIP: 5.0 MB of 991 MB"


# --------------------------------------------------------------------------- in the browser



class _App:
    def __init__(self):
        self.proc = AppProcess("--browser", env=dict(os.environ))
        self.proc.__enter__()
        self.url = self.proc.wait_for_url(timeout=120)

    def close(self):
        code, _ = self.proc.stop(signal.SIGINT)
        assert code == 0, self.proc.output


def _page(browser, url):
    page = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    page.wait_for_selector("#loupe-caption")
    return page


def _badges(page, selector: str) -> int:
    """gradio's error state on a component: its status tracker says "Error" (with a clear button)."""
    return page.evaluate("""sel => {
        const el = document.querySelector(sel);
        const block = el && (el.closest('.block') || el);
        if (!block) return -1;
        return [...block.querySelectorAll('*')].filter(n => n.children.length === 0 &&
            n.textContent.trim() === 'Error' && n.offsetParent !== null).length;
    }""", selector)


def _toast(page) -> str:
    page.wait_for_selector(TOAST)
    return page.locator(TOAST).first.inner_text()


def _no_stale_badge(page, selector: str, timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while _badges(page, selector) and time.monotonic() < end:
        time.sleep(0.2)
    assert _badges(page, selector) == 0, f"an Error badge stays on {selector}"


def test_broken_photo_is_named_as_dropped_and_leaves_no_badge(installed, browser, artifacts, tmp_path):
    bad = tmp_path / "beach_day.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a photo")
    app = _App()
    try:
        page = _page(browser, app.url)
        for tab, drop, output in (("Caption", "#loupe-caption-photo", "#loupe-caption"),
                                  ("Classify", "#loupe-classify-photo", "#loupe-labels")):
            page.get_by_role("tab", name=tab).click()
            page.set_input_files(f"{drop} input[type=file]", str(bad))
            text = _toast(page)
            assert "beach_day.jpg" in text, text
            assert "/tmp" not in text and not HEX64.search(text) and str(tmp_path) not in text, text
            _no_stale_badge(page, output)
            page.screenshot(path=str(artifacts / f"ui-msg-broken-{tab.lower()}.png"))
            page.locator(f"{TOAST}").first.click()  # not needed for the check; keeps the next toast first
            page.evaluate("document.querySelectorAll('.toast-close').forEach(b => b.click())")
        # a good photo after it: answered, still no badge
        page.get_by_role("tab", name="Caption").click()
        page.set_input_files("#loupe-caption-photo input[type=file]", EXAMPLE)
        page.wait_for_function("document.querySelector('#loupe-caption textarea').value.length > 0")
        assert _badges(page, "#loupe-caption") == 0
    finally:
        app.close()


def test_without_models_an_example_points_at_the_download_button(tiny_sources, browser, artifacts):
    app = _App()
    try:
        page = _page(browser, app.url)
        for tab, output, button in (("Caption", "#loupe-caption", "Download the captioning model"),
                                    ("Classify", "#loupe-labels", "Download the classifier")):
            page.get_by_role("tab", name=tab).click()
            page.locator("button.gallery-item >> visible=true").first.click()  # an example photo
            # this tab's own message (a toast of the tab before may still be fading out)
            toast = page.locator(TOAST, has_text=button).first
            toast.wait_for(timeout=30_000)
            text = toast.inner_text()
            assert not CLI.search(text), text
            assert page.get_by_role("button", name=button).is_visible()
            body = page.inner_text("body")
            assert not CLI.search(body), CLI.search(body)
            _no_stale_badge(page, output)
            page.screenshot(path=str(artifacts / f"ui-msg-no-model-{tab.lower()}.png"))
            page.evaluate("document.querySelectorAll('.toast-close').forEach(b => b.click())")
            page.wait_for_function("s => !document.querySelector(s)", arg=TOAST, timeout=10_000)
    finally:
        app.close()



def _dead_table(own_hub, tmp_path, monkeypatch, base_url: str) -> None:
    table = json.loads(Path(own_hub.table).read_text())
    table["resnet18"]["base_url"] = base_url
    path = tmp_path / "dead.json"
    path.write_text(json.dumps(table))
    monkeypatch.setenv("LOUPE_SOURCES", str(path))


def test_download_offline_connecting_then_one_plain_line(own_hub, browser, artifacts, tmp_path, monkeypatch, blackhole):
    _dead_table(own_hub, tmp_path, monkeypatch, f"{blackhole}/models")
    app = _App()
    try:
        page = _page(browser, app.url)
        page.get_by_role("tab", name="Classify").click()
        start = time.monotonic()
        page.get_by_role("button", name="Download the classifier").click()
        page.wait_for_selector("text=/connecting to 127\\.0\\.0\\.1/")
        page.screenshot(path=str(artifacts / "ui-msg-download-connecting.png"))
        assert not page.locator("text=/0\\.0 of/").count(), "no byte count before bytes flow"
        status = "#loupe-download-resnet18"
        page.wait_for_selector(f"{status} >> text=/Cannot reach 127\\.0\\.0\\.1/", timeout=15_000)
        elapsed = time.monotonic() - start
        line = page.inner_text(status)
        assert elapsed < 9, elapsed
        assert "this computer seems to be offline" in line and "Models → Import" in line and not CLI.search(line), line
        _no_stale_badge(page, status, timeout=1)
        page.screenshot(path=str(artifacts / "ui-msg-download-offline.png"))
    finally:
        app.close()


def test_cancel_a_download_that_gets_no_answer(own_hub, browser, artifacts):
    own_hub.faults["resnet18-f37072fd.pth"] = "hang"  # accepts, then says nothing
    app = _App()
    try:
        page = _page(browser, app.url)
        page.get_by_role("tab", name="Classify").click()
        page.get_by_role("button", name="Download the classifier").click()
        page.wait_for_selector("text=/connecting to 127\\.0\\.0\\.1/")
        time.sleep(1.0)
        start = time.monotonic()
        page.get_by_role("button", name="Cancel download").first.click()
        page.wait_for_selector("#loupe-download-resnet18 >> text=Cancelled", timeout=10_000)
        assert time.monotonic() - start < 3, "cancelled at once (1 s + the page's round trip)"
        _no_stale_badge(page, "#loupe-download-resnet18", timeout=1)
        page.screenshot(path=str(artifacts / "ui-msg-download-cancelled.png"))
    finally:
        app.close()
