"""What the wheel ships: Loupe's code, and no test-only code or test hooks.

The wheel is built from a copy of the package sources (setuptools writes build/ and *.egg-info
next to the sources it builds; the checkout stays clean).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST_ONLY = re.compile(r"(^|/)(tests?|testing|conftest|test_\w+|\w+_test|greet\w*)(\.py|/)")


def test_wheel_holds_no_test_code_or_test_hooks(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for package in ("engine", "desktop", "loupe"):
        shutil.copytree(ROOT / package, src / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps",
                          "--no-build-isolation", "-q", "-w", str(tmp_path / "dist")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    (wheel,) = (tmp_path / "dist").glob("loupe-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        sources = {n: zf.read(n).decode("utf-8", errors="replace") for n in names
                   if n.endswith(".py")}
    assert {"desktop/__main__.py", "desktop/window.py", "desktop/server.py", "loupe/cli.py",
            "engine/images.py"} <= set(names), names
    assert [n for n in names if TEST_ONLY.search(n)] == []
    # No environment variable of ours may make the app run or report anything for a test.
    hooks = {n: sorted(set(re.findall(r"LOUPE_TEST_\w+", text))) for n, text in sources.items()}
    assert {n: h for n, h in hooks.items() if h} == {}
    assert not [n for n, text in sources.items() if "--greet" in text]
