"""Accessibility and the keyboard, in a real browser (Debian's chromium against `loupe --browser`)
and in the real window (Qt WebEngine, through tests/devtools.py): axe-core on every tab with no
critical or serious violation; from the page's start, Tab and Enter alone caption a photo and
reach the caption; and an export saved from the window lands where the person chose.

Screenshots (1280x720) go to artifacts/a11y-*.png."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from a11y import report, serious, violations
from app_process import AppProcess, XDisplay, missing_qt_libs, missing_tools, wait_for, wait_mounted
from devtools import DevToolsPage, remote_debugging_env, unused_port

TABS = ("Caption", "Classify", "Library", "Models")
OPEN_ACCORDIONS = ("document.querySelectorAll('.tabitem:not([style*=\"display: none\"]) button.label-wrap:not(.open)')"
                   ".forEach((b) => b.click())")
CAPTION = "document.querySelector('#loupe-caption textarea')"


def _tab_js(name: str) -> str:
    return (f"[...document.querySelectorAll('button[role=tab]')].find((b) => b.textContent.trim() === "
            f"'{name}').click()")


def _every_tab(evaluate, shot) -> dict[str, list]:
    """axe on each tab, its accordions open (the hidden options are checked too)."""
    found = {}
    for tab in TABS:
        evaluate(_tab_js(tab))
        time.sleep(0.4)
        evaluate(OPEN_ACCORDIONS)
        time.sleep(0.6)
        found[tab] = serious(violations(evaluate))
        shot(tab)
    return found


@pytest.mark.browser
def test_keyboard_alone_captions_a_photo_and_every_tab_passes_axe(installed, browser, artifacts):
    app = AppProcess("--browser", env=dict(os.environ))
    with app:
        url = app.wait_for_url(timeout=120)
        page = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
        page.set_default_timeout(60_000)
        page.goto(url)
        page.wait_for_selector("#loupe-caption")
        # From the page's start, Tab to an example photo, Enter: it is captioned.
        focused = "document.activeElement && (document.activeElement.getAttribute('aria-label') || '')"
        for _ in range(80):
            page.keyboard.press("Tab")
            if page.evaluate(focused) == "Example photo: cat":
                break
        else:
            pytest.fail("Tab never reached the example photos")
        page.keyboard.press("Enter")
        page.wait_for_function(f"{CAPTION}.value.length > 0")
        page.wait_for_selector("#loupe-caption-status >> text=Done")
        # ...and Tab goes on to the caption itself: read-only (not disabled), named, not empty.
        for _ in range(40):
            page.keyboard.press("Tab")
            if page.evaluate(f"document.activeElement === {CAPTION}"):
                break
        else:
            pytest.fail("Tab never reached the caption")
        box = page.evaluate(f"(() => {{ const b = {CAPTION}; return [b.readOnly, b.disabled, "
                            "b.getAttribute('aria-label'), b.value]; })()")
        assert box[:3] == [True, False, "Caption (alt text)"] and box[3].strip(), box
        # the answer is read out: the status under the button is a live region holding the caption
        live = page.evaluate("(() => { const s = document.querySelector('#loupe-caption-status');"
                             " return [s.getAttribute('aria-live'), s.innerText, s.textContent]; })()")
        assert live[0] == "polite" and box[3].strip() in live[2], live
        page.screenshot(path=str(artifacts / "a11y-browser-keyboard-captioned.png"))

        found = _every_tab(page.evaluate, lambda tab: page.screenshot(
            path=str(artifacts / f"a11y-browser-{tab.lower()}.png")))
        assert not any(found.values()), report([v | {"tab": t} for t, vs in found.items() for v in vs])
        code, _ = app.stop(signal.SIGINT)
        assert code == 0, app.output


@pytest.mark.window
def test_every_tab_passes_axe_in_the_window_and_an_export_is_saved(installed, loupe_home, tmp_path):
    problem = missing_tools("Xvfb", "xdotool", "import", "openbox") or missing_qt_libs()
    if problem:
        pytest.fail(problem)
    artifacts = Path(__file__).resolve().parents[1] / "artifacts"
    artifacts.mkdir(exist_ok=True)
    saved = tmp_path / "Documents" / "my captions.csv"
    saved.parent.mkdir()
    with XDisplay(size="1280x720x24") as x:
        port = unused_port()
        env = x.env(LOUPE_HOME=str(loupe_home), **remote_debugging_env(port))
        env.pop("GRADIO_TEMP_DIR", None)
        proc = AppProcess(env=env)
        with proc:
            log = loupe_home / "logs" / "loupe.log"
            timings = wait_mounted(log, lambda: proc.proc.poll() is None, 120)
            assert "app_mounted" in timings, proc.output
            with DevToolsPage.attach(port, timeout=60, alive=lambda: proc.proc.poll() is None) as page:
                page.wait_for(f"!!{CAPTION}", 30)
                found = _every_tab(page.evaluate, lambda tab: x.screenshot(artifacts / f"a11y-window-{tab.lower()}.png"))
                assert not any(found.values()), report([v | {"tab": t} for t, vs in found.items() for v in vs])
                # An export from the window: the Save dialog, a name typed, the file where it was said.
                page.evaluate(_tab_js("Library"))
                page.evaluate("document.querySelector('#loupe-lib-export').click()")
                page.wait_for("!!document.querySelector('#loupe-lib-exported a')", 30)
                page.evaluate("document.querySelector('#loupe-lib-exported a').click()")
                dialog: list[str] = []
                assert wait_for(lambda: bool(dialog.extend(x.windows("^Save file$")) or dialog), 15), proc.output[-2000:]
                time.sleep(0.5)
                x.screenshot(artifacts / "a11y-window-save-dialog.png")
                subprocess.run(["xdotool", "windowactivate", "--sync", dialog[0], "key", "ctrl+a"],
                               env=x.env(), timeout=10)
                subprocess.run(["xdotool", "type", "--delay", "20", str(saved)], env=x.env(), timeout=30)
                subprocess.run(["xdotool", "key", "Return"], env=x.env(), timeout=10)
                # Qt creates the file first and writes it after; the app logs the download once Qt
                # reports it finished: read the file only then (clean-clone CI runs read the log
                # too early once, and the file while still empty once)
                assert wait_for(lambda: "saved a download to" in log.read_text(), 25), (proc.output[-2000:], log.read_text()[-2000:])
                assert saved.is_file()
                assert saved.read_text(encoding="utf-8").lstrip("\ufeff").startswith("path,"), saved.read_text()[:200]
                x.screenshot(artifacts / "a11y-window-export-saved.png")
            proc.stop()
