"""A lazy, thread-safe model cache for the app: load on first use, keep, report failures.

Models are cached per (name, device). A checkpoint that cannot be loaded is remembered
with its error (so the Hub is not asked again on every click) and reported, while the
other models keep serving. A damaged or mismatched file is remembered until a restart; a
model that was not found is looked for again after ``RETRY_NOT_FOUND_S`` (the Hub may
have been down for a moment).

Every model the cache hands out checks the calling thread's ``deadline`` before each
forward pass, so a request that runs past its time limit stops within one forward pass,
even in the middle of an attack (whose loop the app does not control).
"""

from __future__ import annotations

import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import nn

from ..models.architectures import Classifier
from ..models.checkpoints import (
    MODEL_NAMES,
    CheckpointError,
    CheckpointNotFoundError,
    load_model,
)
from ..settings import Settings, get_settings, resolve_device

__all__ = ["ModelStatus", "ModelCache", "RequestTimeout", "deadline", "RETRY_NOT_FOUND_S"]

RETRY_NOT_FOUND_S = 300.0

Loader = Callable[[str, torch.device], Classifier]

_COMMIT = re.compile(r"^[0-9a-f]{40}$")  # a Hub revision that cannot move
_request = threading.local()  # this thread's (deadline, limit in seconds), if any


class RequestTimeout(TimeoutError):
    """A request ran past its time limit; the message is meant for the user."""


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Within the block, a forward pass of a cached model in this thread raises
    ``RequestTimeout`` once ``seconds`` have passed. Blocks nest (the inner one counts)."""
    outer = getattr(_request, "deadline", None)
    _request.deadline = (time.monotonic() + seconds, seconds)
    try:
        yield
    finally:
        _request.deadline = outer


def _check_deadline(_module: nn.Module, _args: Any) -> None:
    current = getattr(_request, "deadline", None)
    if current is not None and time.monotonic() > current[0]:
        raise RequestTimeout(
            f"stopped: this request passed its {current[1]:g} s time limit. "
            "Use fewer steps, images or models, or a faster preset."
        )


@dataclass(frozen=True)
class ModelStatus:
    name: str
    state: str  # "loaded", "local" (found, not loaded yet), "remote" (not local), "failed"
    detail: str

    @property
    def usable(self) -> bool:
        return self.state in ("loaded", "local", "remote")


class ModelCache:
    """Load models lazily by name; ``get`` raises ``CheckpointError`` for a failed one."""

    def __init__(self, device: str | torch.device | None = None, loader: Loader | None = None,
                 settings: Settings | None = None):
        """``settings``: where checkpoints are looked for (the environment's, read at each
        use, by default)."""
        self.settings = settings
        self.device = resolve_device(device if device is not None or settings is None
                                     else settings.device)
        self._loader = loader or (lambda name, dev: load_model(name, dev, self.settings))
        self._models: dict[tuple[str, str], Classifier] = {}
        self._errors: dict[tuple[str, str], tuple[str, float]] = {}  # message, retry after
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
            message, retry_after = self._errors.get(key, (None, 0.0))
            if message is not None and time.monotonic() < retry_after:
                raise CheckpointError(message)
            try:
                model = self._loader(name, self.device)
            except CheckpointNotFoundError as e:
                self._errors[key] = (str(e), time.monotonic() + RETRY_NOT_FOUND_S)
                raise
            except CheckpointError as e:
                self._errors[key] = (str(e), float("inf"))  # a damaged file stays damaged
                raise
            except (OSError, RuntimeError, ValueError) as e:
                # Possibly passing (network, memory): report, but try again next time.
                raise CheckpointError(f"{name}: could not be loaded ({type(e).__name__}: {e})") from e
            # Attacks need gradients for the input only; frozen weights save the work.
            model.eval().requires_grad_(False)
            model.register_forward_pre_hook(_check_deadline)
            with self._guard:
                self._models[key] = model
                self._errors.pop(key, None)
            return model

    def status(self) -> list[ModelStatus]:
        """Where each of the six models stands, without loading anything."""
        settings = self.settings or get_settings()
        out = []
        for name in MODEL_NAMES:
            key = (name, str(self.device))
            if key in self._models:
                out.append(ModelStatus(name, "loaded", f"loaded on {self.device}"))
            elif key in self._errors:
                out.append(ModelStatus(name, "failed", self._errors[key][0]))
            elif (settings.checkpoint_dir / name / "config.json").is_file():
                out.append(ModelStatus(name, "local", f"in {settings.checkpoint_dir / name}"))
            else:
                revision = settings.revision_for(name)
                pinned = "" if _COMMIT.match(revision) else " (a branch or tag, not a pinned commit)"
                out.append(ModelStatus(
                    name, "remote",
                    f"not in {settings.checkpoint_dir}; the Hub repo "
                    f"{settings.repo_for(name)}@{revision}{pinned} is tried on first use",
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
