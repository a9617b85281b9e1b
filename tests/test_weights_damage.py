"""Damaged weights never answer (issue 11, part 2): each way of damaging an installed model,
for both tiny models, through the real `loupe` CLI in a subprocess; the verified stamps that
keep the check on every start to a few stat calls; repair; imports that leave nothing behind.

Every test works on a private copy of the session's installed weights (`weights_copy`).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine import paths, weights, weights_report
from engine.errors import Cancelled, LoupeError, WeightsDamaged, WeightsMissing
from engine.units import format_size
from image_corpus import gradient

ROOT = Path(__file__).resolve().parents[1]
WEIGHT_FILE = {"blip-base": "pytorch_model.bin", "resnet18": "resnet18-f37072fd.pth"}
RUN = {"blip-base": ["caption", "--beams", "1", "--max-tokens", "5"], "resnet18": ["classify"]}
HTML = (b"<!doctype html><html><head><title>404 Not Found</title></head>"
        b"<body><h1>Not Found</h1><p>The requested URL was not found.</p></body></html>\n")


def loupe(*args: object, timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "loupe", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("loupe: "), proc.stderr[-3000:]
    return lines[0]


@pytest.fixture
def weights_copy(installed, tmp_path) -> Path:
    """A private copy of the installed weights (mtimes kept, so the stamps hold), in use."""
    copy = tmp_path / "weights"
    shutil.copytree(installed, copy)
    paths.save_setting("weights_dir", str(copy))
    return copy


@pytest.fixture
def photo(tmp_path) -> Path:
    p = tmp_path / "photo.jpg"
    gradient(120, 90, 3).save(p)
    return p


# --------------------------------------------------------------------------- ways to damage a file


def truncate_4k(path: Path) -> None:
    os.truncate(path, path.stat().st_size - 4096)


def delete(path: Path) -> None:
    path.unlink()


def html_page(path: Path) -> None:
    path.write_bytes(HTML)


def overwrite_16k_middle(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.seek(size // 2 - 8192)
        fh.write(os.urandom(16384))
    assert path.stat().st_size == size


def zero_second_half(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.seek(size // 2)
        fh.write(bytes(size - size // 2))
    assert path.stat().st_size == size


def keeping_mtime(damage):
    """The same damage with size and mtime put back: only a hash can tell."""
    def damage_keeping_mtime(path: Path) -> None:
        st = path.stat()
        damage(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    damage_keeping_mtime.__name__ = damage.__name__ + "_mtime_kept"
    return damage_keeping_mtime


def expected_reason(damage, size: int) -> str:
    return {truncate_4k: f"size {size - 4096:,} bytes, expected {size:,}", delete: "missing",
            html_page: f"size {len(HTML):,} bytes, expected {size:,}"}.get(damage, "does not match the pinned")


# --------------------------------------------------------------------------- the examples


@pytest.mark.parametrize("model", ["blip-base", "resnet18"])
@pytest.mark.parametrize("damage", [truncate_4k, delete, html_page, overwrite_16k_middle, zero_second_half],
                         ids=lambda d: d.__name__)
def test_damaged_weights_never_answer(weights_copy, photo, model, damage):
    """status says damaged with what to do, verify names the file and the reason (exit 6), and
    caption/classify print nothing but one line (exit 6)."""
    target = weights_copy / model / WEIGHT_FILE[model]
    size = target.stat().st_size
    damage(target)
    other = next(n for n in WEIGHT_FILE if n != model)

    status = loupe("models", "status")
    assert status.returncode == 0, status.stderr
    line = next(line for line in status.stdout.splitlines() if line.strip().startswith(model))
    assert f"damaged — run `loupe models verify` or `loupe models download {model}`" in line, status.stdout
    rows = {r["name"]: r for r in json.loads(loupe("models", "status", "--json").stdout)}
    assert rows[model]["state"] == "damaged" and not rows[model]["installed"]
    assert rows[model]["problems"][0]["file"] == WEIGHT_FILE[model]
    assert rows[other]["state"] == "installed"

    verify = loupe("models", "verify")
    assert verify.returncode == 6, verify.stdout + verify.stderr
    out = verify.stdout.splitlines()
    assert f"{other}: ok" in out, out  # every model with files present is checked
    bad = [line for line in out if line.startswith(f"{model}: damaged: {WEIGHT_FILE[model]}: ")]
    assert len(bad) == 1 and expected_reason(damage, size) in bad[0], out
    assert model in one_error_line(verify)

    run = loupe(*RUN[model], photo)
    assert run.returncode == 6, run.stdout + run.stderr
    assert run.stdout == ""  # no caption, no label
    message = one_error_line(run)
    assert WEIGHT_FILE[model] in message and f"loupe models download {model}" in message, message


@pytest.mark.parametrize("model", ["blip-base", "resnet18"])
def test_bytes_changed_behind_kept_size_and_mtime_are_caught_by_verify(weights_copy, photo, model):
    """16 KiB overwritten mid-file with size and mtime restored: the fast check trusts the
    stamp (status says installed), `verify` re-hashes and catches it, and from then on the
    stamp records the wrong hash, so status and caption/classify refuse it too."""
    target = weights_copy / model / WEIGHT_FILE[model]
    keeping_mtime(overwrite_16k_middle)(target)
    rows = {r["name"]: r for r in json.loads(loupe("models", "status", "--json").stdout)}
    assert rows[model]["state"] == "installed"  # the documented limit of a stamp check

    verify = loupe("models", "verify", model)
    assert verify.returncode == 6
    assert verify.stdout.startswith(f"{model}: damaged: {WEIGHT_FILE[model]}: sha256 "), verify.stdout
    one_error_line(verify)

    rows = {r["name"]: r for r in json.loads(loupe("models", "status", "--json").stdout)}
    assert rows[model]["state"] == "damaged"
    run = loupe(*RUN[model], photo)
    assert run.returncode == 6 and run.stdout == "", run.stdout + run.stderr
    assert WEIGHT_FILE[model] in one_error_line(run)


@pytest.mark.parametrize("model, precision", [("blip-base", "fp32"), ("blip-base", "int8"), ("resnet18", "fp32")])
def test_load_failure_behind_kept_size_and_mtime_is_one_line(weights_copy, photo, model, precision, monkeypatch):
    """The second half zeroed, size and mtime restored: the stamp passes, torch fails inside
    the load, and the load guard's full re-hash turns it into one line naming the file. In
    int8 the captioner has a cache made from the intact weights: it must not answer from it
    (its sampled fingerprint of the weights no longer matches, so it reloads them and fails)."""
    monkeypatch.setenv("LOUPE_PRECISION", precision)
    if precision == "int8":
        made = loupe(*RUN[model], photo)  # the int8 cache, from the intact weights
        assert made.returncode == 0 and made.stdout.strip(), made.stderr
        assert (weights_copy / model / ".int8" / "int8.pt").is_file()
    keeping_mtime(zero_second_half)(weights_copy / model / WEIGHT_FILE[model])
    run = loupe(*RUN[model], photo)
    assert run.returncode == 6 and run.stdout == "", run.stdout + run.stderr
    message = one_error_line(run)
    assert f"{WEIGHT_FILE[model]}: sha256" in message and "RuntimeError" not in message, message


def test_load_failure_of_files_matching_their_pins_is_one_line(tiny_dir, tmp_path, monkeypatch):
    """Files that match their pins but do not load (a state dict missing a tensor): one
    LoupeError line naming the model and the folder, and what torch said."""
    import torch

    from engine.inference import Engine

    staged = tmp_path / "stick"
    staged.mkdir()
    state = torch.load(tiny_dir / "resnet" / "resnet18-f37072fd.pth", weights_only=True)
    del state["fc.bias"]
    torch.save(state, staged / "resnet18-f37072fd.pth")
    from tiny_models import file_entries

    table = {"resnet18": {"kind": "url", "base_url": "http://127.0.0.1:9/none", "files": file_entries(staged)}}
    (tmp_path / "sources.json").write_text(json.dumps(table))
    monkeypatch.setenv("LOUPE_SOURCES", str(tmp_path / "sources.json"))
    assert weights.import_folder(staged) == ["resnet18"]
    with pytest.raises(LoupeError) as info:
        Engine().model("resnet18")
    message = str(info.value)
    assert not isinstance(info.value, WeightsDamaged)
    assert "\n" not in message and message.startswith("resnet18: cannot load the weights in ")
    assert str(weights.model_path("resnet18")) in message and "fc.bias" in message, message


# --------------------------------------------------------------------------- stamps: no re-hash on start


@pytest.fixture
def hash_calls(monkeypatch) -> list[Path]:
    calls: list[Path] = []
    real = weights.sha256_file

    def counting(path):
        calls.append(Path(path))
        return real(path)

    monkeypatch.setattr(weights.stamps, "sha256_file", counting)
    return calls


def test_fast_check_hashes_only_what_changed(weights_copy, hash_calls):
    for name in WEIGHT_FILE:
        assert weights.check(name).installed
    assert hash_calls == []  # stamps written at install: stat calls only
    weights.status()
    weights.model_dir("blip-base")
    assert hash_calls == []

    # a new mtime (same bytes): that one file is re-hashed once, then its new stamp holds
    target = weights_copy / "blip-base" / "pytorch_model.bin"
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert weights.check("blip-base").installed
    assert hash_calls == [target]
    stamp = json.loads((weights_copy / "blip-base" / weights.MANIFEST).read_text())["verified"]["pytorch_model.bin"]
    assert stamp["mtime_ns"] == st.st_mtime_ns + 1_000_000_000 and stamp["size"] == st.st_size
    hash_calls.clear()
    assert weights.check("blip-base").installed and hash_calls == []

    # verify re-hashes every file
    weights.verify("blip-base")
    assert len(hash_calls) == len(weights.source("blip-base").files)


def test_stamp_only_path_then_verify(weights_copy, hash_calls):
    """Bytes changed, size and mtime kept: the fast check does not read the file (it says
    installed), verify reads it and catches the change."""
    target = weights_copy / "resnet18" / WEIGHT_FILE["resnet18"]
    keeping_mtime(overwrite_16k_middle)(target)
    assert weights.check("resnet18").installed and hash_calls == []
    with pytest.raises(WeightsDamaged, match=r"resnet18-f37072fd\.pth: sha256 .* does not match"):
        weights.verify("resnet18")
    assert hash_calls == [target]


def test_manifest_without_stamps_is_hashed_once(weights_copy, hash_calls):
    """An install made before stamps existed: the first check hashes and stamps every file."""
    manifest = weights_copy / "blip-base" / weights.MANIFEST
    data = json.loads(manifest.read_text())
    del data["verified"]
    manifest.write_text(json.dumps(data))
    assert weights.check("blip-base").installed
    assert len(hash_calls) == len(weights.source("blip-base").files)
    hash_calls.clear()
    assert weights.check("blip-base").installed and hash_calls == []


def test_damaged_file_is_not_rehashed_on_every_check(weights_copy, hash_calls):
    target = weights_copy / "blip-base" / "pytorch_model.bin"
    overwrite_16k_middle(target)
    assert weights.check("blip-base").state == weights.DAMAGED and hash_calls == [target]
    hash_calls.clear()
    st = weights.check("blip-base")
    assert st.state == weights.DAMAGED and hash_calls == []  # the wrong hash is stamped too
    assert st.problems[0].file == "pytorch_model.bin" and "sha256" in st.problems[0].reason


def test_unexpected_file_in_a_model_folder_is_damage(weights_copy):
    """transformers would load an extra model.safetensors instead of the verified pickle."""
    (weights_copy / "blip-base" / "model.safetensors").write_bytes(b"not verified")
    st = weights.check("blip-base")
    assert st.state == weights.DAMAGED and st.problems[0].file == "model.safetensors"
    with pytest.raises(WeightsDamaged, match="model.safetensors"):
        weights.model_dir("blip-base")


def test_states_and_messages(tiny_sources):
    for name in WEIGHT_FILE:
        st = weights.check(name)
        assert st.state == weights.NOT_INSTALLED and st.on_disk == 0
        assert "to download" in weights_report.state_text(st)
        with pytest.raises(WeightsMissing, match="loupe models download"):
            weights.model_dir(name)
    assert weights_report.verify([]) == []


# --------------------------------------------------------------------------- repair


def test_download_repairs_fetching_only_the_bad_file(own_hub, photo):
    for name in WEIGHT_FILE:
        weights.install(name)
    folder = weights.model_path("blip-base")
    truncate_4k(folder / "pytorch_model.bin")
    (folder / "config.json").unlink()
    assert weights.check("blip-base").state == weights.DAMAGED
    own_hub.requests.clear()
    weights.install("blip-base")
    got = sorted(path.rsplit("/", 1)[-1] for method, path, _h in own_hub.requests if method == "GET")
    assert got == ["config.json", "pytorch_model.bin"], got
    assert weights.verify("blip-base").installed
    assert not any((paths.weights_dir() / ".partial").glob("*/*"))

    # the CLI says so, and the repaired model answers
    html_page(weights.model_path("resnet18") / WEIGHT_FILE["resnet18"])
    proc = loupe("models", "download", "resnet18")
    assert proc.returncode == 0 and "resnet18: repaired and verified" in proc.stdout, proc.stderr
    run = loupe("classify", photo)
    assert run.returncode == 0 and "%" in run.stdout, run.stderr


# --------------------------------------------------------------------------- import leaves nothing


def _hidden_entries(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


def test_import_leaves_nothing_behind(tiny_sources, tiny_dir, tmp_path):
    stick = tmp_path / "stick"
    shutil.copytree(tiny_dir / "resnet", stick / "resnet")
    shutil.copytree(tiny_dir / "blip", stick / "blip")
    proc = loupe("models", "import", stick)
    assert proc.returncode == 0, proc.stderr
    root = paths.weights_dir()
    assert sorted(p.name for p in root.iterdir()) == ["blip-base", "resnet18"]  # no .partial, no temp

    # a failed import (a file that does not match) leaves nothing either
    weights.remove("resnet18")
    pth = stick / "resnet" / WEIGHT_FILE["resnet18"]
    zero_second_half(pth)
    shutil.rmtree(stick / "blip")
    proc = loupe("models", "import", stick)
    assert proc.returncode == 4 and "sha256" in one_error_line(proc)
    assert sorted(p.name for p in root.iterdir()) == ["blip-base"]


def test_import_interrupted_mid_copy_leaves_nothing(tiny_sources, tiny_dir, tmp_path):
    stick = tmp_path / "stick"
    shutil.copytree(tiny_dir / "blip", stick)

    def cancel_after_first_file(p: weights.DownloadProgress) -> None:
        raise Cancelled("import cancelled")

    with pytest.raises(Cancelled):
        weights.import_folder(stick, progress=cancel_after_first_file)
    root = paths.weights_dir()
    assert not root.exists() or list(root.iterdir()) == []
    assert weights.check("blip-base").state == weights.NOT_INSTALLED


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("n, text", [(0, "0 B"), (999, "999 B"), (4096, "4.1 KB"), (250_000, "250 KB"),
                                     (999_600, "1.0 MB"), (46_830_571, "46.8 MB"), (47_000_000, "47.0 MB"),
                                     (989_820_849, "990 MB"), (1_234_000_000, "1.2 GB")])
def test_format_size(n, text):
    assert format_size(n) == text


def test_status_shows_small_models_in_units_that_fit(weights_copy):
    out = loupe("models", "status").stdout
    blip = next(line for line in out.splitlines() if line.strip().startswith("blip-base"))
    on_disk = weights.check("blip-base").on_disk
    assert on_disk < 1_000_000 and f"installed, {format_size(on_disk)}" in blip and " 0 MB" not in out


def test_the_window_says_damaged_too(weights_copy):
    """The Models tab and the Caption tab's banner name the damage instead of "not installed"."""
    from desktop.messages import missing_text as _missing_text
    from desktop.tabs.models import models_table

    truncate_4k(weights_copy / "blip-base" / "pytorch_model.bin")
    table = models_table()
    row = next(line for line in table.splitlines() if "**blip-base**" in line)
    assert "| damaged |" in row and "not installed" not in row, row
    banner = _missing_text("blip-base")
    assert "pytorch_model.bin: size" in banner and "not installed" not in banner, banner
