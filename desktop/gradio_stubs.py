"""gradio without its type-stub writer: ~1.1 s off every start of the window and `--browser`.

At import, gradio 6.31's `ComponentMeta` calls `component_meta.create_or_modify_pyi` for every
component class: it reads and parses the class's source file and its `.pyi` stub, rebuilds the
stub's text, and writes the `.pyi` into gradio's own package folder where one is missing (inside
an app bundle too). That keeps editors' type hints up to date for people who write custom
components; Loupe defines none and reads no stubs at run time. Measured here: `import gradio`
2.42-2.51 s -> 1.30-1.36 s wall (bench/README.md, "Cold start"). Nothing else about gradio changes:
`install` swaps only that one function, right after `gradio.component_meta` runs and before any
component class is made.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from typing import Any

MODULE = "gradio.component_meta"


def _no_stubs(*_: Any, **__: Any) -> None:
    """Stands in for `create_or_modify_pyi`: no stub is read, parsed or written."""


class _Finder(importlib.abc.MetaPathFinder):
    """Finds `gradio.component_meta` through the finders after it (the file system's, a
    bundle's archive) and patches the module once it has run; then steps aside."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name != MODULE:
            return None
        sys.meta_path.remove(self)
        spec = None
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find is not None else None
            if spec is not None:
                break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec  # not found, or a loader of another kind: imported as it is
        run = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            run(module)
            if hasattr(module, "create_or_modify_pyi"):
                module.create_or_modify_pyi = _no_stubs

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install() -> None:
    """Skip gradio's stub writer from now on (idempotent; light: imports nothing of gradio)."""
    loaded = sys.modules.get(MODULE)
    if loaded is not None:  # gradio came first: its classes are made; later ones skip it
        loaded.create_or_modify_pyi = _no_stubs
        return
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
