"""The working state shown next to a pressed button while a photo is captioned or classified,
and why the first one after start takes longer (said while it lasts)."""
from __future__ import annotations

import html
from typing import Any, Callable

import gradio as gr

from engine import get_engine, weights
from engine.models.registry import for_task


def first_use_words(task: str) -> str:
    """Why this request waits longer than the next ones, or "" when the model is ready.

    The first caption after start loads the model from disk (bench/desktop_truth.py: ~12 s for
    BLIP-base's 990 MB on a busy 2-core machine) and its first forward pass sets up its kernels
    (a further ~30 % of a caption); on the very first start with int8 precision (the captioner
    on x86 CPUs) the weights are also converted to int8 once and kept beside them. Cheap to ask:
    no torch import, no CPU probe (the line must show at once)."""
    spec = for_task(task)
    if not weights.is_installed(spec.name) or get_engine().is_loaded(task):
        return ""
    what = "captioning model" if task == "caption" else "classifier"
    return (f"The first one after start takes longer: the {what} is being loaded (on the very first "
            "start it is also prepared for this computer once).")


def working_html(task: str) -> str:
    """The line under the button while the request runs: what happens, and why it is slow when it is."""
    verb = "Captioning" if task == "caption" else "Classifying"
    why = first_use_words(task)
    note = f'<div class="loupe-working-why">{html.escape(why)}</div>' if why else ""
    return (f'<div class="loupe-working"><span class="loupe-spinner" aria-hidden="true"></span>'
            f'{verb} the photo…</div>{note}')


def done_html(text: str, seconds: float | None = None) -> str:
    """After the answer: a short line for the eye, and the answer itself for a screen reader
    (the status region is live)."""
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    return (f'<span class="loupe-done" aria-hidden="true">Done{took}.</span>'
            f'<span class="loupe-sr">{html.escape(text)}</span>')


def _done(text: Any) -> str:
    if not text:
        return ""
    if isinstance(text, dict):  # gr.Label's value: {"label": top, "confidences": [...]}
        text = "Top label: " + str(text.get("label", ""))
    return done_html(str(text))


def wire(trigger: Callable, fn: Callable, inputs: list, output: Any, status: gr.HTML, task: str,
         **kwargs: Any) -> Any:
    """`trigger(fn, inputs, output)` with a working state: the status line under the button says
    what happens at once (scrolled into view), then the answer is scrolled into view and read out.
    Returns the event that runs `fn` (for `.failure`); `kwargs` go to it (api_name, concurrency)."""
    # again once the line has its text (its height grows when the answer to "why" arrives)
    scroll_status = (f"(...a) => {{ const go = () => document.querySelector('#{status.elem_id}')?.scrollIntoView("
                     "{block: 'nearest'}); go(); setTimeout(go, 300); setTimeout(go, 900); return a; }")
    scroll_output = (f"(...a) => {{ document.querySelector('#{output.elem_id}')?.scrollIntoView("
                     "{block: 'nearest'}); return a; }")
    shown = trigger(lambda path: working_html(task) if path else "", inputs[:1], status,
                    show_progress="hidden", api_visibility="private", js=scroll_status)
    event = shown.then(fn, inputs, output, show_progress="hidden", **kwargs)
    event.success(_done, output, status, api_visibility="private", show_progress="hidden",
                  js=scroll_output)
    event.failure(lambda: "", None, status, api_visibility="private", show_progress="hidden")
    return event


CSS = """
.loupe-working {display: flex; align-items: center; gap: 0.5em; font-weight: 600}
.loupe-working-why {font-size: 0.9em; margin-top: 0.2em}
.loupe-spinner {width: 1em; height: 1em; border: 2px solid var(--color-accent); border-right-color: transparent;
                border-radius: 50%; animation: loupe-spin 1s linear infinite; flex: none}
@keyframes loupe-spin {to {transform: rotate(360deg)}}
@media (prefers-reduced-motion: reduce) {.loupe-spinner {animation: none}}
.loupe-sr {position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap}
#loupe-caption-status, #loupe-classify-status {min-height: 1.6em}
"""
