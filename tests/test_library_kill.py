"""Kill -9 a scan at random points, resume, repeat; then check nothing was lost or done twice.

LOUPE_KILL_ROUNDS (default 20) rounds per writer mode; LOUPE_KILL_SEED fixes the kill times.
The child runs a real scan with FakeEngine (a short sleep per batch), which appends one line
per engine call (pid, call number, pixel digests) to a log shared by all rounds.
"""
from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from engine.library import TEMP_PREFIX

from library_fixtures import (
    THIRD_PARTY_XMP, decoded, load_like_scan, pixel_digest, read_exif_file, read_xmp_file, save_photo, sha, tmp_files,
)

REPO = Path(__file__).resolve().parents[1]
N_PHOTOS = 120
ROUNDS = int(os.environ.get("LOUPE_KILL_ROUNDS", "20"))
SEED = int(os.environ.get("LOUPE_KILL_SEED", str(random.randrange(1 << 30))))

CHILD = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
from library_fixtures import FakeEngine
from engine import library
folder, db, log, mode = sys.argv[2:6]
engine = FakeEngine(batch_size=2, delay=0.04, log_path=log)  # >= 2.4 s of engine time in all
print("ready", flush=True)
s = library.scan(folder, engine=engine, write=mode, db_path=db, batch_size=2, workers=2)
print(json.dumps({"done": s.done, "skipped": s.skipped, "written": s.written, "failed": s.failed,
                  "problems": [[p.path, p.reason] for p in s.problems]}), flush=True)
"""


def _make_folder(root: Path) -> list[Path]:
    photos = []
    for i in range(N_PHOTOS):
        sub = root / f"roll{i % 3}"
        ext = [".jpg", ".JPG", ".png", ".webp", ".tif", ".jpeg"][i % 6]
        photos.append(save_photo(sub / f"img{i:03d}{ext}", 100 + i, exif=True))
    for p in photos[::7]:
        p.with_name(p.name + ".xmp").write_text(THIRD_PARTY_XMP, encoding="utf-8")
    (root / "roll0" / "broken.jpg").write_bytes(photos[0].read_bytes()[:200])
    return photos


def _run(args: list[str], kill_after: float | None) -> tuple[bool, int, str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    ready = proc.stdout.readline()
    assert ready.strip() == b"ready", proc.stderr.read().decode() if proc.stderr else ready
    killed = False
    if kill_after is not None:
        time.sleep(kill_after)
        if proc.poll() is None:
            proc.kill()
            killed = True
    out, err = proc.communicate(timeout=60)
    if not killed:
        assert proc.returncode == 0, err.decode()
    return killed, proc.pid, out.decode()


def _integrity(db: Path) -> str:
    con = sqlite3.connect(db)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


@pytest.mark.parametrize("mode", ["sidecar", "embed"])
def test_kill_and_resume(tmp_path, monkeypatch, mode):
    monkeypatch.setenv("LOUPE_HOME", str(tmp_path / "home"))
    root = tmp_path / "photos"
    photos = _make_folder(root)
    original_bytes = {p: sha(p) for p in photos}
    original_pixels = {p: decoded(p) for p in photos}
    original_sidecars = {p: p.with_name(p.name + ".xmp").read_text() for p in photos[::7]}
    digests = {pixel_digest(load_like_scan(p)): p for p in photos}
    assert len(digests) == len(photos)
    db, log = tmp_path / "lib.db", tmp_path / "engine.log"
    args = [str(Path(__file__).parent), str(root), str(db), str(log), mode]

    rng = random.Random(SEED)
    killed_pids: set[int] = set()
    temp_seen = 0
    for _ in range(ROUNDS):
        # A full scan takes >= 2.4 s (engine delay) + I/O; up to 0.3 s per round spreads the kills over the
        # whole folder (reading, inference, commit, sidecar/embed writes).
        killed, pid, _out = _run(args, rng.uniform(0.0, 0.3))
        if killed:
            killed_pids.add(pid)
        leftovers = tmp_files(root)
        temp_seen += len(leftovers)
        # only killed runs leave temp files (a run killed before its cleanup_stale ran may
        # leave an older one in place; the final, unkilled start must remove them all)
        owners = {int(f.name[len(TEMP_PREFIX):].split("-", 1)[0]) for f in leftovers}
        assert owners <= killed_pids, leftovers
        assert _integrity(db) == "ok" if db.exists() else True
    assert len(killed_pids) >= ROUNDS // 2, "too few kills landed mid-scan to mean anything"
    killed, _pid, out = _run(args, None)  # the last run finishes
    final = json.loads(out.strip().splitlines()[-1])
    assert not tmp_files(root), "stale temp files survived the next start"
    # a last run: everything already done and written
    _k, _p, out = _run(args, None)
    again = json.loads(out.strip().splitlines()[-1])
    assert (again["done"], again["written"], again["skipped"]) == (0, 0, len(photos)), again
    assert [Path(p).name for p, _ in again["problems"]] == ["broken.jpg"]

    # none done twice: a photo captioned again only if the earlier run was killed while that
    # very batch was in flight (its last engine call, before the batch was committed)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    captions = [c for c in calls if c["kind"] == "caption"]
    last_call = {}
    for c in captions:
        last_call[c["pid"]] = max(last_call.get(c["pid"], 0), c["n"])
    seen: dict[str, list[dict]] = defaultdict(list)
    for c in captions:
        for d in c["digests"]:
            seen[d].append(c)
    assert set(seen) == set(digests), "every photo captioned"
    redone = 0
    for d, cs in seen.items():
        for earlier in cs[:-1]:
            redone += 1
            assert earlier["pid"] in killed_pids and earlier["n"] == last_call[earlier["pid"]], (
                f"{digests[d].name} was finished by pid {earlier['pid']} and done again"
            )

    con = sqlite3.connect(db)
    index = {r[0]: r[1:] for r in con.execute("SELECT path, caption, file_hash FROM photos")}
    fts_ok = con.execute("INSERT INTO photos_fts(photos_fts, rank) VALUES ('integrity-check', 1)") is not None
    con.close()
    assert fts_ok and _integrity(db) == "ok"
    assert set(index) == {str(p) for p in photos}
    for p in photos:
        caption, file_hash = index[str(p)]
        assert sha(p) == file_hash
        if mode == "sidecar":
            assert sha(p) == original_bytes[p], f"{p.name} changed in sidecar mode"
            meta = read_xmp_file(p.with_name(p.name + ".xmp"))
        else:
            assert np.array_equal(decoded(p), original_pixels[p]), f"{p.name} pixels changed"
            meta = read_xmp_file(p)
            assert read_exif_file(p).get("Exif.Image.Make") == "LoupeCam"
        assert meta["Xmp.dc.description"]['lang="x-default"'] == caption
        if p in original_sidecars:
            side = read_xmp_file(p.with_name(p.name + ".xmp"))
            assert side["Xmp.xmp.Rating"] == "5" and side["Xmp.dc.creator"] == ["Ann Other"]
            if mode == "embed":
                assert p.with_name(p.name + ".xmp").read_text() == original_sidecars[p]
    print(f"\n{mode}: seed {SEED}, {ROUNDS} kill rounds, {len(killed_pids)} killed mid-scan, "
          f"{redone} in-flight photos redone, temp files seen after kills {temp_seen}, final run did {final['done']}")
