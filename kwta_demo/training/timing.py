"""How long a run's epochs take, from its history: the estimates of the pipeline's status
and the epoch times of the training report."""

from __future__ import annotations

from typing import Any

__all__ = ["SIZE_EXPONENT", "typical_epoch_seconds", "epoch_seconds"]

SIZE_EXPONENT = 1.7
"""An epoch's cost grows with the image size to this power (fitted on ResNet18 on an AMD
EPYC; docs/training.md)."""


def _typical(values: list[float]) -> float:
    """The lower quartile: epochs timed while other work shared the CPU run long, and the
    estimate is for the epochs still to come, which usually have it to themselves."""
    ordered = sorted(values)
    return ordered[len(ordered) // 4]


def _measured(history: list[dict[str, Any]]) -> dict[int, list[float]]:
    measured: dict[int, list[float]] = {}
    for h in history:
        if h.get("epoch", 0) > 0 and "train_seconds" in h:
            measured.setdefault(int(h.get("image_size", 32)), []).append(h["train_seconds"])
    return measured


def typical_epoch_seconds(history: list[dict[str, Any]], size: int = 32) -> float | None:
    """The lower quartile of a run's epoch times at ``size`` px (None: no such epoch).

    Epochs that shared the CPU with other work run long (up to 6x here); the lower quartile
    stands for an epoch with the CPU to itself, which a median of a shared run does not.
    """
    times = _measured(history).get(size)
    return _typical(times) if times else None


def epoch_seconds(history: list[dict[str, Any]], size: int) -> float | None:
    """Typical seconds of the measured epochs at ``size`` px (or scaled from another size)."""
    measured = _measured(history)
    if size in measured:
        return _typical(measured[size])
    if measured:
        other = max(measured)
        return _typical(measured[other]) * (size / other) ** SIZE_EXPONENT
    return None
