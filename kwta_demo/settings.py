"""Settings read from the environment, in one place.

| variable             | meaning                                            | default                    |
|----------------------|----------------------------------------------------|----------------------------|
| KWTA_CHECKPOINTS     | local checkpoint folder, searched first            | <repo>/checkpoints         |
| KWTA_HUB_REPO        | Hugging Face Hub model repo holding the six models | kwta-demo/kwta-cifar10     |
| KWTA_HUB_REVISION    | Hub revision (branch, tag or commit) to pin        | main                       |
| KWTA_HUB_TIMEOUT     | seconds the Hub may take to answer at all          | 3                          |
| KWTA_CIFAR10         | CIFAR-10 source: batches dir, image folder or tar  | searched, see data.py      |
| KWTA_DEVICE          | torch device for inference and attacks             | cuda if available, else cpu|
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["Settings", "get_settings", "PROJECT_ROOT", "resolve_device"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    checkpoint_dir: Path
    hub_repo: str
    hub_revision: str
    hub_timeout: float
    cifar10: str | None
    device: str | None


def get_settings() -> Settings:
    """Read the settings from the environment (every call: tests may change it)."""
    timeout = os.environ.get("KWTA_HUB_TIMEOUT", "3")
    try:
        hub_timeout = float(timeout)
    except ValueError:
        raise ValueError(f"KWTA_HUB_TIMEOUT must be a number of seconds, got {timeout!r}") from None
    return Settings(
        checkpoint_dir=Path(os.environ.get("KWTA_CHECKPOINTS", PROJECT_ROOT / "checkpoints")),
        hub_repo=os.environ.get("KWTA_HUB_REPO", "kwta-demo/kwta-cifar10"),
        hub_revision=os.environ.get("KWTA_HUB_REVISION", "main"),
        hub_timeout=hub_timeout,
        cifar10=os.environ.get("KWTA_CIFAR10") or None,
        device=os.environ.get("KWTA_DEVICE") or None,
    )


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device to use: the argument, else KWTA_DEVICE, else CUDA when present, else CPU.

    Asking for CUDA on a machine without it is a clear error, not a crash later.
    """
    requested = device if device is not None else get_settings().device
    if requested is None or str(requested) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(requested)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {requested!r} was asked for, but no CUDA GPU is available")
    return dev
