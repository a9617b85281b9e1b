"""The working state shown next to a pressed button while a photo is captioned or classified,
and why the first one after start takes longer (said while it lasts)."""
from __future__ import annotations

import html
from typing import Any, Callable

import gradio as gr

from engine import get_engine, weights
from engine.models.registry import for_task
from engine.quantize import cache_paths


def first_use_words(task: str) -> str:
    """Why this request waits longer than the next ones, or "" when the model is ready.

    The first caption after start loads the model from disk (a few seconds); on the very first
    start with int8 precision it also converts the weights to int8 once and keeps them (the int8
    cache), which takes longer. The first forward pass after a load also sets up its kernels."""
    spec = for_task(task)
    engine = get_engine()
    if engine.is_loaded(task) or not weights.is_installed(spec.name):
        return ""
    what = "captioning model" if task == "caption" else "classifier"
    if engine.placement_for(spec).precision == "int8":
        try:
            data, _ = cache_paths(weights.model_dir(spec.name))
        except Exception:  # the request itself says what is wrong with the weights
            return ""
        if not data.is_file():
            return (f"Preparing the {what} for this computer (once, on the first start: its weights are "
                    f"converted to int8 and kept); this first one takes longer.")
    return f"Loading the {what} (once after each start); this first one takes a few seconds longer."


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
    scroll_status = (f"(...a) => {{ document.querySelector('#{status.elem_id}')?.scrollIntoView("
                     "{block: 'nearest'}); return a; }")
    scroll_output = (f"(...a) => {{ document.querySelector('#{output.elem_id}')?.scrollIntoView("
                     "{block: 'nearest'}); return a; }")
    shown = trigger(lambda path: working_html(task) if path else "", inputs[:1], status, queue=False,
                    show_progress="hidden", api_visibility="private", js=scroll_status)
    event = shown.then(fn, inputs, output, show_progress="hidden", **kwargs)
    event.success(_done, output, status, api_visibility="private", show_progress="hidden", queue=False,
                  js=scroll_output)
    event.failure(lambda: "", None, status, api_visibility="private", show_progress="hidden", queue=False)
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
