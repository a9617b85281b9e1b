"""Coverage-guided fuzzing of `engine.images.load_image` with atheris (libFuzzer).

    python tests/fuzz_images.py [libFuzzer flags] CORPUS_DIR [SEED_DIR ...]
    e.g. -max_total_time=60 -timeout=10 -rss_limit_mb=2048 -artifact_prefix=artifacts/fuzz/

    python tests/fuzz_images.py --check FILE ...    load each file once under the same rules
                                                    (regressions; exit 1 on a finding)

The only expected outcomes for an input are an 8-bit RGB `PIL.Image` or `UnreadableImage`.
Anything else is a finding: another exception (libFuzzer saves the input as crash-*), a hang
past -timeout (timeout-*), or memory past -rss_limit_mb (oom-*). The address space is capped
too (LOUPE_FUZZ_AS_MB, default 2560 MiB; set before Pillow loads), so a huge allocation fails
here instead of swapping the machine.

Each input is written to a file (load_image reads paths) and loaded the way the app loads:
with a JPEG draft size for inputs of even length, at full size for odd ones. Pillow's Python
code (its format plugins), Loupe's loader and numpy conversions are instrumented for coverage;
Pillow's C decoders run uninstrumented.
"""
from __future__ import annotations

import os
import resource
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def limit_address_space() -> None:
    mb = int(os.environ.get("LOUPE_FUZZ_AS_MB", "2560"))
    if mb > 0:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        want = mb << 20
        if hard != resource.RLIM_INFINITY:
            want = min(want, hard)
        resource.setrlimit(resource.RLIMIT_AS, (want, hard))


class Finding(Exception):
    """An outcome other than an RGB image or UnreadableImage."""


def check_one(path: str | os.PathLike[str], data_len: int | None = None):
    """Load `path` as the app does; return the image or the UnreadableImage; raise Finding."""
    from engine.errors import UnreadableImage
    from engine.images import load_image

    n = data_len if data_len is not None else os.path.getsize(path)
    draft = (384, 384) if n % 2 == 0 else None
    try:
        im = load_image(path, draft_size=draft)
    except UnreadableImage as exc:
        return exc
    if im.mode != "RGB":
        raise Finding(f"load_image returned mode {im.mode}, not RGB")
    if im.width < 1 or im.height < 1:
        raise Finding(f"load_image returned an empty image {im.size}")
    return im


def _check_files(files: list[str]) -> int:
    bad = 0
    for name in files:
        try:
            outcome = check_one(name)
        except BaseException as exc:  # noqa: BLE001 - every other outcome is a finding
            bad += 1
            print(f"FINDING {name}: {type(exc).__name__}: {exc}")
            continue
        print(f"ok {name}: {outcome if isinstance(outcome, Exception) else 'RGB %dx%d' % outcome.size}")
    return 1 if bad else 0


def main(argv: list[str]) -> int:
    limit_address_space()
    if len(argv) > 1 and argv[1] == "--check":
        return _check_files(argv[2:])

    import warnings

    import atheris

    # Pillow warns on many damaged files ("Truncated File Read", corrupt EXIF): noise at
    # thousands of inputs a second. load_image still turns DecompressionBombWarning into an
    # error inside its own catch_warnings block.
    warnings.simplefilter("ignore")

    with atheris.instrument_imports():
        import PIL.Image
        import PIL.ImageOps

        PIL.Image.init()  # imports every format plugin inside the instrumented block
        import engine.images  # noqa: F401

    where = os.environ.get("LOUPE_FUZZ_TMP") or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
    fd, scratch = tempfile.mkstemp(prefix="loupe-fuzz-", suffix=".img", dir=where)
    os.close(fd)

    def one_input(data: bytes) -> None:
        with open(scratch, "wb") as fh:
            fh.write(data)
        check_one(scratch, len(data))

    try:
        atheris.Setup(argv, one_input)
        atheris.Fuzz()
    finally:  # reached only when libFuzzer returns instead of exiting
        os.unlink(scratch)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
