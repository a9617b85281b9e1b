"""axe-core in the page under test: the browser's (Playwright) or the window's (tests/devtools.py).

axe-core comes from the npm registry (tests/axe/package.json, installed by `make test` with
`npm ci --prefix tests/axe`); the test injects its script into the page and runs it there, so
the rules see the page exactly as a person's screen reader would.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

AXE_JS = Path(__file__).parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
SERIOUS = ("critical", "serious")
# WCAG 2.1 A and AA rules plus axe's best practices (names, landmarks, live regions).
RUN = ("axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', "
       "'best-practice']}, resultTypes: ['violations']})"
       ".then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, "
       "nodes: v.nodes.map(n => n.target.join(' ') + ' :: ' + n.failureSummary.split('\\n')[1]).slice(0, 6)})))")


def axe_source() -> str:
    if not AXE_JS.is_file():
        raise AssertionError(f"{AXE_JS} is missing: run `npm ci --prefix tests/axe` (make test does)")
    return AXE_JS.read_text(encoding="utf-8")


def violations(evaluate: Callable[[str], Any]) -> list[dict[str, Any]]:
    """Every axe violation of the page that `evaluate(js)` runs scripts in (injecting axe once)."""
    if not evaluate("typeof window.axe !== 'undefined'"):
        evaluate(axe_source() + "\n;true")
    return evaluate(RUN)


def serious(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The critical and serious ones: what a person with a screen reader or low vision meets."""
    return [v for v in found if v["impact"] in SERIOUS]


def report(found: list[dict[str, Any]]) -> str:
    return json.dumps(found, indent=1, ensure_ascii=False)
