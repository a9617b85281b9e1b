"""Hardening, hostile photos: a coverage-guided fuzz run of the one image loader, the inputs it
ever found kept as regressions, and a folder of 1,000 random and broken files scanned by the
real (tiny) engine without stopping, its summary matching what the folder holds.

  LOUPE_FUZZ_SECONDS   fuzz time of the default run (10); the slow test runs LOUPE_FUZZ_SLOW_SECONDS (60)
"""
from __future__ import annotations

import io
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image

from engine.errors import UnreadableImage
from hardening import record, require_slow

ROOT = Path(__file__).resolve().parents[1]
HARNESS = Path(__file__).with_name("fuzz_images.py")
CORPUS = Path(__file__).with_name("fuzz_corpus")
FAST_SECONDS = int(os.environ.get("LOUPE_FUZZ_SECONDS", "10"))
SLOW_SECONDS = int(os.environ.get("LOUPE_FUZZ_SLOW_SECONDS", "60"))


# --------------------------------------------------------------------------- fuzzing


def _seeds(folder: Path) -> Path:
    """The committed regression inputs plus image_corpus's good and bad files, as one folder."""
    from image_corpus import bad_files, good_photos

    seeds = folder / "seeds"
    seeds.mkdir(parents=True)
    made = folder / "made"
    good_photos(made / "good")
    bad_files(made / "bad")
    for p in [*made.rglob("*"), *CORPUS.glob("*")]:
        if p.is_file() and not p.is_symlink() and p.suffix != ".md":
            shutil.copyfile(p, seeds / f"{p.parent.name}-{p.name}")
    return seeds


def run_fuzzer(tmp_path: Path, seconds: int) -> dict:
    try:
        import atheris  # noqa: F401
    except ImportError:  # a pinned dev dependency: its absence is a broken set-up, not a pass
        pytest.fail("atheris is not installed: pip install -e '.[dev]' (atheris==3.0.0)")
    seeds = _seeds(tmp_path)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    artifacts = ROOT / "artifacts" / "fuzz"
    artifacts.mkdir(parents=True, exist_ok=True)
    before = set(artifacts.iterdir())
    cmd = [sys.executable, str(HARNESS), f"-max_total_time={seconds}", "-timeout=10",
           "-rss_limit_mb=2048", "-max_len=65536", "-print_final_stats=1",
           f"-artifact_prefix={artifacts}/", str(corpus), str(seeds)]
    env = dict(os.environ, LOUPE_FUZZ_TMP=str(tmp_path), LOUPE_FUZZ_AS_MB="2560")
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=seconds + 180)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the fuzzer itself hung: {exc}") from None
    wall = time.monotonic() - t0
    log = proc.stderr + proc.stdout
    found = sorted(str(p) for p in set(artifacts.iterdir()) - before)
    runs = re.search(r"Done (\d+) runs in (\d+) second", log)
    figures = {
        "seconds_asked": seconds, "wall_s": round(wall, 1),
        "executions": int(runs[1]) if runs else None,
        "execs_per_s": int(m[1]) if (m := re.search(r"average_exec_per_sec:\s+(\d+)", log)) else None,
        "corpus_units": len(list(corpus.iterdir())), "seeds": len(list(seeds.iterdir())),
        "peak_rss_mb": int(m[1]) if (m := re.search(r"peak_rss_mb:\s+(\d+)", log)) else None,
        "findings": found,
    }
    assert proc.returncode == 0 and not found, (
        f"the fuzzer found inputs load_image does not handle (saved: {found}); copy each into "
        f"tests/fuzz_corpus/, fix the loader, and rerun.\n{log[-6000:]}")
    assert runs, log[-3000:]
    return figures


def test_fuzz_load_image(tmp_path):
    record("fuzz_load_image_fast", run_fuzzer(tmp_path, FAST_SECONDS))


@pytest.mark.slow
def test_fuzz_load_image_long(tmp_path, request):
    require_slow(request)
    record("fuzz_load_image_slow", run_fuzzer(tmp_path, SLOW_SECONDS))


