"""First-run weights through the real huggingface_hub client against a local server laid out
like the real sources: progress, cancel and resume, verification, faults, import, remove."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import threading
import time
import os
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


# --------------------------------------------------------------------------- offline and cancel
# The worst cases a person meets: no network at all, a server that accepts and then says nothing,
# and Cancel pressed in each phase. Offline must be told within a few seconds; Cancel must stop
# within about a second, whatever the download is doing, and keep what was received.

from engine.errors import Unreachable  # noqa: E402


def _table_with(own_hub, tmp_path, monkeypatch, **changes) -> None:
    """The own_hub table with entries changed (e.g. resnet18's base_url), in force for this test."""
    table = json.loads(Path(own_hub.table).read_text())
    for name, entry in changes.items():
        table.setdefault(name, {}).update(entry)
    path = tmp_path / "changed-sources.json"
    path.write_text(json.dumps(table))
    monkeypatch.setenv("LOUPE_SOURCES", str(path))



@pytest.mark.parametrize("kind", ["refused", "unroutable", "blackhole", "unresolvable"])
def test_offline_is_told_within_seconds(own_hub, tmp_path, monkeypatch, blackhole, kind):
    base_url = {
        "refused": "http://127.0.0.1:9/models",  # the discard port: connection refused
        "unroutable": "http://192.0.2.1/models",  # TEST-NET-1 (RFC 5737): no route
        "blackhole": f"{blackhole}/models",  # the connection never completes
        "unresolvable": "http://loupe-test-host.invalid/models",  # a name no resolver knows (RFC 2606)
    }[kind]
    _table_with(own_hub, tmp_path, monkeypatch, resnet18={"base_url": base_url})
    phases = []
    start = time.monotonic()
    with pytest.raises(Unreachable) as info:
        weights.install("resnet18", progress=lambda p: phases.append(p.phase))
    elapsed = time.monotonic() - start
    assert elapsed < weights.CONNECT_TIMEOUT_S + 1.5, elapsed
    host = base_url.split("/")[2]
    assert info.value.host == host and f"cannot reach {host}" in str(info.value)
    assert "\n" not in str(info.value) and "offline" in str(info.value)
    assert set(phases) <= {weights.CONNECTING}, "no byte came, so nothing but 'connecting' was reported"
    _assert_nothing_at_final_path("resnet18")


def _cancel_after(cancel: threading.Event, seconds: float) -> list[float]:
    """Set `cancel` in `seconds`; returns a list that receives the moment it was set."""
    when: list[float] = []

    def fire():
        when.append(time.monotonic())
        cancel.set()

    threading.Timer(seconds, fire).start()
    return when


def test_cancel_while_the_server_says_nothing(own_hub):
    """Connected, request sent, no answer (stall before headers): Cancel ends it at once."""
    own_hub.faults["resnet18-f37072fd.pth"] = "hang"
    cancel = threading.Event()
    phases = []
    when = _cancel_after(cancel, 1.0)
    with pytest.raises(Cancelled):
        weights.install("resnet18", progress=lambda p: phases.append((p.phase, p.done)), cancel=cancel)
    assert time.monotonic() - when[0] < 1.0
    assert phases and all(ph == weights.CONNECTING and done == 0 for ph, done in phases), phases[:5]
    _assert_nothing_at_final_path("resnet18")


def test_cancel_while_connecting(own_hub, tmp_path, monkeypatch, blackhole):
    _table_with(own_hub, tmp_path, monkeypatch, resnet18={"base_url": f"{blackhole}/models"})
    cancel = threading.Event()
    when = _cancel_after(cancel, 1.0)
    with pytest.raises(Cancelled):
        weights.install("resnet18", cancel=cancel)
    assert time.monotonic() - when[0] < 1.0


def test_cancel_mid_body_stall_keeps_the_part_and_a_resume_finishes(own_hub):
    own_hub.faults["resnet18-f37072fd.pth"] = "stall"
    own_hub.stall_after = 3_000_000
    cancel = threading.Event()
    when: list[float] = []

    def progress(p):
        if p.phase == weights.DOWNLOADING and p.done >= 3_000_000 and not cancel.is_set():
            time.sleep(0.3)  # the server is now holding the connection open, sending nothing
            when.append(time.monotonic())
            cancel.set()

    with pytest.raises(Cancelled):
        weights.install("resnet18", progress=progress, cancel=cancel)
    assert when and time.monotonic() - when[0] < 1.0
    part = paths.weights_dir() / ".partial" / "resnet18" / ".resnet18-f37072fd.pth.incomplete"
    assert part.stat().st_size == 3_000_000, "what came is kept for the resume"
    own_hub.requests.clear()
    weights.install("resnet18")
    weights.verify("resnet18")
    ranges = [h.get("Range") for m, p, h in own_hub.requests if p.endswith(".pth") and m == "GET"]
    assert ranges == ["bytes=3000000-"], ranges


def test_a_stalled_server_is_given_up_and_resumed_by_itself(own_hub, monkeypatch):
    """No byte for STALL_TIMEOUT_S mid-body: a fresh connection resumes where it stopped."""
    monkeypatch.setattr(weights.transfer, "STALL_TIMEOUT_S", 1.0)
    own_hub.faults["resnet18-f37072fd.pth"] = "stall"
    start = time.monotonic()
    weights.install("resnet18")
    assert time.monotonic() - start < 10
    weights.verify("resnet18")
    gets = [h.get("Range") for m, p, h in own_hub.requests if p.endswith(".pth") and m == "GET"]
    assert len(gets) == 2 and gets[0] is None and gets[1].startswith("bytes="), gets


def test_a_server_that_never_answers_is_one_line_after_the_stall_limit(own_hub, monkeypatch):
    monkeypatch.setattr(weights.transfer, "STALL_TIMEOUT_S", 1.0)
    own_hub.faults["resnet18-f37072fd.pth"] = "hang"
    with pytest.raises(DownloadError) as info:
        weights.install("resnet18")
    assert not isinstance(info.value, Unreachable)  # it was reached: it just said nothing
    assert "no data for 1 s" in str(info.value) and "\n" not in str(info.value)


def test_cancel_while_verifying_a_big_file(own_hub, tmp_path, monkeypatch):
    """A big file takes seconds to hash: Cancel stops the hashing too, and the file that was
    fetched is kept, so the next run only verifies it (no new request)."""
    folder = tmp_path / "big-src"
    folder.mkdir()
    data = os.urandom(1 << 20) * 96  # 96 MiB
    (folder / "big.bin").write_bytes(data)
    own_hub.add_files("/big", folder)
    _table_with(own_hub, tmp_path, monkeypatch, big={
        "kind": "url", "title": "Big test model", "base_url": f"{own_hub.url}/big",
        "files": [{"name": "big.bin", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}]})
    cancel = threading.Event()
    when: list[float] = []
    verifying = []

    def progress(p):
        if p.phase == weights.VERIFYING:
            verifying.append(p.done)
            if not cancel.is_set():
                when.append(time.monotonic())
                cancel.set()

    with pytest.raises(Cancelled):
        weights.install("big", progress=progress, cancel=cancel)
    assert time.monotonic() - when[0] < 1.0
    assert verifying and verifying[-1] < len(data), "hashing stopped before the end"
    assert (paths.weights_dir() / ".partial" / "big" / "big.bin").stat().st_size == len(data)
    own_hub.requests.clear()
    weights.install("big")
    assert weights.is_installed("big")
    assert not [p for _m, p, _h in own_hub.requests if p.endswith("big.bin")], "verified, not fetched again"


def test_progress_never_goes_back_while_verifying(own_hub):
    seen = []
    weights.install("resnet18", progress=seen.append)
    overall = [p.overall_done for p in seen]
    assert overall == sorted(overall) and overall[-1] == weights.source("resnet18").size
    assert {p.phase for p in seen} >= {weights.DOWNLOADING, weights.VERIFYING}
    assert all(p.host == own_hub.url.split("/")[2] for p in seen)
