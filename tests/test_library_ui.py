"""The Library tab in Debian's chromium against the real server (`python -m desktop --browser`)
with tiny models: the progress area (there before a scan, moving during one), Stop within 2 s,
the review grid, filters, editing a caption (read back with exiftool), rename undo and export.

Screenshots at 1280x720 go to artifacts/screenshots/library-*.png."""
from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from app_process import AppProcess

pytestmark = pytest.mark.browser

SLOW_SITE = Path(__file__).parent / "slow_site"
LINE = "#loupe-lib-progress-line"
TOAST = ".toast-body, [data-testid='toast-body']"



@pytest.fixture(scope="module")
def shots(artifacts) -> Path:
    folder = artifacts / "screenshots"
    folder.mkdir(exist_ok=True)
    return folder


def _serve(**env: str) -> AppProcess:
    proc = AppProcess("--browser", env=dict(os.environ, **env))
    proc.__enter__()
    proc.wait_for_url(timeout=180)
    return proc


def _stop(proc: AppProcess) -> None:
    code, _ = proc.stop(signal.SIGINT)
    assert code == 0, proc.output[-3000:]


def _library_page(browser, url):
    page = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    page.get_by_role("tab", name="Library").click()
    page.wait_for_selector(LINE)
    return page


def _photos(folder: Path, n: int, size=(320, 240)) -> list[Path]:
    from image_corpus import gradient

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        w, h = (size if i % 3 else size[::-1])  # some portrait: thumbnails must keep the shape
        path = folder / f"IMG_{i:04d}.jpg"
        gradient(w, h, seed=7 + i).rotate(17 * i).save(path, quality=85)
        out.append(path)
    return out


def _line(page) -> str:
    return page.inner_text(LINE)


def _no_horizontal_scroll(page) -> None:
    wide = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert wide <= 0, f"the page scrolls sideways by {wide}px at 1280x720"


def test_progress_moves_and_stop_answers_within_two_seconds(installed, browser, shots, tmp_path):
    folder = tmp_path / "Holiday"
    _photos(folder, 40)
    app = _serve(LOUPE_TEST_SLOW_CAPTION="0.25", PYTHONPATH=str(SLOW_SITE))
    try:
        page = _library_page(browser, app.url)
        box = page.locator("#loupe-lib-progress").bounding_box()
        assert box and box["height"] >= 40, box  # there, with height, before any scan
        assert "Ready" in _line(page)
        _no_horizontal_scroll(page)
        page.screenshot(path=str(shots / "library-idle.png"))

        page.locator("#loupe-lib-folder textarea, #loupe-lib-folder input").first.fill(str(folder))
        page.locator("#loupe-lib-scan").click()
        seen: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            text = _line(page)
            if re.search(r"\d+ of 40", text) and text not in seen:
                seen.append(text)
            counts = {int(re.match(r"(\d+) of", t).group(1)) for t in seen if re.match(r"\d+ of", t)}
            if len(counts) >= 3 and max(counts) >= 12:
                break
            time.sleep(0.2)
        assert len({t.split(" · ")[0] for t in seen}) >= 3, seen  # the count moved, more than once
        moving = seen[-1]
        assert re.search(r"IMG_\d{4}\.jpg", moving), moving
        assert re.search(r"photos/s", moving) and re.search(r"about .* left", moving), moving
        page.screenshot(path=str(shots / "library-scanning.png"))
        # Scan pressed again while it runs: refused in one line (it used to queue a second scan
        # that started by itself when this one ended or was stopped)
        # (with the keyboard: Enter on the focused Scan button; the focus stays there)
        page.locator("#loupe-lib-scan").focus()
        page.keyboard.press("Enter")
        page.wait_for_selector(TOAST, timeout=10_000)
        toast = page.locator(TOAST).first.inner_text()
        assert "A scan of Holiday is already running: press Stop to end it, or wait for it to finish." in toast, toast
        assert page.evaluate("document.activeElement.id") == "loupe-lib-scan"
        page.screenshot(path=str(shots / "library-scan-pressed-again.png"))
        from a11y import report, serious, violations

        time.sleep(1.0)  # the toast fades in: axe would measure its text's contrast mid-fade
        found = serious(violations(page.evaluate))
        assert not found, report(found)
        page.evaluate("document.querySelectorAll('.toast-close').forEach(b => b.click())")
        # ...and in another page (a second browser tab, or this one reloaded): refused the same
        # way, with Stop enabled there, as the message says (it stayed disabled)
        other = _library_page(browser, app.url)
        other.locator("#loupe-lib-scan").click()
        other.wait_for_selector(TOAST, timeout=10_000)
        assert "A scan of Holiday is already running" in other.locator(TOAST).first.inner_text()
        other.wait_for_function("!document.querySelector('#loupe-lib-stop').disabled", timeout=5_000)
        other.close()
        # the grid fills during the scan
        page.wait_for_selector("#loupe-lib-grid .lib-card", timeout=30_000)

        t0 = time.monotonic()
        page.locator("#loupe-lib-stop").click()
        page.wait_for_function(f"document.querySelector('{LINE}').innerText.startsWith('Stopped')",
                               timeout=10_000, polling=50)
        took = time.monotonic() - t0
        stopped = _line(page)
        page.screenshot(path=str(shots / "library-stopped.png"))
        assert took <= 2.0, f"Stop took {took:.1f} s"
        kept = int(re.search(r"Stopped: (\d+) photos? captioned and kept; scan again to resume", stopped).group(1))
        assert 0 < kept < 40, stopped
        from engine import library

        assert library.photos(folder=str(folder)).total >= kept  # kept really means recorded

        # resume: the rest only, the kept ones counted as already done
        page.locator("#loupe-lib-scan").click()
        page.wait_for_function(f"/^\\d+ of 40/.test(document.querySelector('{LINE}').innerText)", timeout=30_000,
                               polling=50)
        # Stop then Scan at once: the press resumes as soon as the stopping scan has ended (it was
        # refused as "already running"), with Stop enabled for it; nothing else is queued
        page.evaluate("['#loupe-lib-stop', '#loupe-lib-scan'].forEach(b => document.querySelector(b).click())")
        refused, stop_on = [], []
        deadline = time.monotonic() + 60
        while not _line(page).startswith("Done") and time.monotonic() < deadline:
            refused += page.locator(TOAST).all_inner_texts()
            stop_on.append(page.locator("#loupe-lib-stop").is_enabled())
            time.sleep(0.1)
        assert not refused, refused
        assert any(stop_on[-10:]), stop_on  # Stop is there for the resumed scan
        done = _line(page)
        assert re.search(r"40 photos, (\d+) captioned, (\d+) already done", done), done
        again, already = map(int, re.search(r"(\d+) captioned, (\d+) already done", done).groups())
        assert again + already == 40 and already >= kept, done
        assert [s["status"] for s in library.scans()] == ["cancelled", "cancelled", "done"]  # none queued by a press
    finally:
        _stop(app)


def test_review_edit_undo_and_export(installed, browser, shots, tmp_path):
    folder = tmp_path / "Walk"
    originals = _photos(folder, 6, size=(400, 260))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a photo")
    reveal_log = tmp_path / "revealed.txt"
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    opener = fake_bin / "xdg-open"  # the file manager: records what it was asked to open
    opener.write_text(f"#!/bin/sh\necho \"$@\" >> {reveal_log}\n")
    opener.chmod(0o755)
    app = _serve(PATH=f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    try:
        page = _library_page(browser, app.url)
        page.locator("#loupe-lib-folder textarea, #loupe-lib-folder input").first.fill(str(folder))
        page.get_by_text("Scan options").click()
        page.get_by_label("Rename files from captions").check()
        page.locator("#loupe-lib-scan").click()
        page.wait_for_function(f"document.querySelector('{LINE}').innerText.startsWith('Done')", timeout=180_000)
        assert "7 photos, 6 captioned" in _line(page) and "1 could not be read" in _line(page), _line(page)
        cards = page.locator("#loupe-lib-grid .lib-card")
        page.wait_for_function("document.querySelectorAll('#loupe-lib-grid .lib-card').length === 7")
        captions = page.locator("#loupe-lib-grid .lib-card:not(:has(.failed)) .lib-cap").all_inner_texts()
        assert len(captions) == 6 and all(re.search(r"[a-z]", c) for c in captions), captions
        labels = page.locator("#loupe-lib-grid .lib-card:not(:has(.failed)) .lib-labels").first.inner_text()
        assert re.search(r"\d+%", labels), labels
        # aspect-correct thumbnails: a portrait photo's card image is taller than wide
        shapes = page.evaluate("[...document.querySelectorAll('#loupe-lib-grid img')].map(i => i.naturalWidth / i.naturalHeight)")
        assert any(r < 1 for r in shapes) and any(r > 1 for r in shapes), shapes
        assert "page 1 of 1" in page.inner_text("#loupe-lib-page")
        _no_horizontal_scroll(page)
        page.get_by_text("Scan options").click()  # closed again, as a person would
        page.locator("#loupe-lib-grid").scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "library-grid.png"))
        assert not any(p.exists() for p in originals), "rename was chosen: the photos have new names"

        # filter by state: only the broken file
        page.locator("#loupe-lib-state input").click()
        page.get_by_role("option", name="Could not be read").click()
        page.wait_for_function("document.querySelectorAll('#loupe-lib-grid .lib-card').length === 1")
        assert "broken.jpg" in cards.first.inner_text()
        page.locator("#loupe-lib-state input").click()
        page.get_by_role("option", name="All photos").click()
        page.wait_for_function("document.querySelectorAll('#loupe-lib-grid .lib-card').length === 7")

        # undo the renames from the tab
        page.get_by_text("Undo renames, export, scan history").click()
        page.locator("#loupe-lib-undo").click()
        page.wait_for_selector("#loupe-lib-undo-said >> text=Put back 6")
        assert all(p.exists() for p in originals)
        history = page.locator("#loupe-lib-history").inner_text()
        assert str(folder) in history, history

        # export CSV to a chosen path
        target = tmp_path / "out" / "captions.csv"
        target.parent.mkdir()
        page.get_by_label("Save to (optional)").fill(str(target))
        page.locator("#loupe-lib-export").click()
        page.wait_for_selector("#loupe-lib-export-said >> text=Exported")
        rows = list(csv.DictReader(target.open(encoding="utf-8-sig")))
        assert len(rows) >= 6 and {Path(r["path"]).name for r in rows} >= {p.name for p in originals}, rows[:2]

        # select a photo, edit its caption, save: written to the sidecar and marked as the person's
        page.locator("#loupe-lib-text input, #loupe-lib-text textarea").first.fill("")
        page.locator("#loupe-lib-folder textarea, #loupe-lib-folder input").first.press("Enter")
        page.wait_for_function("document.querySelectorAll('#loupe-lib-grid .lib-card').length === 7")
        card = page.locator("#loupe-lib-grid .lib-card", has_text="IMG_0001.jpg")
        # The grid had 7 cards before the Enter too: the refresh can replace them just as the
        # click lands (a clean-clone CI run lost that click; the editor never filled). A person
        # would click again: so does the test, a few times.
        for attempt in range(4):
            card.click()
            try:
                page.wait_for_function("document.querySelector('#loupe-lib-caption textarea').value.length > 0",
                                       timeout=15_000)
                break
            except PlaywrightTimeout:
                if attempt == 3:
                    raise
        page.wait_for_selector("#loupe-lib-photo img")
        shown = page.locator("#loupe-lib-photo img").bounding_box()
        natural = page.evaluate("(() => { const i = document.querySelector('#loupe-lib-photo img'); return [i.naturalWidth, i.naturalHeight]; })()")
        assert shown["width"] <= natural[0] + 1, (shown, natural)  # never blown up past its pixels
        assert "IMG_0001.jpg" in page.inner_text("#loupe-lib-path")
        page.screenshot(path=str(shots / "library-selected.png"))
        mine = "Early morning walk along the river, my own words"
        page.locator("#loupe-lib-caption textarea").fill(mine)
        page.locator("#loupe-lib-save").click()
        page.wait_for_selector("#loupe-lib-by >> text=Your caption")
        page.screenshot(path=str(shots / "library-edited.png"))
        photo = folder / "IMG_0001.jpg"
        sidecar = photo.with_name(photo.name + ".xmp")
        read = json.loads(subprocess.run(["exiftool", "-j", "-XMP-dc:Description", str(sidecar)],
                                         capture_output=True, text=True, check=True).stdout)[0]
        assert read["Description"] == mine, read
        page.wait_for_selector("#loupe-lib-grid .lib-card:has-text('Your caption')")

        # show in folder: the file manager is asked for the photo's folder
        page.locator("#loupe-lib-show").click()
        page.wait_for_selector("#loupe-lib-said >> text=in the file manager")
        for _ in range(50):
            if reveal_log.exists():
                break
            time.sleep(0.1)
        assert reveal_log.read_text().strip() == str(folder)
    finally:
        _stop(app)


