"""Shared by the hardening suites: where figures go, and the opt-in for the slow runs."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def require_slow(request) -> None:
    """Skip a slow test unless it was asked for: `-m slow` (or a -m expression selecting it) or
    LOUPE_HARDEN_SLOW=1 (scripts/harden.sh). pyproject's addopts deselect the slow marker already;
    this also holds when a run replaces -m (`-m ''`, `-m window`). scripts/harden.sh fails when it
    finds this skip's message in its log: keep the two in step."""
    expr = request.config.getoption("markexpr") or ""
    if os.environ.get("LOUPE_HARDEN_SLOW") == "1" or ("slow" in expr and "not slow" not in expr):
        return
    pytest.skip("slow: run with -m slow or scripts/harden.sh")


def record(section: str, figures: dict, quiet: bool = False) -> None:
    """Print the figures and merge them into artifacts/hardening.json."""
    if not quiet:
        print(f"\n[hardening] {section}: " + json.dumps(figures, sort_keys=True))
    out = ROOT / "artifacts" / "hardening.json"
    out.parent.mkdir(exist_ok=True)
    try:
        data = json.loads(out.read_text())
    except (OSError, ValueError):
        data = {}
    data[section] = {**figures, "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    out.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
