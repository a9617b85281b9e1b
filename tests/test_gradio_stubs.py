"""desktop.gradio_stubs: gradio imported through desktop skips its type-stub writer (no source
read, parsed or written at import) and works as before."""
from __future__ import annotations

import subprocess
import sys


def test_gradio_through_desktop_writes_and_reads_no_stubs():
    code = """
import sys, builtins
import desktop
from desktop import gradio_stubs
opened = []
real_open = builtins.open
import io, pathlib
real_read = pathlib.Path.read_text
pathlib.Path.read_text = lambda self, *a, **k: (opened.append(str(self)), real_read(self, *a, **k))[1]
import gradio as gr
from gradio import component_meta
assert component_meta.create_or_modify_pyi is gradio_stubs._no_stubs
assert not any(isinstance(f, gradio_stubs._Finder) for f in sys.meta_path)  # stepped aside
stubs = [p for p in opened if p.endswith((".pyi", ".py")) and "/gradio/" in p]
assert not stubs, stubs[:3]
with gr.Blocks() as demo:  # components and their events are made as before
    box = gr.Textbox(label="Caption")
    box.change(lambda s: s, box, box)
assert demo.config["components"]
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]