def test_without_models_scan_points_at_the_download_button(tiny_sources, browser, tmp_path):
    folder = tmp_path / "Pics"
    _photos(folder, 2)
    app = _serve()
    try:
        page = _library_page(browser, app.url)
        assert page.locator("#loupe-lib-download").is_visible()
        page.locator("#loupe-lib-folder textarea, #loupe-lib-folder input").first.fill(str(folder))
        page.locator("#loupe-lib-scan").click()
        page.wait_for_selector(f"{LINE} >> text=Download the models")
        assert "loupe " not in _line(page)  # no command to type
        page.locator("#loupe-lib-download").click()
        page.wait_for_function(f"document.querySelector('{LINE}').innerText.startsWith('Models installed')",
                               timeout=180_000)
        assert not page.locator("#loupe-lib-download").is_visible()
    finally:
        _stop(app)


def test_renamed_photos_keep_their_record_for_review(installed, tmp_path):
    """A scan that renames saves the new path and then moves old -> new in one transaction:
    the move must not clear the record that already holds the new path."""
    from engine import library

    folder = tmp_path / "Walk"
    _photos(folder, 3)
    assert library.scan(folder, rename=True).renamed == 3
    page = library.photos(folder=str(folder))
    assert page.total == 3 and all(Path(item.path).is_file() for item in page.items), page
    assert library.undo() == 3
    assert {Path(item.path).name for item in library.photos(folder=str(folder)).items} == \
        {f"IMG_{i:04d}.jpg" for i in range(3)}


def test_progress_line_reads_as_a_person_would_say_it():
    from desktop.tabs.library import describe_progress
    from engine.library import ScanProgress

    p = ScanProgress(12, 240, 0.8, 285.0, "/p/IMG_0041.jpg", inferred=12, current="/p/IMG_0042.jpg",
                     phase="captioning")
    assert describe_progress(p) == ("12 of 240 · IMG_0042.jpg · 0.8 photos/s · about 5 min left", 0.05)
    first = ScanProgress(0, 0, 0.0, None, "", phase="finding")
    assert describe_progress(first) == ("Finding photos…", None)


def test_save_shows_someone_elses_description_and_replaces_it_only_on_a_second_save(installed, tmp_path):
    """The photo panel's Save, as a click runs it: the first Save shows the description someone
    wrote and writes nothing; a second Save of the same text replaces it (exiftool reads it)."""
    from desktop.tabs.library import save_caption
    from engine import library

    folder = tmp_path / "Garden"
    photo = _photos(folder, 1)[0]
    subprocess.run(["exiftool", "-q", "-overwrite_original", "-XMP-dc:Description=Grandma's garden, 1998",
                    str(photo)], check=True)
    library.scan(folder)
    sidecar = photo.with_name(photo.name + ".xmp")
    before = sidecar.read_bytes()
    said, *_, confirm = save_caption(str(photo), "Roses by the shed", str(folder), "", "all", 0, None)
    assert "Grandma&#x27;s garden, 1998" in said and "Save again" in said  # the panel's HTML
    assert sidecar.read_bytes() == before
    said, *_, confirm = save_caption(str(photo), "Roses by the shed", str(folder), "", "all", 0, confirm)
    assert said.startswith("**Your caption**") and confirm is None
    out = subprocess.run(["exiftool", "-j", "-XMP-dc:Description", str(sidecar)], capture_output=True, text=True)
    assert json.loads(out.stdout)[0]["Description"] == "Roses by the shed"