def _corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.glob("*") if p.is_file() and p.suffix != ".md")


@pytest.mark.parametrize("path", _corpus_files(), ids=lambda p: p.name)
def test_fuzz_corpus_regressions(path):
    """Every input kept in tests/fuzz_corpus/ loads as RGB or fails as UnreadableImage."""
    from fuzz_images import check_one

    outcome = check_one(path)
    if isinstance(outcome, UnreadableImage):
        assert outcome.reason and "\n" not in str(outcome)
    else:
        assert outcome.mode == "RGB"


def test_the_harness_reports_other_exceptions(tmp_path, monkeypatch):
    """The harness accepts only RGB or UnreadableImage: anything else is a finding."""
    import fuzz_images

    import engine.images

    def broken(*_a, **_k):
        raise KeyError("decoder bug")

    monkeypatch.setattr(engine.images, "load_image", broken)
    p = tmp_path / "x.jpg"
    p.write_bytes(b"\xff\xd8\xff")
    with pytest.raises(KeyError):
        fuzz_images.check_one(p)
    monkeypatch.setattr(engine.images, "load_image", lambda *_a, **_k: Image.new("RGBA", (2, 2)))
    with pytest.raises(fuzz_images.Finding):
        fuzz_images.check_one(p)


# --------------------------------------------------------------------------- a hostile folder


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_headers(rng: random.Random) -> list[tuple[str, bytes]]:
    """Files whose headers promise far more pixels than any camera makes (or just under the
    limit with no pixel data at all)."""
    out = []
    w, h = rng.randint(20_000, 100_000), rng.randint(20_000, 100_000)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    out.append(("png", b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IEND", b"")))
    small = io.BytesIO()
    Image.new("RGB", (16, 16), "teal").save(small, "JPEG")
    jpg = bytearray(small.getvalue())
    sof = jpg.index(b"\xff\xc0")
    jpg[sof + 5:sof + 9] = struct.pack(">HH", rng.randint(40_000, 65_500), rng.randint(40_000, 65_500))
    out.append(("jpg", bytes(jpg)))
    small = io.BytesIO()
    Image.new("P", (8, 8), 1).save(small, "GIF")
    gif = bytearray(small.getvalue())
    gw, gh = 65_535, rng.randint(30_000, 65_535)
    gif[6:10] = struct.pack("<HH", gw, gh)
    desc = gif.index(b"\x2c\x00\x00\x00\x00")
    gif[desc + 5:desc + 9] = struct.pack("<HH", gw, gh)
    out.append(("gif", bytes(gif)))
    bw, bh = rng.randint(20_000, 60_000), rng.randint(20_000, 60_000)
    info = struct.pack("<IiiHHIIiiII", 40, bw, bh, 1, 24, 0, 0, 2835, 2835, 0, 0)
    out.append(("bmp", b"BM" + struct.pack("<IHHI", 54 + 64, 0, 0, 54) + info + b"\x00" * 64))
    tw, th = rng.randint(20_000, 100_000), rng.randint(20_000, 100_000)
    entries = [(256, 4, 1, tw), (257, 4, 1, th), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8 + 2 + 12 * 8 + 4), (278, 4, 1, th), (279, 4, 1, tw * th & 0xFFFFFFFF)]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHI", tag, typ, cnt) + (struct.pack("<HH", val, 0) if typ == 3 else struct.pack("<I", val))
        for tag, typ, cnt, val in entries) + struct.pack("<I", 0)
    out.append(("tif", b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00" * 16))
    vw, vh = rng.randint(12_000, 16_383), rng.randint(12_000, 16_383)
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + (vw - 1).to_bytes(3, "little") + (vh - 1).to_bytes(3, "little")
    out.append(("webp", b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x))
    # just under the limit (10000 x 10000 grey), but no pixel data at all
    ihdr = struct.pack(">IIBBBBB", 10_000, 10_000, 8, 0, 0, 0, 0)
    out.append(("png", b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IEND", b"")))
    return out


def _photo_bytes(fmt: str, seed: int) -> bytes:
    from image_corpus import gradient

    buf = io.BytesIO()
    gradient(120, 90, seed).save(buf, fmt)
    return buf.getvalue()


def make_hostile_folder(root: Path, total: int = 1000, seed: int = 7) -> dict:
    """`total` entries with photo names; returns what a scan must report."""
    rng = random.Random(seed)
    root.mkdir(parents=True)
    exts = [".jpg", ".jpeg", ".JPG", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"]
    counts = {"good": 0, "random": 0, "truncated": 0, "empty": 0, "huge": 0, "no_permission": 0,
              "special": 0, "symlinks": 0, "in_unreadable_folder": 0}
    made = 0

    def put(sub: str, name: str, data: bytes) -> Path:
        nonlocal made
        folder = root / sub
        folder.mkdir(exist_ok=True)
        p = folder / name
        p.write_bytes(data)
        made += 1
        return p

    for i in range(24):  # real photos, so the models do run
        fmt, ext = [("JPEG", ".jpg"), ("PNG", ".png"), ("WEBP", ".webp"), ("TIFF", ".tif")][i % 4]
        put("good", f"good{i:02d}{ext}", _photo_bytes(fmt, i))
        counts["good"] += 1
    for i in range(200):  # truncated JPEG/PNG: header only, or cut inside the pixel data
        fmt, ext = (("JPEG", ".jpg"), ("PNG", ".png"))[i % 2]
        data = _photo_bytes(fmt, 100 + i)
        cut = rng.choice([rng.randint(2, 40), rng.randint(40, int(len(data) * 0.6))])
        put("truncated", f"cut{i:03d}{ext}", data[:cut])
        counts["truncated"] += 1
    for i in range(100):
        put("empty", f"zero{i:03d}{rng.choice(exts)}", b"")
        counts["empty"] += 1
    for i in range(100):
        kinds = huge_headers(rng)
        ext, data = kinds[i % len(kinds)]
        put("huge", f"huge{i:03d}.{ext}", data)
        counts["huge"] += 1
    perm_files = []
    for i in range(50):  # mode 000 (readable anyway by a process with CAP_DAC_OVERRIDE: root)
        perm_files.append(put("locked", f"locked{i:02d}.jpg", _photo_bytes("JPEG", 300 + i)))
        counts["no_permission"] += 1
    for p in perm_files:
        p.chmod(0)
    hidden = root / "unreadable-folder"
    hidden.mkdir()
    for i in range(5):
        (hidden / f"inside{i}.jpg").write_bytes(_photo_bytes("JPEG", 400 + i))
        counts["in_unreadable_folder"] += 1
    hidden.chmod(0)
    special = root / "special"
    special.mkdir()
    for i in range(2):  # a FIFO named like a photo: opening it for reading blocks
        os.mkfifo(special / f"pipe{i}.jpg")
        counts["special"] += 1
        made += 1
    if os.geteuid() == 0:  # a device named like a photo (/dev/zero's numbers): reads never end
        os.mknod(special / "endless.png", 0o600 | 0o020000, os.makedev(1, 5))
        counts["special"] += 1
        made += 1
    links = root / "links"
    links.mkdir()
    for i in range(10):  # symlink loops (skipped: the scan never follows links)
        os.symlink(links / f"b{i}.jpg", links / f"a{i}.jpg")
        os.symlink(links / f"a{i}.jpg", links / f"b{i}.jpg")
        counts["symlinks"] += 2
        made += 2
    os.symlink(root, links / "loop")  # a folder loop
    os.symlink(root / "good" / "good00.jpg", links / "to-a-good-photo.jpg")
    counts["symlinks"] += 2
    made += 2
    (root / "a-folder.jpg").mkdir()  # a folder with a photo's name
    made += 1
    while made < total:  # the rest: random bytes with photo extensions
        size = rng.choice([1, 3, 17, 100, 1000, 4096, 20_000])
        data = rng.randbytes(size)
        put("random", f"rand{made:04d}{rng.choice(exts)}", data)
        counts["random"] += 1
    counts["entries"] = made
    return counts


CHILD = r"""
import json, sys, time
from engine import library
t0 = time.perf_counter()
s = library.scan(sys.argv[1], write="sidecar", db_path=sys.argv[2])
print(json.dumps({**{k: getattr(s, k) for k in ("total", "done", "skipped", "failed", "written",
                                                 "write_failed", "cancelled")},
                  "seconds": time.perf_counter() - t0,
                  "problems": [[p.path, p.stage, p.reason] for p in s.problems]}))
"""


def _drop_dac() -> list[str]:
    """A prefix that runs a command without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH, so mode bits
    bind root as well; [] when not root (they bind already) or setpriv is missing."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        return []
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}"]


def test_scan_a_folder_of_1000_hostile_files(tmp_path, installed, monkeypatch):
    counts = make_hostile_folder(tmp_path / "hostile", total=1000)
    prefix = _drop_dac()
    root_reads_anyway = os.geteuid() == 0 and not prefix
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = prefix + [sys.executable, "-c", CHILD, str(tmp_path / "hostile"), str(tmp_path / "lib.db")]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=420)
    except subprocess.TimeoutExpired:
        raise AssertionError("the scan hung on the hostile folder") from None
    finally:
        for p in (tmp_path / "hostile").rglob("*"):  # let pytest clean up
            if not p.is_symlink():
                p.chmod(0o700)
        (tmp_path / "hostile" / "unreadable-folder").chmod(0o700)
    assert proc.returncode == 0, proc.stderr[-4000:]
    s = json.loads(proc.stdout.strip().splitlines()[-1])
    photos_seen = (counts["good"] + counts["truncated"] + counts["empty"] + counts["huge"]
                   + counts["no_permission"] + counts["special"] + counts["random"])
    readable = counts["good"] + (counts["no_permission"] if root_reads_anyway else 0)
    unreadable = photos_seen - readable
    read_problems = [p for p in s["problems"] if p[1] == "read"]
    folder_problems = [p for p in read_problems if "folder cannot be read" in p[2]]
    by_reason: dict[str, int] = {}
    for _path, _stage, reason in read_problems:
        key = re.sub(r"\(.*", "", reason).strip()
        by_reason[key] = by_reason.get(key, 0) + 1
    figures = {"entries": counts["entries"], "photos_found": s["total"], "captioned": s["done"],
               "unreadable": s["failed"], "written": s["written"], "seconds": round(s["seconds"], 1),
               "mode_bits_enforced": not root_reads_anyway, "kinds": counts, "reasons": by_reason}
    record("hostile_folder_scan", figures)
    assert not s["cancelled"]
    assert s["total"] == photos_seen, figures  # symlinks, folders and the unreadable folder's photos are not photos found
    assert s["done"] == readable and s["failed"] == unreadable, figures
    assert s["done"] + s["failed"] + s["skipped"] == s["total"]
    assert len(read_problems) - len(folder_problems) == s["failed"]
    if not root_reads_anyway:
        assert len(folder_problems) == 1, read_problems[:5]
    assert s["written"] == readable and s["write_failed"] == 0
    for path, _stage, reason in s["problems"]:
        assert reason and "\n" not in reason and "Traceback" not in reason, (path, reason)
    special = [p for p in read_problems if "/special/" in p[0]]
    assert len(special) == counts["special"] and all(p[2] == "not a regular file" for p in special), special
    if not root_reads_anyway:
        locked = [p for p in read_problems if "/locked/" in p[0]]
        assert len(locked) == counts["no_permission"] and all("permission denied" in p[2] for p in locked)
    huge = [p for p in read_problems if "/huge/" in p[0]]
    assert len(huge) == counts["huge"]
