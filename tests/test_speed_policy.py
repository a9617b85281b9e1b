"""What Loupe decides for speed on this machine: the CPU class from torch's own report on
every OS, torch threads for the cores others leave free, photos per pass per setting."""
from __future__ import annotations

import pytest

from engine import cpu_share, device


@pytest.mark.parametrize("capability, os_flags, expected", [
    ("AVX2", set(), device.X86_AVX2),  # Windows: no /proc/cpuinfo, torch still says AVX2
    ("AVX512", set(), device.X86_AVX2),  # AVX-512 without the OS naming VNNI or bf16: the safe class
    ("AVX512", {"avx512_vnni"}, device.X86_VNNI),
    ("AVX512", {"avx512_bf16", "avx512_vnni"}, device.NATIVE_BF16),
    ("AVX2", {"avx512_bf16", "avx512f"}, device.X86_AVX2),  # ATEN_CPU_CAPABILITY=avx2 lowers the class
    ("DEFAULT", set(), device.OTHER),  # ARM, Apple silicon (MPS when present), old x86
])
def test_cpu_class_from_torchs_capability(monkeypatch, capability, os_flags, expected):
    import torch

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(device, "_os_cpu_flags", lambda: set(os_flags))
    device.cpu_flags.cache_clear()
    try:
        assert device.cpu_class() == expected
    finally:
        device.cpu_flags.cache_clear()


def test_threads_follow_the_cores_others_leave():
    assert cpu_share.threads_for(2, 0.0) == 2  # idle: torch's default, an idle machine is not slowed
    assert cpu_share.threads_for(2, 0.2) == 2  # background noise
    assert cpu_share.threads_for(2, 0.67) == 1  # a CPU-bound neighbour sharing with our 2 threads
    assert cpu_share.threads_for(2, 1.0) == 1
    assert cpu_share.threads_for(2, 2.0) == 1  # never fewer than one
    assert cpu_share.threads_for(8, 1.0) == 7
    # 1 s of wall: the machine was busy 1.8 CPU-s, 0.9 of them ours -> others used 0.9 cores
    assert cpu_share.others_busy((10.0, 100.0, 5.0), (11.0, 101.8, 5.9)) == pytest.approx(0.9)


def test_fixed_thread_count_and_a_real_neighbour(monkeypatch):
    """LOUPE_THREADS fixes the count; measured, a CPU-bound neighbour on a machine of N cores
    leaves Loupe fewer than N threads."""
    import os
    import subprocess
    import sys
    import time

    import torch

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("LOUPE_THREADS", "1")
        assert cpu_share.fit_threads() == 1 == torch.get_num_threads()
        monkeypatch.delenv("LOUPE_THREADS")
        monkeypatch.setattr(cpu_share, "MIN_WINDOW_S", 0.2)  # a measuring window, kept short
        cores = cpu_share._ceiling
        if cores < 2:  # one thread is already the least Loupe takes: nothing a neighbour could lower
            pytest.skip("a neighbour can leave Loupe fewer threads only where torch has 2 or more")
        neighbours = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(max(1, (os.cpu_count() or 2) // 2))]
        try:
            cpu_share.fit_threads()
            time.sleep(cpu_share.MIN_WINDOW_S + 0.1)  # the neighbour's share is measured over time
            chosen = cpu_share.fit_threads()
        finally:
            for p in neighbours:
                p.kill()
                p.wait()
        assert 1 <= chosen < cores
    finally:
        torch.set_num_threads(before)


def test_batch_size_per_setting():
    from engine.models.registry import BLIP_BASE

    for (precision, beams), size in BLIP_BASE.batch_sizes.items():
        assert BLIP_BASE.batch_for(precision, {"num_beams": 3 if beams else 1}) == size
    assert BLIP_BASE.batch_for("fp32", {"num_beams": 1}) == BLIP_BASE.batch_sizes.get(("fp32", False), BLIP_BASE.batch_size)
