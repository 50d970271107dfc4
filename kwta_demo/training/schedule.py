"""The incremental recipe for one architecture (``train_schedule``): each k-WTA stage
starts from the one before; the command line that trains the same models again."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..data.cifar10 import (
    CifarSplit,
)
from ..models.architectures import (
    ARCHS,
)
from .config import (
    TrainConfig,
    default_epochs,
    format_image_sizes,
    parse_image_sizes,
    parse_stage,
    predecessor,
    stage_config,
    stage_name,
)
from .loop import train_model

__all__ = ["first_init", "train_schedule", "reproduce_command", "default_batch_size", "set_threads"]

def _per_stage(value: Any, n: int, what: str) -> list[Any]:
    """One value for every stage: a scalar repeats, a sequence must have one per stage."""
    if value is None or not isinstance(value, (list, tuple)):
        return [value] * n
    if len(value) == 1:
        return list(value) * n
    if len(value) != n:
        raise ValueError(f"{what}: give one value or one per stage ({n}), got {len(value)}")
    return list(value)


def first_init(arch: str, stages: Sequence[str], out_root: Path) -> Path | None:
    """The checkpoint the first stage starts from, which must exist already (or None)."""
    if parse_stage(stages[0]).scratch:
        return None
    folder = out_root / stage_name(arch, predecessor(stages[0]))
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"stage {stages[0]} of {arch} starts from {folder}, which is not a checkpoint yet: "
            f"train that stage first (e.g. --stages {predecessor(stages[0])},{stages[0]})"
        )
    return folder


def train_schedule(
    arch: str,
    stages: Sequence[str],
    train_split: CifarSplit,
    test_split: CifarSplit,
    device: str | torch.device | None = None,
    *,
    out_root: str | os.PathLike,
    state_dir: str | os.PathLike,
    epochs: int | Sequence[int] | None = None,
    lr: float | Sequence[float] | None = None,
    schedule: str | Sequence[str] | None = None,
    warmup_epochs: float | Sequence[float] | None = None,
    batch_size: int = 512,
    image_sizes: str | Sequence[str] | None = None,
    half: bool = False,
    progress: bool = True,
    fresh: bool = False,
    data_hint: str | None = None,
    limit_train: int | None = None,
    save_every: float | None = 300.0,
    should_stop: Callable[[], bool] | None = None,
    on_model: Callable[[dict[str, Any]], None] | None = None,
    **common: Any,
) -> list[dict[str, Any]]:
    """The incremental recipe for one architecture: each k-WTA stage starts from the one before.

    ``stages`` like ``["relu", "kwta-0.2", "kwta-0.1"]``; a first stage that fine-tunes
    starts from the existing checkpoint of its predecessor (``kwta-0.1`` from
    ``kwta-0.2``, any other γ from ``relu``) in ``out_root``. ``epochs``, ``lr``,
    ``schedule``, ``warmup_epochs`` and ``image_sizes`` (``"16x10+32x20"``, see
    ``parse_image_sizes``) take one value or one per stage. ``common`` goes
    to every ``TrainConfig`` (seed, momentum, clip_grad_norm, ...). ``on_model(result)``
    is called as each stage's model is saved. Returns the results of ``train_model`` in
    stage order.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    if not stages:
        raise ValueError("no stages to train")
    out_root, n = Path(out_root), len(stages)
    per = {k: _per_stage(v, n, k) for k, v in
           (("epochs", epochs), ("lr", lr), ("schedule", schedule), ("warmup_epochs", warmup_epochs))}
    sizes = _per_stage(image_sizes, n, "image_sizes")
    configs, outs = [], []
    first = first_init(arch, stages, out_root)
    previous: str | None = None
    for i, stage in enumerate(stages):
        init = None
        if not parse_stage(stage).scratch:
            init = str(out_root / previous) if previous else str(first)
        stage_epochs = per["epochs"][i]
        if stage_epochs is None:
            stage_epochs = default_epochs(arch, stage)
        configs.append(stage_config(
            arch, stage, batch_size=batch_size, init_from=init,
            **{**{k: v[i] for k, v in per.items()}, "epochs": stage_epochs},
            image_sizes=parse_image_sizes(sizes[i], stage_epochs) if sizes[i] else (),
            **common))
        outs.append(out_root / stage_name(arch, stage))
        previous = outs[-1].name
    command = reproduce_command(arch, stages, configs, half=half, data=data_hint,
                                limit_train=limit_train)
    results = []
    for cfg, out in zip(configs, outs):
        results.append(train_model(cfg, train_split, test_split, device, out=out,
                                   state_dir=state_dir, half=half, progress=progress,
                                   fresh=fresh, command=command, save_every=save_every,
                                   should_stop=should_stop))
        if on_model is not None:  # e.g. the card, before the next stage starts
            on_model(results[-1])
    return results


def reproduce_command(
    arch: str, stages: Sequence[str], configs: Sequence[TrainConfig], *, half: bool,
    data: str | None = None, limit_train: int | None = None,
) -> str:
    """The ``python -m kwta_demo train`` command line that trains ``configs`` again."""
    first = configs[0]

    def join(values: Sequence[Any]) -> str:
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)

    args = [
        "python", "-m", "kwta_demo", "train", "--arch", arch, "--stages", ",".join(stages),
        "--epochs", join([c.epochs for c in configs]), "--lr", join([c.lr for c in configs]),
        "--schedule", join([c.schedule for c in configs]),
        "--warmup", join([c.warmup_epochs for c in configs]),
        "--batch-size", str(first.batch_size), "--seed", str(first.seed),
        "--momentum", f"{first.momentum:g}", "--weight-decay", f"{first.weight_decay:g}",
    ]
    if any(c.image_sizes for c in configs):
        args += ["--sizes", ",".join(format_image_sizes(c.image_sizes) for c in configs)]
    if first.label_smoothing:
        args += ["--label-smoothing", f"{first.label_smoothing:g}"]
    if first.clip_grad_norm is not None:
        args += ["--clip", f"{first.clip_grad_norm:g}"]
    if first.amp != "auto":
        args += ["--amp", first.amp]
    adversarial = next((c for c in configs if c.adversarial is not None), None)
    if adversarial is not None:
        args += ["--adversarial", adversarial.adversarial, "--adv-eps",
                 f"{adversarial.adv_eps:.6g}", "--holdout", str(adversarial.holdout)]
    if limit_train:
        args += ["--limit-train", str(limit_train)]
    if half:
        args.append("--half")
    args += ["--data", data or "data/cifar10-jpeg.tar.gz"]
    return " ".join(shlex.quote(a) for a in args)


def default_batch_size(device: torch.device) -> int:
    """512 images per step on CUDA; 128 on the CPU, where larger batches run slower per
    image and smaller ones no faster (docs/training.md)."""
    return 512 if device.type == "cuda" else 128


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op thread count (None: one per core); returns the count in use."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    else:
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0))
                                  if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))
    return torch.get_num_threads()
