"""A visitor's browser in a few lines of httpx: the token handshake, an upload, and one event
through gradio's queue (join, then the SSE stream), as the shared page itself does them."""
from __future__ import annotations

import contextlib
import json
import uuid
from pathlib import Path
from typing import Iterator

import httpx


@contextlib.contextmanager
def visitor(url: str, timeout: float = 60) -> Iterator[httpx.Client]:
    """A client that opened the share's link (holds its cookie). `url` carries the token."""
    base, _, query = url.partition("?")
    with httpx.Client(base_url=base, timeout=timeout) as client:
        r = client.get("/?" + query)
        assert r.status_code in (200, 303) and client.cookies, (r.status_code, r.text)  # share, local
        yield client


def fn_index(config: dict, output_elem: str, n_inputs: int) -> int:
    """The first event whose output is the component with `output_elem` and that has `n_inputs`
    inputs: the step of the Caption or Classify button's chain that answers (the button first
    shows its working state, then runs the model)."""
    ids = {c["id"]: c for c in config["components"]}
    out = next(i for i, c in ids.items() if c.get("props", {}).get("elem_id") == output_elem)
    for index, dep in enumerate(config["dependencies"]):
        if dep["outputs"] == [out] and len(dep["inputs"]) == n_inputs and \
                any(t[1] in ("click", "then") for t in dep["targets"]):  # the button's step that answers
            return index
    raise LookupError(output_elem)


def upload(client: httpx.Client, path: Path | str, data: bytes | None = None) -> dict:
    name = Path(path).name
    r = client.post("/gradio_api/upload",
                    files={"files": (name, data if data is not None else Path(path).read_bytes())})
    assert r.status_code == 200, (r.status_code, r.text)
    (stored,) = r.json()
    return {"path": stored, "orig_name": name, "meta": {"_type": "gradio.FileData"}}


def call(client: httpx.Client, index: int, data: list) -> tuple[str, object]:
    """Run event `index` with `data`: ("ok", outputs), ("error", message) or ("refused", status)."""
    session = uuid.uuid4().hex[:12]
    r = client.post("/gradio_api/queue/join", json={"data": data, "fn_index": index,
                    "session_hash": session, "event_data": None, "trigger_id": None})
    if r.status_code != 200:
        return "refused", r.status_code
    with client.stream("GET", f"/gradio_api/queue/data?session_hash={session}") as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            msg = json.loads(line[5:])
            if msg.get("msg") == "process_completed":
                out = msg.get("output") or {}
                if msg.get("success"):
                    return "ok", out.get("data")
                return "error", out.get("error")
    return "error", "stream ended"
