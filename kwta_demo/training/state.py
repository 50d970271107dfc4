"""A training run's whole state in one safetensors file, and reading it back to resume.

Weights, optimiser momentum, RNG states, the unfinished epoch's progress and the history,
in ``<state_dir>/<name>.state.safetensors``: written to a temporary name, fsynced and
renamed, so a run killed at any moment leaves either the previous complete state or the
new one. JSON metadata lives inside the safetensors header; nothing is ever pickled. A
state is resumed only by the run that saved it (same config, data and initial weights).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from ..data.cifar10 import CifarSplit
from ..models.checkpoints import atomic_save_safetensors, hash_file

__all__ = ["STATE_SUFFIX", "STATE_KEY", "STATE_FORMAT", "TrainStateError", "EpochProgress",
           "fingerprint_split", "fingerprint_checkpoint", "state_path",
           "remove_stale_temporaries", "save_state", "read_state", "read_state_meta",
           "check_state_matches", "restore_state", "restore_partial"]

STATE_SUFFIX = ".state.safetensors"
STATE_KEY = "kwta_train_state"
STATE_FORMAT = 1


class TrainStateError(ValueError):
    """A saved training state cannot be resumed (different config or data, or damaged)."""


@dataclass
class EpochProgress:
    """How far an epoch has got: saved inside a training state to resume mid-epoch."""

    order: torch.Tensor  # the epoch's permutation of the training images
    step: int = 0  # optimiser steps done in this epoch
    loss_sum: torch.Tensor | None = None  # float32 sum of loss * batch over those steps
    correct: torch.Tensor | None = None
    seen: int = 0
    seconds: float = 0.0  # training time spent on the epoch before this process




def fingerprint_split(split: CifarSplit) -> str:
    """A checksum of a data split, so a resumed run cannot silently switch data."""
    h = hashlib.sha256()
    h.update(split.labels.detach().cpu().contiguous().numpy().tobytes())
    h.update(split.images.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def fingerprint_checkpoint(folder: Path) -> str:
    """A checksum of a checkpoint's weight files (names and bytes), for the initial weights."""
    h = hashlib.sha256()
    for path in sorted(folder.glob("*.safetensors")):
        h.update(path.name.encode())
        hash_file(path, h)
    return h.hexdigest()[:16]


def state_path(state_dir: Path, run_name: str) -> Path:
    """Where run ``run_name`` keeps its state."""
    return state_dir / f"{run_name}{STATE_SUFFIX}"


def remove_stale_temporaries(path: Path) -> None:
    """Delete temporaries a killed writer of ``path`` left behind (never ``path`` itself)."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        tmp.unlink(missing_ok=True)


def save_state(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator,
    device: torch.device, info: dict[str, Any], partial: EpochProgress | None = None,
    extra: dict[str, torch.Tensor] | None = None,
) -> None:
    """The whole training state; ``partial`` when saved inside an epoch (``info["epoch"]``
    counts the complete epochs only). ``extra`` tensors are saved under their own names
    (prefixes other than ``model.``, ``optim.``, ``partial.`` and ``rng.``)."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for key, value in (extra or {}).items():
        if key.split(".", 1)[0] in ("model", "optim", "partial", "rng"):
            raise ValueError(f"extra tensor {key!r} takes a name the state uses itself")
        tensors[key] = value.detach().cpu().contiguous()
    if partial is not None:
        tensors["partial.order"] = partial.order.detach().cpu().contiguous()
        tensors["partial.loss_sum"] = partial.loss_sum.detach().cpu().reshape(1)
        tensors["partial.correct"] = partial.correct.detach().cpu().reshape(1)
        info = {**info, "partial": {"step": partial.step, "seen": partial.seen,
                                    "seconds": partial.seconds,
                                    "images": int(partial.order.numel())}}
    opt = optimizer.state_dict()
    scalars: dict[str, Any] = {}
    for pid, entries in opt["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{key}"] = value
    tensors["rng.data"] = generator.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    if device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    meta = {**info, "format": STATE_FORMAT, "param_groups": opt["param_groups"],
            "optim_scalars": scalars}
    atomic_save_safetensors(tensors, path, {STATE_KEY: json.dumps(meta)})


def read_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and metadata of the training state at ``path``."""
    try:
        with safe_open(str(path), framework="pt") as f:
            header = (f.metadata() or {}).get(STATE_KEY)
        tensors = load_file(path)
        meta = json.loads(header) if header else None
    except (SafetensorError, OSError, ValueError) as e:
        raise TrainStateError(
            f"{path}: not a readable training state ({e}); delete it (or pass --fresh) to start over"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != STATE_FORMAT:
        raise TrainStateError(f"{path}: not a kwta-demo training state (format {STATE_FORMAT})")
    return tensors, meta


def check_state_matches(path: Path, meta: dict[str, Any], expected: dict[str, Any],
                        defaults: dict[str, Any]) -> None:
    """TrainStateError unless the state at ``path`` was saved by the run ``expected``
    describes (config, data and initial weights); a config field missing from the saved
    state (added since) matches at its value in ``defaults``."""
    problems = []
    saved_cfg, want_cfg = meta.get("config", {}), expected["config"]
    defaults = json.loads(json.dumps(defaults))
    for key in sorted(set(saved_cfg) | set(want_cfg)):
        saved = saved_cfg[key] if key in saved_cfg else defaults.get(key)
        if saved != want_cfg.get(key):
            problems.append(f"{key}: saved {saved!r}, now {want_cfg.get(key)!r}")
    for key, what in (("data", "training data"), ("test_data", "test data"),
                      ("init_sha256", "initial weights")):
        if meta.get(key) != expected.get(key):
            problems.append(f"{what} differ (checksum {meta.get(key)} saved, {expected.get(key)} now)")
    if problems:
        raise TrainStateError(
            f"{path} was saved by a different run, so it cannot be resumed: "
            + "; ".join(problems)
            + ". Delete that file (or pass --fresh, or use another --state-dir) to start over."
        )


def restore_state(
    tensors: dict[str, torch.Tensor], meta: dict[str, Any], model: nn.Module,
    optimizer: torch.optim.Optimizer, generator: torch.Generator, device: torch.device,
) -> None:
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")},
                          strict=True)
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    for key, value in meta.get("optim_scalars", {}).items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    generator.set_state(tensors["rng.data"])
    torch.set_rng_state(tensors["rng.torch"])
    if device.type == "cuda" and "rng.cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)


def restore_partial(tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                     device: torch.device) -> EpochProgress | None:
    """The unfinished epoch a state was saved in, or None (saved at an epoch's end)."""
    info = meta.get("partial")
    if not info:
        return None
    return EpochProgress(order=tensors["partial.order"], step=int(info["step"]),
                         loss_sum=tensors["partial.loss_sum"].reshape(()).to(device),
                         correct=tensors["partial.correct"].reshape(()).to(device),
                         seen=int(info["seen"]), seconds=float(info["seconds"]))


def read_state_meta(path: Path) -> dict[str, Any] | None:
    """The metadata of the state at ``path`` without its tensors (None: absent or unreadable)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return json.loads((f.metadata() or {}).get(STATE_KEY, "{}"))
    except (SafetensorError, OSError, ValueError):
        return None
