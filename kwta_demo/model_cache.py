"""A lazy, thread-safe model cache for the app: load on first use, keep, report failures.

Models are cached per (name, device). A checkpoint that cannot be loaded is remembered
with its error (so the Hub is not asked again on every click) and reported, while the
other models keep serving.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

import torch

from .checkpoints import MODEL_NAMES, CheckpointError, load_model
from .models import Classifier
from .settings import get_settings, resolve_device

__all__ = ["ModelStatus", "ModelCache"]

Loader = Callable[[str, torch.device], Classifier]


@dataclass(frozen=True)
class ModelStatus:
    name: str
    state: str  # "loaded", "local" (found, not loaded yet), "remote" (not local), "failed"
    detail: str

    @property
    def usable(self) -> bool:
        return self.state in ("loaded", "local", "remote")


def _default_loader(name: str, device: torch.device) -> Classifier:
    return load_model(name, device)


class ModelCache:
    """Load models lazily by name; ``get`` raises ``CheckpointError`` for a failed one."""

    def __init__(self, device: str | torch.device | None = None, loader: Loader | None = None):
        self.device = resolve_device(device)
        self._loader = loader or _default_loader
        self._models: dict[tuple[str, str], Classifier] = {}
        self._errors: dict[tuple[str, str], str] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def _key(self, name: str) -> tuple[str, str]:
        if name not in MODEL_NAMES:
            raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")
        return name, str(self.device)

    def get(self, name: str) -> Classifier:
        """The model ``name`` on this cache's device, loading it on first use."""
        key = self._key(name)
        with self._guard:
            if key in self._models:
                return self._models[key]
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # one loader per model; other models load in parallel
            if key in self._models:
                return self._models[key]
            if key in self._errors:
                raise CheckpointError(self._errors[key])
            try:
                model = self._loader(name, self.device)
            except CheckpointError as e:
                self._errors[key] = str(e)
                raise
            # Attacks need gradients for the input only; frozen weights save the work.
            model.eval().requires_grad_(False)
            with self._guard:
                self._models[key] = model
            return model

    def status(self) -> list[ModelStatus]:
        """Where each of the six models stands, without loading anything."""
        settings = get_settings()
        out = []
        for name in MODEL_NAMES:
            key = (name, str(self.device))
            if key in self._models:
                out.append(ModelStatus(name, "loaded", f"loaded on {self.device}"))
            elif key in self._errors:
                out.append(ModelStatus(name, "failed", self._errors[key]))
            elif (settings.checkpoint_dir / name / "config.json").is_file():
                out.append(ModelStatus(name, "local", f"in {settings.checkpoint_dir / name}"))
            else:
                out.append(ModelStatus(
                    name, "remote",
                    f"not in {settings.checkpoint_dir}; the Hub repo {settings.hub_repo} "
                    "is tried on first use",
                ))
        return out

    def preload(self, names: list[str] | tuple[str, ...]) -> dict[str, str]:
        """Load ``names`` now; return the errors by name (empty when all loaded)."""
        errors = {}
        for name in names:
            try:
                self.get(name)
            except CheckpointError as e:
                errors[name] = str(e)
        return errors
