"""First-run weights through the real huggingface_hub client against a local server laid out
like the real sources: progress, cancel and resume, verification, faults, import, remove."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from engine import paths, weights
from engine.errors import Cancelled, DownloadError, IntegrityError, UsageError, WeightsDamaged, WeightsMissing



def _final_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _assert_nothing_at_final_path(name: str) -> None:
    assert not weights.model_path(name).exists()
    assert not weights.is_installed(name)


def test_table_pins_real_sources():
    blip, resnet = weights.sources()["blip-base"], weights.sources()["resnet18"]
    assert len(blip.revision) == 40 and blip.repo == "Salesforce/blip-image-captioning-base"
    assert all(len(f.sha256) == 64 for s in (blip, resnet) for f in s.files)
    # torchvision's file name carries the first 8 hex of its sha256
    assert resnet.files[0].sha256.startswith(resnet.files[0].name.split("-")[1][:8])
    assert resnet.url_for(resnet.files[0].name) == "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    assert blip.url_for("config.json").startswith(f"https://huggingface.co/{blip.repo}/resolve/{blip.revision}/")


def test_first_run_download_with_progress_then_offline_load(own_hub, tiny_dir):
    seen = []
    for name in weights.sources():
        weights.install(name, progress=seen.append)
        assert weights.is_installed(name)
    blip = [p for p in seen if p.model == "blip-base"]
    assert blip[-1].overall_done == blip[-1].overall_total == weights.source("blip-base").size
    dones = [p.overall_done for p in blip]
    assert dones == sorted(dones), "progress never goes backwards"
    assert {p.file for p in blip} == {f.name for f in weights.source("blip-base").files}
    # exactly the pinned files plus the manifest; no staging or hub bookkeeping left
    folder = weights.model_path("blip-base")
    assert _final_files(folder) == sorted([f.name for f in weights.source("blip-base").files] + [weights.MANIFEST])
    assert not any((paths.weights_dir() / ".partial").glob("*/*"))
    # the pinned revision was asked for, not a branch
    from tiny_models import REVISION

    assert any(REVISION in path for _m, path, _h in own_hub.requests)
    own_hub.stop()  # from now on there is no network
    from engine.inference import Engine
    from image_corpus import gradient

    engine = Engine()
    assert engine.caption([gradient()], max_new_tokens=5, num_beams=1)[0].text
    assert len(engine.classify([gradient()])[0].top) == 3


def test_tampered_bytes_are_refused_and_a_retry_succeeds(own_hub):
    own_hub.faults["resnet18-f37072fd.pth"] = "tamper"
    with pytest.raises(IntegrityError, match="sha256"):
        weights.install("resnet18")
    _assert_nothing_at_final_path("resnet18")
    own_hub.faults.clear()
    weights.install("resnet18")
    weights.verify("resnet18")


def test_tampered_hub_file_is_refused(own_hub):
    own_hub.faults["config.json"] = "tamper"
    with pytest.raises(IntegrityError):
        weights.install("blip-base")
    _assert_nothing_at_final_path("blip-base")
    own_hub.faults.clear()
    weights.install("blip-base")
    assert weights.is_installed("blip-base")


@pytest.mark.parametrize("name, filename", [("resnet18", "resnet18-f37072fd.pth"), ("blip-base", "pytorch_model.bin")])
def test_dropped_connection_is_resumed_or_retried(own_hub, name, filename):
    own_hub.faults[filename] = "drop"
    try:
        weights.install(name)
    except DownloadError as exc:
        assert "Retry" in str(exc) or "retry" in str(exc)
        _assert_nothing_at_final_path(name)
        weights.install(name)
    weights.verify(name)


def test_server_ignoring_range_still_gives_the_right_file(own_hub):
    own_hub.faults["resnet18-f37072fd.pth"] = "no-range"
    weights.install("resnet18")
    weights.verify("resnet18")


def test_server_error_is_one_clear_line(own_hub):
    own_hub.faults["resnet18-f37072fd.pth"] = "500"
    with pytest.raises(DownloadError) as info:
        weights.install("resnet18")
    assert "\n" not in str(info.value) and "resnet18" in str(info.value).lower()
    _assert_nothing_at_final_path("resnet18")


def test_server_gone_gives_offline_message_and_no_partial(own_hub):
    own_hub.stop()
    with pytest.raises(DownloadError) as info:
        weights.install("resnet18")
    assert "cannot reach 127.0.0.1" in str(info.value) and "loupe models import" in str(info.value)
    _assert_nothing_at_final_path("resnet18")


def test_cancel_mid_download_then_resume(own_hub):
    own_hub.faults["resnet18-f37072fd.pth"] = "slow"
    cancel = threading.Event()
    seen = []

    def progress(p):
        seen.append(p.done)
        if p.done > 2_000_000:
            cancel.set()

    with pytest.raises(Cancelled):
        weights.install("resnet18", progress=progress, cancel=cancel)
    _assert_nothing_at_final_path("resnet18")
    partial = list((paths.weights_dir() / ".partial" / "resnet18").glob(".*incomplete"))
    assert partial and partial[0].stat().st_size > 1_000_000
    own_hub.faults.clear()
    own_hub.requests.clear()
    weights.install("resnet18")
    weights.verify("resnet18")
    ranges = [h.get("Range") for m, p, h in own_hub.requests if p.endswith(".pth") and m == "GET"]
    assert ranges and ranges[0] and ranges[0].startswith("bytes=") and ranges[0] != "bytes=0-"


def test_import_from_plain_folder_and_hf_cache_layout(tiny_sources, tiny_dir, tmp_path):
    plain = tmp_path / "usb-stick"
    shutil.copytree(tiny_dir / "resnet", plain)
    assert weights.import_folder(plain) == ["resnet18"]
    assert weights.is_installed("resnet18") and not weights.is_installed("blip-base")
    # a Hugging Face cache: blobs named by hash, snapshots holding symlinks to them
    snap = tmp_path / "hf" / "models--Salesforce--blip-image-captioning-base" / "snapshots" / ("a" * 40)
    blobs = tmp_path / "hf" / "models--Salesforce--blip-image-captioning-base" / "blobs"
    snap.mkdir(parents=True)
    blobs.mkdir()
    for f in (tiny_dir / "blip").iterdir():
        blob = blobs / hashlib.sha256(f.read_bytes()).hexdigest()
        shutil.copyfile(f, blob)
        (snap / f.name).symlink_to(blob)
    assert weights.import_folder(tmp_path / "hf") == ["blip-base"]
    weights.verify("blip-base")


def test_import_refuses_a_changed_file(tiny_sources, tiny_dir, tmp_path):
    folder = tmp_path / "stick"
    shutil.copytree(tiny_dir / "resnet", folder)
    pth = next(folder.iterdir())
    data = bytearray(pth.read_bytes())
    data[-10] ^= 0xFF
    pth.write_bytes(bytes(data))
    with pytest.raises(WeightsMissing, match="sha256"):
        weights.import_folder(folder)
    _assert_nothing_at_final_path("resnet18")


def test_remove_and_status(installed, monkeypatch, tmp_path):
    # work on a private copy: the installed folder is shared by the session
    copy = tmp_path / "weights"
    shutil.copytree(installed, copy, symlinks=True)
    paths.save_setting("weights_dir", str(copy))
    rows = {s.name: s for s in weights.status()}
    assert rows["resnet18"].installed and rows["resnet18"].size >= weights.source("resnet18").size
    assert weights.remove("resnet18") is True
    assert not weights.is_installed("resnet18") and weights.remove("resnet18") is False
    with pytest.raises(WeightsMissing):
        weights.model_dir("resnet18")
    with pytest.raises(UsageError):
        weights.remove("nope")


def test_changed_file_on_disk_is_caught_by_verify(installed, tmp_path):
    copy = tmp_path / "weights"
    shutil.copytree(installed, copy)
    paths.save_setting("weights_dir", str(copy))
    cfg = copy / "blip-base" / "config.json"
    text = cfg.read_text()
    assert '"' in text
    cfg.write_text(text.replace('"', "'", 1))  # same size, other bytes, new mtime
    assert not weights.is_installed("blip-base")  # the changed mtime made the fast check re-hash
    with pytest.raises(WeightsDamaged, match=r"config\.json: sha256 .* does not match"):
        weights.verify("blip-base")
    with pytest.raises(WeightsDamaged, match="loupe models download blip-base"):
        weights.model_dir("blip-base")


def test_cli_download_offline_is_one_line(tiny_sources, tmp_path, monkeypatch):
    table = json.loads(Path(tiny_sources).read_text())
    table["resnet18"]["base_url"] = "http://127.0.0.1:9/models"  # the discard port: refused
    dead = tmp_path / "dead.json"
    dead.write_text(json.dumps(table))
    monkeypatch.setenv("LOUPE_SOURCES", str(dead))
    proc = subprocess.run([sys.executable, "-m", "loupe", "models", "download", "resnet18"],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 5, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("loupe: ") and "cannot reach" in last and "Traceback" not in proc.stderr
