"""Adversarial training's two pieces: the single-step training examples, and the PGD-10
check on held-out training images that catches catastrophic overfitting.

The training examples take one signed gradient step from a random start, the cost of one
extra forward and backward pass per batch:

- ``n-fgsm`` (de Jorge et al., *Make Some Noise*, NeurIPS 2022): uniform noise of radius
  2ε, a step of ε, no projection back into the ε-ball. Its larger noise is what keeps
  single-step training from overfitting catastrophically at ε = 8/255.
- ``fgsm-rs`` (Wong, Rice and Kolter, *Fast is better than free*, ICLR 2020): uniform noise
  of radius ε, a step of 1.25ε, projected into the ε-ball.

Both start from the noisy image clipped to [0, 1] and end inside [0, 1]. Single-step
training can collapse within one epoch: robustness to the single step stays while PGD's
falls to zero. ``holdout_check`` measures PGD-10 accuracy on images held out of training
after every epoch, and training keeps the epoch where it was highest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import run_attack
from ..attacks.base import derived_seed
from ..data.cifar10 import CifarSplit, batches

__all__ = ["METHODS", "DEFAULT_METHOD", "DEFAULT_EPS", "HOLDOUT_IMAGES", "HOLDOUT_ATTACK",
           "SingleStep", "training_examples", "HoldoutCheck", "holdout_check"]


@dataclass(frozen=True)
class SingleStep:
    """One single-step method: noise radius and step, in multiples of ε."""

    noise: float
    step: float
    project: bool  # clip the perturbation back into the ε-ball


METHODS: dict[str, SingleStep] = {
    "n-fgsm": SingleStep(noise=2.0, step=1.0, project=False),
    "fgsm-rs": SingleStep(noise=1.0, step=1.25, project=True),
}
DEFAULT_METHOD = "n-fgsm"
DEFAULT_EPS = 8 / 255
HOLDOUT_IMAGES = 500
"""Training images held out of an adversarially trained stage for its per-epoch check."""
HOLDOUT_ATTACK = ("pgd", "interactive")
"""The check's attack: PGD, 10 steps of ε/4 from a random start (``attacks`` preset)."""


def training_examples(
    forward: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    method: str,
    eps: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """The adversarial training batch for ``images``: ``method``'s step on the loss of
    ``forward`` (the model in its current mode, under the caller's autocast). The noise is
    drawn from ``generator``, so a resumed run draws the same numbers."""
    spec = METHODS[method]
    noise = torch.rand(images.shape, generator=generator, device=generator.device)
    start = (images + (2 * noise.to(images.device) - 1) * (spec.noise * eps)).clamp(0, 1)
    start.requires_grad_(True)
    loss = F.cross_entropy(forward(start).float(), labels)
    (grad,) = torch.autograd.grad(loss, start)
    adversarial = start.detach() + spec.step * eps * grad.sign()
    if spec.project:
        adversarial = images + (adversarial - images).clamp(-eps, eps)
    return adversarial.clamp(0, 1).detach()


@dataclass(frozen=True)
class HoldoutCheck:
    """Accuracy on the held-out images, clean and under the check's PGD-10."""

    clean_acc: float
    pgd_acc: float
    images: int
    seconds: float


def holdout_check(model: nn.Module, split: CifarSplit, eps: float, *, seed: int = 0,
                  batch_size: int = 250) -> HoldoutCheck:
    """Clean and PGD-10 accuracy of ``model`` on ``split`` (float32, eval mode; the model
    is handed back in its previous mode). Image ``i`` is attacked with its own seed."""
    started = time.perf_counter()
    device = next(model.parameters()).device
    attack, preset = HOLDOUT_ATTACK
    clean = robust = start = 0
    n = len(split.labels)
    for x, y in batches(split, batch_size, device=device):
        result = run_attack(attack, model, x, y, eps=eps, preset=preset,
                            seed=[derived_seed(seed, start + i) for i in range(len(y))])
        clean += int((result.clean_pred == y).sum())
        robust += int((~result.success).sum())
        start += len(y)
    return HoldoutCheck(clean_acc=clean / max(n, 1), pgd_acc=robust / max(n, 1), images=n,
                        seconds=time.perf_counter() - started)
