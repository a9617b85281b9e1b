"""Loupe's desktop shell: the Gradio UI, the guarded local server and the native window.

Nothing heavy is imported here: `loupe caption` (the CLI) must not pay for gradio or Qt.
"""
from desktop import gradio_stubs as _gradio_stubs

_gradio_stubs.install()  # before anything imports gradio (gradio_stubs.py says why)
