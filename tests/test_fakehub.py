"""The test infrastructure itself: tiny models served by FakeHub to the REAL huggingface_hub client.

Uses the session fixtures `tiny_dir`, `hub` and `sources_file` (tests/conftest.py). Every hub call
passes `endpoint=hub.url` explicitly, and an audit hook fails the test on any connection that is
not to the loopback interface.
"""
from __future__ import annotations

import hashlib
import http.client
import io
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from fakehub import FakeHub
from tiny_models import (
    BLIP_FILES,
    BLIP_REPO,
    RESNET_FILE,
    REVISION,
    build_tiny_blip,
    build_tiny_resnet,
    file_entries,
    write_sources_json,
)

MiB = 1024 * 1024

# --------------------------------------------------------------------------- network guard

_outbound: list = []
_guard = {"on": False}


def _audit(event, args):
    if event == "socket.connect" and _guard["on"]:
        addr = args[1]
        if isinstance(addr, tuple) and addr and addr[0] not in ("127.0.0.1", "::1", "localhost"):
            _outbound.append(addr)


sys.addaudithook(_audit)


@pytest.fixture(autouse=True)
def _no_outbound_and_clean_faults(hub):
    _outbound.clear()
    _guard["on"] = True
    try:
        yield
    finally:
        _guard["on"] = False
        hub.clear_faults()
    assert not _outbound, f"connections off the loopback: {_outbound}"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hf_download(hub, filename, local_dir, **kw):
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(BLIP_REPO, filename, revision=REVISION, local_dir=local_dir,
                                endpoint=hub.url, token=False, **kw))


def _http_get(url, fh, **kw):
    from huggingface_hub.file_download import http_get

    http_get(url, fh, **kw)


def _resnet_url(hub):
    return f"{hub.url}/models/{RESNET_FILE}"


# --------------------------------------------------------------------------- tiny models


def test_tiny_blip_has_the_real_repo_file_names(tiny_dir):
    names = [e["name"] for e in file_entries(tiny_dir / "blip")]
    assert sorted(names) == sorted(BLIP_FILES)
    assert not (tiny_dir / "blip" / "model.safetensors").exists()
    assert [e["name"] for e in file_entries(tiny_dir / "resnet")] == [RESNET_FILE]


def test_builds_are_byte_identical(tiny_dir, tmp_path):
    build_tiny_blip(tmp_path / "blip")
    assert file_entries(tmp_path / "blip") == file_entries(tiny_dir / "blip")
    build_tiny_resnet(tmp_path / "resnet" / RESNET_FILE)
    assert file_entries(tmp_path / "resnet") == file_entries(tiny_dir / "resnet")


def test_sources_json_is_read_by_the_weights_table(tmp_path, hub, tiny_dir, monkeypatch):
    path = write_sources_json(tmp_path / "s.json", hub.url, tiny_dir / "blip", tiny_dir / "resnet")
    monkeypatch.setenv("LOUPE_SOURCES", str(path))
    from engine import weights

    blip, resnet = weights.source("blip-base"), weights.source("resnet18")
    assert (blip.kind, blip.repo, blip.revision, blip.endpoint) == ("hf", BLIP_REPO, REVISION, hub.url)
    assert {f.name for f in blip.files} == set(BLIP_FILES)
    assert resnet.base_url == f"{hub.url}/models"
    for src in (blip, resnet):
        folder = tiny_dir / ("blip" if src is blip else "resnet")
        for f in src.files:
            data = urllib.request.urlopen(src.url_for(f.name), timeout=5).read()
            assert (len(data), _sha(data)) == (f.size, f.sha256)
            assert data == (folder / f.name).read_bytes()


# --------------------------------------------------------------------------- real clients, no faults


def test_hf_hub_download_then_caption(hub, tiny_dir, tmp_path):
    import torch
    from PIL import Image
    from transformers import BlipForConditionalGeneration, BlipProcessor

    dest = tmp_path / "blip"
    for name in BLIP_FILES:
        got = _hf_download(hub, name, dest)
        assert got.read_bytes() == (tiny_dir / "blip" / name).read_bytes(), name
    heads = hub.paths_requested("HEAD")
    assert f"/{BLIP_REPO}/resolve/{REVISION}/pytorch_model.bin" in heads

    processor = BlipProcessor.from_pretrained(dest, local_files_only=True)
    model = BlipForConditionalGeneration.from_pretrained(dest, local_files_only=True).eval()
    images = [Image.new("RGB", (50, 40), "red"), Image.new("RGB", (64, 64), "blue")]
    with torch.inference_mode():
        out = model.generate(**processor(images=images, return_tensors="pt"), max_new_tokens=8)
    captions = processor.batch_decode(out, skip_special_tokens=True)
    assert all(c.strip() for c in captions), captions
    assert captions[0] != captions[1], captions


