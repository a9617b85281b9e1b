"""The Library tab's search (issue 21) in Debian's chromium against the real server, tiny models
with the encoder installed: the search box ranks by words and meaning fused into the grid
(thumbnails, captions, labels), the first search says it loads the search model, and a photo's
"More like this" ranks the grid by what the photos show.

Screenshots at 1280x720: artifacts/screenshots/library-search*.png."""
from __future__ import annotations

import pytest

from a11y import report, serious, violations
from library_fixtures import save_photo
from test_library_ui import LINE, _library_page, _serve, _stop


pytestmark = pytest.mark.browser

CARDS = "#loupe-lib-grid .lib-card"


def test_search_box_and_more_like_this(installed, browser, artifacts, tmp_path):
    folder = tmp_path / "Colours"
    colours = {"red-1.jpg": (200, 30, 30), "red-2.jpg": (205, 35, 30), "blue.jpg": (20, 20, 120),
               "green.jpg": (30, 150, 40)}
    for name, colour in colours.items():
        save_photo(folder / name, len(name), size=(320, 240), color=colour)
    shots = artifacts / "screenshots"
    shots.mkdir(exist_ok=True)
    app = _serve()
    try:
        page = _library_page(browser, app.url)
        page.locator("#loupe-lib-folder textarea, #loupe-lib-folder input").first.fill(str(folder))
        page.locator("#loupe-lib-scan").click()
        page.wait_for_function(f"document.querySelector('{LINE}').innerText.startsWith('Done')", timeout=180_000)
        page.wait_for_function(f"document.querySelectorAll('{CARDS}').length === 4")
        assert "4 embedded for search" in page.inner_text(LINE), page.inner_text(LINE)

        # Collect every text the page line shows: the first search says the model loads
        page.evaluate("""() => { window.__lines = [];
            const el = document.querySelector('#loupe-lib-page');
            new MutationObserver(() => window.__lines.push(el.innerText)).observe(el,
                {childList: true, subtree: true, characterData: true}); }""")
        box = page.locator("#loupe-lib-text input, #loupe-lib-text textarea").first
        box.fill("red photo")
        box.press("Enter")
        page.wait_for_selector("#loupe-lib-page >> text=ranked by words and meaning")
        lines = page.evaluate("window.__lines")
        assert any("Loading the search model" in line for line in lines), lines
        label = page.inner_text("#loupe-lib-page")
        assert "4 photos for “red photo”, best first" in label, label
        assert page.locator(CARDS).count() == 4  # meaning ranks every embedded photo
        assert all(page.locator(f"{CARDS} .lib-cap").all_inner_texts())  # captions as the grid shows them
        assert page.locator(f"{CARDS} img").count() == 4
        page.screenshot(path=str(shots / "library-search.png"))

        # Choose red-1, then More like this: red-2 looks most like it; red-1 itself is left out
        page.locator(CARDS, has_text="red-1.jpg").click()
        page.wait_for_function("document.querySelector('#loupe-lib-caption textarea').value.length > 0")
        page.locator("#loupe-lib-like").click()
        page.wait_for_selector("#loupe-lib-page >> text=most like red-1.jpg")
        page.wait_for_function(f"document.querySelectorAll('{CARDS}').length === 3")
        names = page.locator(f"{CARDS} .lib-name").all_inner_texts()
        assert names[0] == "red-2.jpg" and "red-1.jpg" not in names, names
        page.screenshot(path=str(shots / "library-search-like.png"))
        # axe on the page with search results and a photo open (its gr.Image included)
        found = serious(violations(page.evaluate))
        assert not found, report(found)

        # The keyboard alone: focus the button and press Enter
        page.locator("#loupe-lib-text input, #loupe-lib-text textarea").first.press("Enter")
        page.wait_for_selector("#loupe-lib-page >> text=ranked by words and meaning")
        page.locator("#loupe-lib-like").focus()
        page.keyboard.press("Enter")
        page.wait_for_selector("#loupe-lib-page >> text=most like red-1.jpg")
    finally:
        _stop(app)

