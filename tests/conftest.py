"""Shared fixtures. Every test gets its own Loupe home (data, config, logs) under tmp_path, and
the weights table points at a local server that serves tiny models the suite builds itself."""
from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))

# Read once at import by huggingface_hub and gradio: set before anything imports them.
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.pop("HF_HUB_OFFLINE", None)
for _var in ("NO_PROXY", "no_proxy"):
    os.environ[_var] = ",".join(filter(None, [os.environ.get(_var), "127.0.0.1,localhost"]))

# torch creates its compile cache folder when torch._dynamo is imported, at the path engine sets
# from LOUPE_HOME when first imported: in this process that is before any test's LOUPE_HOME,
# so pin it to a folder of the run's own (subprocesses inherit it unless a test removes it).
_INDUCTOR = tempfile.mkdtemp(prefix="loupe-tests-torchinductor-")
os.environ["TORCHINDUCTOR_CACHE_DIR"] = _INDUCTOR
atexit.register(shutil.rmtree, _INDUCTOR, ignore_errors=True)

ARTIFACTS = ROOT / "artifacts"


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """The tiny BLIP and SigLIP folders and tiny ResNet file, built once per session."""
    from tiny_models import build_tiny_blip, build_tiny_resnet, build_tiny_siglip

    root = tmp_path_factory.mktemp("tiny")
    build_tiny_blip(root / "blip")
    build_tiny_siglip(root / "siglip")
    (root / "resnet").mkdir()
    build_tiny_resnet(root / "resnet" / "resnet18-f37072fd.pth")
    return root


@pytest.fixture(scope="session")
def hub(tiny_dir):
    """A local server laid out like the real sources, serving the tiny models."""
    from fakehub import FakeHub
    from tiny_models import REVISION, SIGLIP_REPO, SIGLIP_REVISION

    server = FakeHub()
    server.start()
    server.add_repo("Salesforce/blip-image-captioning-base", REVISION, tiny_dir / "blip")
    server.add_repo(SIGLIP_REPO, SIGLIP_REVISION, tiny_dir / "siglip")
    server.add_files("/models", tiny_dir / "resnet")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sources_file(tmp_path_factory, hub, tiny_dir) -> Path:
    from tiny_models import write_sources_json

    return write_sources_json(tmp_path_factory.mktemp("sources") / "sources.json", hub.url,
                              tiny_dir / "blip", tiny_dir / "resnet")


@pytest.fixture(autouse=True)
def loupe_home(tmp_path, monkeypatch) -> Path:
    """No test touches the real home: data, config, logs and gradio's uploads go to tmp_path."""
    home = tmp_path / "loupe-home"
    monkeypatch.setenv("LOUPE_HOME", str(home))
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio-tmp"))
    monkeypatch.delenv("LOUPE_SOURCES", raising=False)
    monkeypatch.delenv("LOUPE_PRECISION", raising=False)
    from engine.inference import reset_engine

    reset_engine()
    yield home
    reset_engine()
    # `loupe caption` run in-process sets it for its own process (captioning never downloads);
    # the next test's subprocesses must not inherit it.
    os.environ.pop("HF_HUB_OFFLINE", None)
    root = logging.getLogger()  # a command run in process opened the log file of this home
    for handler in [h for h in root.handlers if getattr(h, "_loupe", False)]:
        root.removeHandler(handler)
        handler.close()


@pytest.fixture
def own_hub(tiny_dir, tmp_path, monkeypatch):
    """A private local hub (faults set on it never leak into other tests) and a table naming it."""
    from fakehub import FakeHub
    from tiny_models import REVISION, SIGLIP_REPO, SIGLIP_REVISION, write_sources_json

    server = FakeHub()
    server.start()
    server.add_repo("Salesforce/blip-image-captioning-base", REVISION, tiny_dir / "blip")
    server.add_repo(SIGLIP_REPO, SIGLIP_REVISION, tiny_dir / "siglip")
    server.add_files("/models", tiny_dir / "resnet")
    server.table = write_sources_json(tmp_path / "sources.json", server.url, tiny_dir / "blip", tiny_dir / "resnet")
    monkeypatch.setenv("LOUPE_SOURCES", str(server.table))
    yield server
    server.stop()


@pytest.fixture
def tiny_sources(sources_file, monkeypatch) -> Path:
    """Point the weights table at the local server (nothing installed yet)."""
    monkeypatch.setenv("LOUPE_SOURCES", str(sources_file))
    return sources_file


@pytest.fixture(scope="session")
def _installed_weights(tmp_path_factory, sources_file) -> Path:
    """Weights installed once per session through the real download path."""
    import subprocess

    home = tmp_path_factory.mktemp("weights-home")
    env = dict(os.environ, LOUPE_HOME=str(home), LOUPE_SOURCES=str(sources_file))
    subprocess.run([sys.executable, "-m", "loupe", "models", "download"], env=env, check=True,
                   capture_output=True, timeout=300)
    return home / "data" / "models"


@pytest.fixture
def installed(tiny_sources, _installed_weights, loupe_home) -> Path:
    """Tiny models installed (shared, read-only by convention) for this test's Loupe home."""
    from engine import paths

    paths.save_setting("weights_dir", str(_installed_weights))
    return _installed_weights


@pytest.fixture
def own_weights(tiny_sources, _installed_weights, loupe_home, tmp_path):
    """The tiny models installed, in a weights folder of this test's own (the int8 cache is
    written beside the weights, so the session's shared folder must not be used)."""
    from engine import paths, quantize

    dst = tmp_path / "models"
    shutil.copytree(_installed_weights, dst, ignore=shutil.ignore_patterns(quantize.CACHE_DIR))
    paths.save_setting("weights_dir", str(dst))
    return dst


@pytest.fixture
def blip(tiny_dir, tmp_path):
    """A private copy of the tiny BLIP folder (no install manifest: stamped by file hashes)."""
    dst = tmp_path / "blip"
    shutil.copytree(tiny_dir / "blip", dst)
    return dst


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


CHROMIUM = "/usr/bin/chromium"  # Debian's; never `playwright install`
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through Playwright, one per test module (each test opens its own page)."""
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), "apt-get install -y chromium (make test does it)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        yield b
        b.close()


@pytest.fixture
def blackhole():
    """A local address that never completes a TCP connection, like a host behind a firewall that
    drops packets: a listener with a backlog of one, filled, so later SYNs are dropped (some
    networks, this one included, answer for any 10.x address, so no real address is sure to)."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    held = []
    while True:
        probe = socket.socket()
        probe.settimeout(0.5)
        try:
            probe.connect(("127.0.0.1", port))
        except OSError:
            probe.close()
            break
        held.append(probe)
    yield f"http://127.0.0.1:{port}"
    for sock in held + [listener]:
        sock.close()
