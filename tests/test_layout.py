"""The map holds: `engine` is a library with no UI; the command and the window sit on top."""
from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UI = ("gradio", "PySide6", "PyQt6", "PyQt5", "qtpy", "webview", "desktop", "loupe", "click")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_engine_source_imports_no_ui_and_no_front_end():
    offenders = {str(p.relative_to(ROOT)): sorted(_imports(p) & set(UI))
                 for p in (ROOT / "engine").rglob("*.py") if _imports(p) & set(UI)}
    assert offenders == {}


def test_importing_every_engine_module_loads_no_ui():
    import engine

    modules = [m.name for m in pkgutil.walk_packages(engine.__path__, "engine.")]
    assert "engine.library.scanner" in modules and "engine.models.registry" in modules
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            f"print(sorted(n for n in {UI!r} if n in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_the_command_line_imports_no_window():
    proc = subprocess.run([sys.executable, "-c", "import sys, loupe.cli; "
                           "print(sorted(n for n in ('gradio', 'PySide6', 'webview', 'desktop') if n in sys.modules))"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr
