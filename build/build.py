"""Build the Loupe app with PyInstaller, report what it costs, then smoke-test it.

    python build/build.py              build dist/Loupe (+ dist/Loupe.app on macOS), smoke-test
    python build/build.py --no-smoke   build and report only
    python build/build.py --clean      also empty PyInstaller's caches first
    python build/build.py --cuda all   keep every CUDA library (default: only the linked ones)

Work files go to pyi-work/ and the result to dist/ at the repository root (both git-ignored);
nothing is written into build/. The log of the PyInstaller run is pyi-work/pyinstaller.log and
the numbers below are also written to dist/build-report.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "build" / "loupe.spec"
DIST = ROOT / "dist"
WORK = ROOT / "pyi-work"
REPORT = DIST / "build-report.json"
BUILD_TIMEOUT = 40 * 60  # s; a build takes ~2.5 min on 2 cores
SMOKE_TIMEOUT = 15 * 60


def bundle_dir() -> Path:
    return DIST / "Loupe"


def _size(path: Path) -> int:
    """Bytes in a file or folder; symbolic links count as nothing (their target is counted)."""
    if path.is_symlink():
        return 0
    if path.is_file():
        return path.stat().st_size
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames:
            p = Path(dirpath, name)
            if not p.is_symlink():
                total += p.stat().st_size
    return total


def size_report(bundle: Path, top: int = 10) -> dict:
    """Total size, the largest folders (packages under _internal, and big sub-folders) and files."""
    internal = bundle / "_internal"
    if not internal.is_dir():  # macOS .app layout or an older PyInstaller
        internal = bundle
    parts: dict[str, int] = {}
    for entry in internal.iterdir():
        parts[entry.name + ("/" if entry.is_dir() and not entry.is_symlink() else "")] = _size(entry)
    # Within the biggest packages, the sub-folders that hold the weight (torch/lib, nvidia/cu13...).
    subparts: dict[str, int] = {}
    for name, size in sorted(parts.items(), key=lambda kv: -kv[1])[:6]:
        folder = internal / name.rstrip("/")
        if folder.is_dir() and not folder.is_symlink():
            for child in folder.iterdir():
                if child.is_dir() and not child.is_symlink():
                    subparts[f"{name}{child.name}/"] = _size(child)
    files = []
    for dirpath, _dirs, filenames in os.walk(bundle):
        for name in filenames:
            p = Path(dirpath, name)
            if not p.is_symlink():
                files.append((p.stat().st_size, str(p.relative_to(bundle))))
    files.sort(reverse=True)
    return {
        "bundle": str(bundle),
        "total_bytes": _size(bundle),
        "files": len(files),
        "largest_folders": sorted(parts.items(), key=lambda kv: -kv[1])[:top],
        "largest_subfolders": sorted(subparts.items(), key=lambda kv: -kv[1])[:top],
        "largest_files": [(path, size) for size, path in files[:top]],
    }


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def print_report(report: dict) -> None:
    print(f"\nBundle: {report['bundle']}")
    if "build_seconds" in report:
        print(f"  build time      {report['build_seconds']:.0f} s "
              f"(PyInstaller peak RSS {report.get('peak_rss_mb', 0):.0f} MB)")
    print(f"  total size      {_gb(report['total_bytes'])} in {report['files']} files")
    for title, key in (("largest folders", "largest_folders"),
                       ("inside those", "largest_subfolders"),
                       ("largest files", "largest_files")):
        print(f"  {title}:")
        for name, size in report[key]:
            print(f"    {_gb(size):>9}  {name}")


def build(clean: bool, cuda: str) -> dict:
    WORK.mkdir(exist_ok=True)
    log_path = WORK / "pyinstaller.log"
    cmd = [sys.executable, "-m", "PyInstaller", str(SPEC.relative_to(ROOT)), "--noconfirm",
           "--distpath", "dist", "--workpath", "pyi-work"]
    if clean:
        cmd.append("--clean")
    env = dict(os.environ, LOUPE_BUNDLE_CUDA=cuda, PYTHONDONTWRITEBYTECODE="1")
    print("$ " + " ".join(cmd[2:]).replace(str(ROOT) + os.sep, ""), flush=True)
    t0 = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            code = proc.wait(timeout=BUILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise SystemExit(f"build: PyInstaller ran past {BUILD_TIMEOUT} s; log: {log_path}")
    seconds = time.monotonic() - t0
    peak_mb = 0.0
    try:
        import resource

        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        peak_mb = peak_kb / 1024 if sys.platform != "darwin" else peak_kb / 2**20
    except ImportError:  # Windows
        pass
    lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    for line in lines:
        if "loupe.spec:" in line or " ERROR:" in line:
            print("  " + line.split(": ", 1)[-1] if "loupe.spec:" in line else "  " + line)
    if code != 0:
        print("\n".join(lines[-40:]))
        raise SystemExit(f"build: PyInstaller failed (exit {code}); full log: {log_path}")
    warnings = sum(1 for line in lines if " WARNING:" in line)
    print(f"PyInstaller done in {seconds:.0f} s ({warnings} warnings; log: "
          f"{log_path.relative_to(ROOT)})")
    return {"build_seconds": round(seconds, 1), "peak_rss_mb": round(peak_mb),
            "cuda_mode": cuda, "pyinstaller_warnings": warnings}


def smoke() -> int:
    env = dict(os.environ, LOUPE_BUNDLE=str(bundle_dir()))
    cmd = [sys.executable, "-m", "pytest", "tests/test_bundle.py", "-m", "build", "-s", "-q",
           "-p", "no:cacheprovider"]
    print("\n$ LOUPE_BUNDLE=dist/Loupe " + " ".join(cmd[2:]), flush=True)
    try:
        return subprocess.run(cmd, cwd=ROOT, env=env, timeout=SMOKE_TIMEOUT).returncode
    except subprocess.TimeoutExpired:
        print(f"smoke test ran past {SMOKE_TIMEOUT} s")
        return 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--no-smoke", action="store_true", help="do not run tests/test_bundle.py")
    p.add_argument("--clean", action="store_true", help="empty PyInstaller's cache first")
    p.add_argument("--cuda", choices=("linked", "all"), default="linked",
                   help="CUDA libraries to keep (default: only those something links)")
    args = p.parse_args(argv)
    for needed in (ROOT / "icons" / "loupe-256.png", ROOT / "icons" / "loupe.ico",
                   ROOT / "icons" / "loupe.icns"):
        if not needed.is_file():
            raise SystemExit(f"build: {needed.relative_to(ROOT)} is missing; run "
                             "`python icons/make_icons.py`")
    info = build(args.clean, args.cuda)
    report = {**info, **size_report(bundle_dir())}
    DIST.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print_report(report)
    if args.no_smoke:
        return 0
    return smoke()


if __name__ == "__main__":
    sys.exit(main())
