""""Share on this network" in Loupe's own page: choose the address and how long, start, see the
link, its QR code and the counts, stop. Shown to the person at this computer only (the shared
page never has it)."""
from __future__ import annotations

import threading
import time
from typing import Any

import gradio as gr

from desktop.share import session
from desktop.share.addresses import network_addresses
from desktop.share.qr import qr_svg

DURATIONS = [("15 minutes", 900), ("1 hour", 3600), ("4 hours", 4 * 3600), ("8 hours", 8 * 3600)]

EXPLAIN = (
    "Lets a phone or another computer **on the same network** use Loupe's **Caption** and "
    "**Classify** tabs through a link with its own secret. Your library, models, settings and "
    "files are not shared. The share ends when you stop it, when its time is up or when Loupe "
    "closes; the link then stops working and the photos visitors sent are deleted.\n\n"
    "⚠ The link uses plain HTTP: others on this network could read the photos and captions "
    "sent over it. There is no public link: nothing leaves this network.")


def _status(share: session.Share | None) -> str:
    if share is None:
        last = session._current
        if last is not None and last.ended.is_set():
            return (f"Not sharing. The last share ended ({last.end_reason}): {last.visitors} "
                    f"visitors, {last.captioned} captioned, {last.classified} classified.")
        return "Not sharing."
    left = max(0, int(share.ends_at - time.time()))
    until = time.strftime("%H:%M", time.localtime(share.ends_at))
    return (f"**Sharing** on `{share.base_url}` until {until} ({left // 60} min left) · "
            f"**{share.visitors}** visitors · **{share.captioned}** photos captioned · "
            f"**{share.classified}** classified")


def _view() -> tuple:
    """Updates for (start, stop, link, qr, status, timer, where, length)."""
    share = session.current()
    on = share is not None
    qr = ""
    if on:
        qr = (f'<div class="loupe-share-qr" role="img" aria-label="QR code of the share link">'
              f'{qr_svg(share.url)}</div>')
    return (gr.update(visible=not on), gr.update(visible=on),
            gr.update(value=share.url if on else "", visible=on),
            gr.update(value=qr, visible=on), _status(share), gr.Timer(active=on),
            gr.update(visible=not on), gr.update(visible=not on))


def start(where: str | None, seconds: int | None) -> tuple:
    if not where:
        raise gr.Error("This computer has no network address to share on: connect it to a "
                       "network first.", title="Loupe")
    # Built in a thread of its own: gradio treats components made inside an event handler as
    # parts of the running page (gr.render), which the share's separate Blocks are not.
    failed: list[BaseException] = []

    def run() -> None:
        try:
            session.start_share(where, float(seconds or session.DEFAULT_SECONDS))
        except BaseException as exc:  # handed to the handler's thread below
            failed.append(exc)

    worker = threading.Thread(target=run, name="loupe-share-start")
    worker.start()
    worker.join()
    if failed and isinstance(failed[0], session.ShareError):
        raise gr.Error(f"Cannot share: {failed[0]}", title="Loupe")
    if failed:
        raise failed[0]
    return _view()


def stop() -> tuple:
    session.stop_share("stopped")
    return _view()


def refresh() -> tuple:
    return _view()


def share_panel(demo: gr.Blocks) -> None:
    """The panel, inside `demo` while it is being built."""
    addresses = network_addresses()
    with gr.Accordion("Share on this network", open=False, elem_id="loupe-share"):
        gr.Markdown(EXPLAIN)
        with gr.Row():
            where = gr.Dropdown([(a.label, a.ip) for a in addresses],
                                value=addresses[0].ip if addresses else None,
                                label="Network address", elem_id="loupe-share-address",
                                info=None if addresses else "No network found: connect to one.")
            length = gr.Dropdown(DURATIONS, value=session.DEFAULT_SECONDS, label="Share for",
                                 elem_id="loupe-share-length")
        with gr.Row():
            start_btn = gr.Button("Start sharing", variant="primary", elem_id="loupe-share-start")
            stop_btn = gr.Button("Stop sharing", variant="stop", visible=False,
                                 elem_id="loupe-share-stop")
        with gr.Row():
            with gr.Column(scale=2):
                link = gr.Textbox(label="Link (it carries the access: give it only to whom you mean)",
                                  buttons=["copy"], interactive=False, visible=False,
                                  elem_id="loupe-share-link")
                status = gr.Markdown("Not sharing.", elem_id="loupe-share-status")
            with gr.Column(scale=1, min_width=200):
                qr = gr.HTML(visible=False, elem_id="loupe-share-qr")
        timer = gr.Timer(2.0, active=False)
    outputs: list[Any] = [start_btn, stop_btn, link, qr, status, timer, where, length]
    hidden = dict(api_visibility="private", show_progress="hidden")
    start_btn.click(start, [where, length], outputs, api_visibility="private")
    stop_btn.click(stop, None, outputs, api_visibility="private")
    timer.tick(refresh, None, outputs, **hidden)
    demo.load(refresh, None, outputs, **hidden)  # a share started by `--share`, or a reload


# gradio's "stop" red with white text is below WCAG AA contrast (axe-core); a darker red is not
CSS = "#loupe-share-stop {background: #b91c1c; border-color: #b91c1c; color: #fff}\n"


def add_share_panel(demo: gr.Blocks) -> gr.Blocks:
    """`demo` (Loupe's page, already built) with the panel added at its end (and its CSS)."""
    with demo:
        share_panel(demo)
    kwargs = getattr(demo, "loupe_mount_kwargs", None)
    if kwargs is not None:
        kwargs["css"] = kwargs.get("css", "") + CSS
    return demo