def test_http_get_then_classify(hub, tiny_dir, tmp_path):
    import torch
    from torchvision.models import resnet18

    target = tmp_path / RESNET_FILE
    with open(target, "wb") as fh:
        _http_get(_resnet_url(hub), fh)
    assert target.read_bytes() == (tiny_dir / "resnet" / RESNET_FILE).read_bytes()
    module = resnet18(weights=None, num_classes=1000)
    module.load_state_dict(torch.load(target, map_location="cpu", weights_only=True))
    with torch.inference_mode():
        logits = module.eval()(torch.rand(1, 3, 64, 64))
    assert logits.shape == (1, 1000)


def test_snapshot_download_uses_tree_api(hub, tiny_dir, tmp_path):
    from huggingface_hub import snapshot_download

    dest = Path(snapshot_download(BLIP_REPO, revision=REVISION, local_dir=tmp_path / "snap",
                                  endpoint=hub.url, token=False))
    for name in BLIP_FILES:
        assert (dest / name).read_bytes() == (tiny_dir / "blip" / name).read_bytes()
    assert any(p.startswith(f"/api/models/{BLIP_REPO}/tree/{REVISION}") for p in hub.paths_requested("GET"))


def test_missing_file_unknown_repo_and_other_paths(hub, tmp_path):
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    with pytest.raises(EntryNotFoundError):
        _hf_download(hub, "model.safetensors", tmp_path)
    from huggingface_hub import hf_hub_download

    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("nobody/nothing", "config.json", revision=REVISION, local_dir=tmp_path,
                        endpoint=hub.url, token=False)
    for path in ("/", "/models/nothing.pth", "/api/whatever"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(hub.url + path, timeout=5)
        assert err.value.code == 404


def test_range_requests(hub, tiny_dir):
    data = (tiny_dir / "resnet" / RESNET_FILE).read_bytes()
    req = urllib.request.Request(_resnet_url(hub), headers={"Range": "bytes=1000-"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 206
        assert resp.headers["Content-Range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
        assert resp.read() == data[1000:]
    req = urllib.request.Request(_resnet_url(hub), headers={"Range": f"bytes={len(data)}-"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 416


# --------------------------------------------------------------------------- faults


def test_tamper_is_not_detected_by_the_client(hub, tiny_dir, tmp_path):
    """Right length, wrong bytes: huggingface_hub saves it as good (Loupe must hash)."""
    good = (tiny_dir / "blip" / "pytorch_model.bin").read_bytes()
    hub.faults["pytorch_model.bin"] = "tamper"
    got = _hf_download(hub, "pytorch_model.bin", tmp_path / "a").read_bytes()
    assert len(got) == len(good) and _sha(got) != _sha(good)
    assert sum(a != b for a, b in zip(got, good)) == 1
    hub.clear_faults()
    assert _hf_download(hub, "pytorch_model.bin", tmp_path / "b").read_bytes() == good


def test_drop_is_retried_and_resumed_by_http_get(hub, tiny_dir, tmp_path):
    """A clean close mid-body: http_get resumes from its last whole 10 MiB chunk."""
    good = (tiny_dir / "resnet" / RESNET_FILE).read_bytes()
    hub.faults[RESNET_FILE] = "drop"
    n = len(hub.requests)
    buf = io.BytesIO()
    _http_get(_resnet_url(hub), buf, expected_size=len(good))
    assert buf.getvalue() == good
    gets = [h for m, p, h in hub.requests[n:] if m == "GET"]
    assert len(gets) == 2 and "Range" not in gets[0]
    resumed_at = int(gets[1]["Range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at < len(good) and resumed_at % (10 * MiB) == 0
    assert hub.fired[RESNET_FILE] == 1 and RESNET_FILE not in hub.faults


def test_drop_of_small_file_in_hf_hub_download(hub, tiny_dir, tmp_path):
    hub.faults["config.json"] = "drop"
    got = _hf_download(hub, "config.json", tmp_path)
    assert got.read_bytes() == (tiny_dir / "blip" / "config.json").read_bytes()
    assert "config.json" not in hub.faults


def test_drop_times_exhausts_retries(hub, tmp_path, monkeypatch):
    import huggingface_hub.file_download as fd

    monkeypatch.setattr(fd.time, "sleep", lambda s: None)  # the client's 1 s between retries
    hub.faults[RESNET_FILE] = "drop"
    hub.fault_times[RESNET_FILE] = 100
    with pytest.raises(Exception) as err:
        _http_get(_resnet_url(hub), io.BytesIO())
    assert "RemoteProtocolError" in type(err.value).__name__ or "peer closed" in str(err.value)


def test_reset_raises_then_caller_resumes(hub, tiny_dir, tmp_path):
    """An RST mid-body is not retried by http_get: it raises; a second call resumes."""
    good = (tiny_dir / "resnet" / RESNET_FILE).read_bytes()
    hub.faults[RESNET_FILE] = "reset"
    part = tmp_path / "part"
    with open(part, "wb") as fh:
        with pytest.raises(Exception) as err:
            _http_get(_resnet_url(hub), fh, expected_size=len(good))
    assert "ReadError" in type(err.value).__name__ or "reset" in str(err.value).lower()
    have = part.stat().st_size
    assert have < len(good) and have % (10 * MiB) == 0
    with open(part, "ab") as fh:
        _http_get(_resnet_url(hub), fh, resume_size=have, expected_size=len(good))
    assert part.read_bytes() == good


def test_no_range_still_gives_the_right_bytes(hub, tiny_dir):
    good = (tiny_dir / "resnet" / RESNET_FILE).read_bytes()
    hub.faults[RESNET_FILE] = "no-range"
    buf = io.BytesIO()
    buf.write(b"x" * 1000)  # a "partial" of wrong bytes: the full 200 answer replaces it
    n = len(hub.requests)
    _http_get(_resnet_url(hub), buf, resume_size=1000, expected_size=len(good))
    assert buf.getvalue() == good
    assert hub.requests[n][2].get("Range") == "bytes=1000-"


def test_500_raises(hub, tmp_path):
    from huggingface_hub.errors import HfHubHTTPError

    hub.faults[RESNET_FILE] = "500"
    with pytest.raises(HfHubHTTPError) as err:
        _http_get(_resnet_url(hub), io.BytesIO())
    assert err.value.response.status_code == 500
    hub.faults["vocab.txt"] = "500"  # HEAD fine, GET 500
    with pytest.raises(HfHubHTTPError):
        _hf_download(hub, "vocab.txt", tmp_path)


def test_head_fault_404(hub, tmp_path):
    from huggingface_hub.errors import EntryNotFoundError

    hub.head_faults["vocab.txt"] = "404"
    with pytest.raises(EntryNotFoundError):
        _hf_download(hub, "vocab.txt", tmp_path)


def test_slow_download_can_be_cancelled(hub, tiny_dir):
    from tqdm.auto import tqdm

    class Cancel(Exception):
        pass

    class CancelOnFirstBytes(tqdm):
        def __init__(self, *a, **kw):
            kw["disable"] = True
            super().__init__(*a, **kw)

        def update(self, n=1):
            if n and n > 0:
                raise Cancel()
            return super().update(n)

    hub.faults[RESNET_FILE] = "slow"
    t0 = time.monotonic()
    with pytest.raises(Cancel):
        _http_get(_resnet_url(hub), io.BytesIO(), tqdm_class=CancelOnFirstBytes)
    elapsed = time.monotonic() - t0
    size = (tiny_dir / "resnet" / RESNET_FILE).stat().st_size
    full = size / hub.slow_chunk * hub.slow_delay
    assert 0.5 < elapsed < full, (elapsed, full)  # first update after 10 MiB, long before the end


def test_hang_times_out_and_does_not_block_stop(tiny_dir):
    with FakeHub() as hub:
        hub.add_files("/models", tiny_dir / "resnet")
        hub.faults[RESNET_FILE] = "hang"
        with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
            urllib.request.urlopen(_resnet_url(hub), timeout=0.5)
        # a second hung request, still pending while we stop
        threading.Thread(target=lambda: _swallow(lambda: urllib.request.urlopen(_resnet_url(hub), timeout=30)),
                         daemon=True).start()
        time.sleep(0.2)
        t0 = time.monotonic()
    assert time.monotonic() - t0 < 2


def _swallow(fn):
    try:
        fn()
    except Exception:
        pass


def test_gone_refuses_connections_and_closes_kept_alive_ones(tiny_dir):
    hub = FakeHub()
    url = hub.start()
    try:
        hub.add_files("/models", tiny_dir / "resnet")
        host, port = url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        conn.request("HEAD", f"/models/{RESNET_FILE}")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200 and int(resp.headers["Content-Length"]) > 0
        hub.gone()
        with pytest.raises((http.client.HTTPException, OSError)):  # kept-alive connection is dead
            conn.request("HEAD", f"/models/{RESNET_FILE}")
            conn.getresponse()
        with pytest.raises(urllib.error.URLError) as err:
            urllib.request.urlopen(url + f"/models/{RESNET_FILE}", timeout=5)
        assert isinstance(err.value.reason, ConnectionRefusedError)
        assert hub.back() == url
        assert urllib.request.urlopen(url + f"/models/{RESNET_FILE}", timeout=5).status == 200
    finally:
        hub.stop()
