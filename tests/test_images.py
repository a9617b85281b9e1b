"""The one loader: every mode becomes RGB as a person would see it; bad files are refused by
name with a reason; the user's file is never touched."""
from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from engine.errors import UnreadableImage
from engine.images import load_image
from image_corpus import bad_files, good_photos


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return good_photos(tmp_path_factory.mktemp("good"))


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    return bad_files(tmp_path_factory.mktemp("bad"))


def test_every_good_photo_becomes_rgb_and_is_left_untouched(good):
    for name, path in good.items():
        before = _digest(path)
        im = load_image(path)
        assert im.mode == "RGB", name
        assert im.size[0] > 0 and im.size[1] > 0
        assert _digest(path) == before, f"{name} was modified"


def test_exif_orientation_is_applied(good):
    assert Image.open(good["rotated.jpg"]).size == (80, 40)
    assert load_image(good["rotated.jpg"]).size == (40, 80)


def test_transparency_is_composited_on_white(good):
    arr = np.asarray(load_image(good["transparent.png"]))
    assert arr.min() == 255, "fully transparent pixels must come out white, not black"
    assert np.asarray(load_image(good["la.png"])).min() == 255


def test_sixteen_bit_is_rescaled_not_clipped(good):
    for name in ("sixteen.png", "sixteen.tif"):
        row = np.asarray(load_image(good[name]))[0, :, 0]
        assert row[0] == 0 and row[-1] == 255, name
        # a clip to 255 would make almost every value 255; a rescale keeps the ramp
        assert 100 <= row[len(row) // 2] <= 155, name
        assert len(set(row.tolist())) > 50, name


def test_cmyk_and_palette_come_out_with_colour(good):
    for name in ("cmyk.jpg", "palette.png"):
        arr = np.asarray(load_image(good[name])).astype(int)
        assert arr.std() > 10, name


def test_animation_gives_first_frame(good):
    first = Image.open(good["animated.gif"]).convert("RGB")
    assert np.array_equal(np.asarray(load_image(good["animated.gif"])), np.asarray(first))


def test_draft_decodes_big_jpegs_smaller_but_never_below_the_asked_size(tmp_path):
    from image_corpus import gradient

    path = tmp_path / "big.jpg"
    gradient(4000, 3000, 1).save(path, quality=90)
    im = load_image(path, draft_size=(384, 384))
    assert im.size[0] >= 384 and im.size[1] >= 384
    assert im.size[0] < 4000
    assert load_image(path).size == (4000, 3000)


def test_bad_files_are_refused_by_name_with_a_reason(bad):
    for name, (path, word) in bad.items():
        before = _digest(path) if path.is_file() else None
        with pytest.raises(UnreadableImage) as info:
            load_image(path)
        message = str(info.value)
        assert name in message and word in message, message
        assert "\n" not in message
        if before:
            assert _digest(path) == before


def test_pixel_limit_is_a_parameter(tmp_path):
    from image_corpus import gradient

    path = tmp_path / "p.png"
    gradient(100, 100).save(path)
    with pytest.raises(UnreadableImage, match="too large"):
        load_image(path, max_pixels=5000)


def test_cli_reports_each_bad_file_in_one_line_without_traceback(bad, tmp_path):
    paths = [str(p) for p, _ in bad.values()]
    proc = subprocess.run([sys.executable, "-m", "loupe", "caption", *paths],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == len(paths)
    assert all(line.startswith("loupe: ") for line in lines)
