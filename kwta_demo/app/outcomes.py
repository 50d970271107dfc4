"""What the explorer hands back: one typed result per handler (an attack on every model,
the activations, an audit, a landscape, a sweep)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..data.uploads import PreparedImage
from ..models.activations import (
    LayerInfo,
)
from ..models.architectures import CIFAR10_CLASSES

__all__ = ["quantise_8bit", "GalleryData", "ModelAttack", "AttackOutcome", "ActivationView",
           "LandscapeOutcome", "AuditOutcome", "SweepOutcome"]


def quantise_8bit(adversarial: torch.Tensor, clean: torch.Tensor, eps: float) -> torch.Tensor:
    """``adversarial`` rounded to the nearest of 256 levels, kept in [0, 1] and inside the
    eps-ball of ``clean`` on that grid: the image a PNG download holds. A clean image
    from an 8-bit source lies on the grid, so the bounds do too."""
    levels = torch.round(adversarial * 255)
    base = torch.round(clean * 255)
    reach = math.floor(eps * 255 + 1e-6)
    return torch.minimum(torch.maximum(levels, base - reach), base + reach).clamp(0, 255) / 255


@dataclass(frozen=True)
class GalleryData:
    images: list[np.ndarray]  # (32, 32, 3) uint8
    labels: list[int]
    captions: list[str]
    message: str  # where the images come from, or why there are none
    indices: list[int] = field(default_factory=list)  # each image's index in the test split


@dataclass
class ModelAttack:
    """One model's part of an attack click."""

    name: str
    error: str | None = None  # why this model could not run (the others still did)
    result: Any = None  # AttackResult for one image
    label: int | None = None  # the label attacked (true class or own clean prediction)
    clean_probs: torch.Tensor | None = None  # (10,)
    adv_probs: torch.Tensor | None = None  # (10,)
    adv_8bit: torch.Tensor | None = None  # (3, H, W): the adversarial image as a PNG holds it
    fools_8bit: bool | None = None  # whether that 8-bit image still succeeds

    @property
    def adversarial(self) -> torch.Tensor:
        return self.result.adversarial[0].detach().cpu()

    def summary(self) -> dict[str, Any]:
        """Plain numbers for the API and captions."""
        if self.error is not None:
            return {"model": self.name, "error": self.error}
        r = self.result
        clean_pred, adv_pred = int(r.clean_pred[0]), int(r.adv_pred[0])
        return {
            "model": self.name,
            "label": CIFAR10_CLASSES[self.label],
            "clean_pred": CIFAR10_CLASSES[clean_pred],
            "clean_prob": round(float(self.clean_probs[clean_pred]), 4),
            "adv_pred": CIFAR10_CLASSES[adv_pred],
            "adv_prob": round(float(self.adv_probs[adv_pred]), 4),
            "success": bool(r.success[0]),
            "linf_255": round(float(r.linf[0]) * 255, 3),
            "l2": round(float(r.l2[0]), 4),
            "steps_recorded": int(r.true_prob.shape[0]),
            "steps": r.params.get("steps"),
            "success_8bit": self.fools_8bit,
        }


@dataclass
class AttackOutcome:
    image: PreparedImage
    arch: str
    attack: str
    preset: str
    params: dict[str, Any]  # what was asked (eps in [0, 1], overrides, target)
    label: int | None  # the true class if known
    target: int | None
    models: list[ModelAttack] = field(default_factory=list)
    seconds: float = 0.0

    def ok(self) -> list[ModelAttack]:
        return [m for m in self.models if m.error is None]

    def state(self) -> dict[str, Any]:
        """What a later activation or audit request needs, as CPU tensors (kept server-side)."""
        return {
            "arch": self.arch,
            "clean": self.image.tensor.clone(),
            "adversarial": {m.name: m.adversarial.clone() for m in self.ok()},
            "labels": {m.name: m.label for m in self.ok()},
            "attack": self.attack, "preset": self.preset,
            "params": {k: v for k, v in self.params.items() if k != "target"},
            "target": self.target,
        }


@dataclass
class ActivationView:
    layer: LayerInfo
    stats: list[dict[str, Any]]  # per model: active share clean/adv, flipped share
    maps: dict[str, tuple[torch.Tensor, torch.Tensor]]  # per model: (clean, adversarial) maps


@dataclass
class LandscapeOutcome:
    lines: dict[str, dict[str, Any]]  # per model, per direction: the line slice
    planes: dict[str, torch.Tensor]  # per model: the gradient-sign x random plane
    radius: float  # in pixel units


@dataclass
class AuditOutcome:
    audits: list[Any]  # kwta_demo.evaluation.audit.Audit, one per model
    errors: dict[str, str]
    images: int
    seconds: float

    def rows(self) -> list[list[Any]]:
        flag = {True: "yes", False: "no", None: "—"}
        return [[a.model, c.title, flag[c.flagged], c.evidence] for a in self.audits
                for c in a.checks]


@dataclass
class SweepOutcome:
    eps_255: list[float]
    accuracy: dict[str, list[float]]  # per model, one value per epsilon
    errors: dict[str, str]
    n: int
    seed: int
    attack: str
    preset: str
    seconds: float

    def rows(self) -> list[list[Any]]:
        return [[name, eps, round(acc, 4)] for name, accs in self.accuracy.items()
                for eps, acc in zip(self.eps_255, accs)]
