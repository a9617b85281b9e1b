"""Issue 20 through the Library tab: the messy collection (tests/messy_collection.py) scanned in
Debian's chromium against the real server with tiny models, then scanned again after a photo
was deleted. The summary says what was left out by reason, the read-only card in one line,
the gone photo; a Latin-1 name shows with U+FFFD and opens in the detail panel.

Screenshots at 1280x720: artifacts/screenshots/library-messy-*.png."""
from __future__ import annotations

import os
import signal

import pytest

import messy_collection
from app_process import AppProcess

pytestmark = pytest.mark.browser

LINE = "#loupe-lib-progress-line"


def _scan(page) -> str:
    before = page.inner_text(LINE)
    page.locator("#loupe-lib-scan").click()
    page.wait_for_function("([sel, before]) => { const t = document.querySelector(sel).innerText;"
                           " return t.startsWith('Done') && t !== before; }", arg=[LINE, before], timeout=300_000)
    return page.inner_text(LINE)


def test_library_tab_scans_the_messy_collection(installed, browser, artifacts, tmp_path):
    shots = artifacts / "screenshots"
    shots.mkdir(exist_ok=True)
    m = messy_collection.build(tmp_path / "photos")
    app = AppProcess("--browser", env=dict(os.environ))
    app.__enter__()
    try:
        app.wait_for_url(timeout=180)
        page = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
        page.set_default_timeout(60_000)
        page.goto(app.url)
        page.get_by_role("tab", name="Library").click()
        page.wait_for_selector(LINE)
        page.locator("#loupe-lib-folder textarea, #loupe-lib-folder input").first.fill(str(m.root))

        line = _scan(page)
        assert "0 could not be read" not in line and "could not be read" not in line, line
        for words in ("left out: 2 files in Synology thumbnail folders", "3 files in recycle bins or snapshots",
                      "4 files inside photo apps' libraries", "2 files left out by your excludes",
                      "1 RAW file beside its JPEG", "1 JPEG XL file", "1 link loop", "1 dangling link"):
            assert words in line, (words, line)
        report = page.inner_text("#loupe-lib-report")
        assert report.count("read-only") == 1 and "the card is read-only" in report, report
        page.screenshot(path=str(shots / "library-messy-scanned.png"))
        card = page.locator("#loupe-lib-grid .lib-card", has_text="IMG_0200.jpg").first
        assert "Not written: read-only folder" in card.inner_text()  # read and captioned, not written

        # the Latin-1 name: shown with U+FFFD, and its card opens the photo's detail
        card = page.locator("#loupe-lib-grid .lib-card", has_text="caf\ufffd \ufffd la plage.jpg")
        card.first.click()
        page.wait_for_function("document.querySelector('#loupe-lib-path').innerText.includes('plage')")
        assert "caf\ufffd \ufffd la plage.jpg" in page.inner_text("#loupe-lib-path")
        assert page.input_value("#loupe-lib-caption textarea")  # its caption, from the index
        page.screenshot(path=str(shots / "library-messy-latin1.png"))

        m.to_delete.unlink()
        line = _scan(page)
        assert "1 photo no longer there" in line and "0 captioned" in line, line
        assert "IMG_0099.jpg.xmp" in page.inner_text("#loupe-lib-report")
        page.screenshot(path=str(shots / "library-messy-gone.png"))
    finally:
        code, _ = app.stop(signal.SIGINT)
        messy_collection.restore_modes(m)
    assert code == 0, app.output[-3000:]
