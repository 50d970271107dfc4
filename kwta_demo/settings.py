"""Settings read from the environment, in one place.

| variable             | meaning                                            | default                    |
|----------------------|----------------------------------------------------|----------------------------|
| KWTA_CHECKPOINTS     | local checkpoint folder, searched first            | <repo>/checkpoints         |
| KWTA_HUB_REPO        | Hub model repo of each model, ``{name}`` its name  | kwta-demo/cifar10-{name}   |
| KWTA_HUB_REVISION    | Hub revision (branch, tag or commit) to pin, or    | main                       |
|                      | ``name=rev,name=rev,...`` (others: main)           |                            |
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


DEFAULT_HUB_REPO = "kwta-demo/cifar10-{name}"


@dataclass(frozen=True)
class Settings:
    checkpoint_dir: Path
    hub_repo: str  # a repo id with "{name}" where the model's name goes
    hub_revision: str
    hub_timeout: float
    cifar10: str | None
    device: str | None

    def __post_init__(self) -> None:
        if "{name}" not in self.hub_repo or self.hub_repo.count("/") != 1:
            raise ValueError(f"KWTA_HUB_REPO must be a repo id with {{name}} where each model's "
                             f"name goes (e.g. {DEFAULT_HUB_REPO}), got {self.hub_repo!r}")
        self.revisions()  # validates the pairs

    def repo_for(self, name: str) -> str:
        """The Hub repo of model ``name`` (one model per repo)."""
        return self.hub_repo.replace("{name}", name)

    def revisions(self) -> dict[str, str]:
        """Per-model revisions given as ``name=rev,...`` (empty for one revision for all)."""
        if "=" not in self.hub_revision:
            return {}
        pairs = {}
        for part in filter(None, (p.strip() for p in self.hub_revision.split(","))):
            name, sep, rev = part.partition("=")
            if not sep or not name or not rev:
                raise ValueError(f"KWTA_HUB_REVISION: expected name=revision pairs, got {part!r}")
            pairs[name.strip()] = rev.strip()
        return pairs

    def revision_for(self, name: str) -> str:
        """The revision of model ``name``'s repo to use."""
        pairs = self.revisions()
        return pairs.get(name, "main") if pairs else self.hub_revision


def get_settings() -> Settings:
    """Read the settings from the environment (every call: tests may change it)."""
    timeout = os.environ.get("KWTA_HUB_TIMEOUT", "3")
    try:
        hub_timeout = float(timeout)
    except ValueError:
        raise ValueError(f"KWTA_HUB_TIMEOUT must be a number of seconds, got {timeout!r}") from None
    return Settings(
        checkpoint_dir=Path(os.environ.get("KWTA_CHECKPOINTS", PROJECT_ROOT / "checkpoints")),
        hub_repo=os.environ.get("KWTA_HUB_REPO", DEFAULT_HUB_REPO),
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
