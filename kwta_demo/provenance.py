"""Where a figure came from, in one place: the CPU or GPU, the versions, the code's commit,
the time. Whatever cannot change while the process runs is read once."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import time
from pathlib import Path

import torch

__all__ = ["cpu_name", "device_name", "git_commit", "versions", "utc_now"]

_PACKAGE = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=1)
def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def device_name(device: torch.device | str) -> str:
    """The GPU's name, or the CPU's with its architecture, cores and torch's thread count
    (``CPU (AMD EPYC 7B13, x86_64, 2 cores, 2 threads)``)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return (f"CPU ({cpu_name()}, {platform.machine()}, {os.cpu_count()} cores, {threads} "
            f"thread{'s' if threads != 1 else ''})")


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the code that runs (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=5, cwd=_PACKAGE)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def _library_versions() -> tuple[tuple[str, str | None], ...]:
    import numpy

    found: list[tuple[str, str | None]] = [
        ("python", platform.python_version()), ("torch", torch.__version__),
        ("numpy", numpy.__version__)]
    for name, module in (("torchvision", "torchvision"), ("foolbox", "foolbox"),
                         ("adversarial-robustness-toolbox", "art")):
        try:
            found.append((name, __import__(module).__version__))
        except ImportError:
            found.append((name, None))
    return tuple(found)


def versions() -> dict[str, str | None]:
    """The versions of what computes a result, and the code's commit."""
    return {**dict(_library_versions()), "kwta-demo commit": git_commit()}


def utc_now() -> str:
    """The time now as results rows record it, e.g. "2026-12-01 20:40:00 UTC"."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
