"""Slices of the loss landscape around one image: where k-WTA's discontinuities show.

Along a direction ``d`` (scaled to an L-inf length of 1, so a step ``a`` moves every pixel
by at most ``a``), the input ``clip(x + a d, 0, 1)`` for ``a`` in [-radius, radius]: the
cross-entropy of the true class, the margin (true logit minus the best other; negative
means misclassified) and, per k-WTA layer, the share of units whose winner status
differs from the clean image's (the Hamming distance of the winner masks). Directions:
the sign of the loss gradient at the image, a seeded random sign vector, and the one the
attack found (adversarial minus clean). The 2-D slice spans the first two.

A ReLU network's loss along a line is piecewise linear with few, small kinks; k-WTA's
jumps wherever a winner changes, which is what stalls gradient attacks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..models.kwta import KWTA

__all__ = ["Slice", "directions", "line_slice", "plane_slice"]


@dataclass(frozen=True)
class Slice:
    """Values along a line: ``alphas`` (L-inf distance), and per point the loss, the
    margin and, per k-WTA layer (path name), the changed share of the winner mask."""

    alphas: tuple[float, ...]
    loss: tuple[float, ...]
    margin: tuple[float, ...]
    hamming: dict[str, tuple[float, ...]]


def _kwta_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    root = getattr(model, "backbone", model)
    return [(n, m) for n, m in root.named_modules() if isinstance(m, KWTA)]


@torch.no_grad()
def _evaluate(model: nn.Module, points: torch.Tensor, label: int,
              clean_masks: dict[str, torch.Tensor] | None, batch: int = 256):
    """Loss, margin and per-layer mask changes for ``points`` (N, C, H, W)."""
    layers = _kwta_layers(model)
    losses, margins = [], []
    changed: dict[str, list[torch.Tensor]] = {n: [] for n, _ in layers}
    for lo in range(0, len(points), batch):
        chunk = points[lo:lo + batch]
        masks: dict[str, torch.Tensor] = {}
        hooks = [m.register_forward_hook(
                     lambda _m, _i, out, n=n: masks.__setitem__(n, (out != 0).flatten(1)))
                 for n, m in layers]
        try:
            logits = model(chunk)
        finally:
            for h in hooks:
                h.remove()
        y = torch.full((len(chunk),), label, device=chunk.device)
        losses.append(F.cross_entropy(logits, y, reduction="none"))
        own = logits[:, label]
        others = logits.clone()
        others[:, label] = float("-inf")
        margins.append(own - others.amax(1))
        if clean_masks is not None:
            for n in changed:
                changed[n].append((masks[n] != clean_masks[n]).float().mean(1))
    ham = {n: torch.cat(v) for n, v in changed.items()} if clean_masks is not None else {}
    return torch.cat(losses), torch.cat(margins), ham, masks


def _clean_masks(model: nn.Module, image: torch.Tensor, label: int) -> dict[str, torch.Tensor]:
    *_, masks = _evaluate(model, image.unsqueeze(0), label, None)
    return masks


def directions(model: nn.Module, image: torch.Tensor, label: int, *, seed: int = 0,
               adversarial: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The slicing directions, each of L-inf length 1: ``gradient sign``, ``random`` and,
    given the attack's result, ``attack``."""
    x = image.unsqueeze(0).clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), torch.tensor([label], device=x.device))
    (grad,) = torch.autograd.grad(loss, x)
    gen = torch.Generator().manual_seed(seed)
    out = {"gradient sign": grad[0].sign(),
           "random": (torch.randint(0, 2, image.shape, generator=gen) * 2 - 1).to(image)}
    if adversarial is not None:
        delta = adversarial - image
        scale = float(delta.abs().max())
        if scale > 0:
            out["attack"] = delta / scale
    return out


def line_slice(model: nn.Module, image: torch.Tensor, label: int, direction: torch.Tensor, *,
               radius: float, points: int = 41) -> Slice:
    """The loss, margin and winner changes along ``image + a * direction``."""
    alphas = torch.linspace(-radius, radius, points, device=image.device)
    pts = (image.unsqueeze(0) + alphas.view(-1, 1, 1, 1) * direction.unsqueeze(0)).clamp(0, 1)
    clean = _clean_masks(model, image, label)
    loss, margin, ham, _ = _evaluate(model, pts, label, clean)
    return Slice(tuple(alphas.tolist()), tuple(loss.tolist()), tuple(margin.tolist()),
                 {n: tuple(v.tolist()) for n, v in ham.items()})


def plane_slice(model: nn.Module, image: torch.Tensor, label: int, d1: torch.Tensor,
                d2: torch.Tensor, *, radius: float, points: int = 21) -> torch.Tensor:
    """The loss on the ``points`` x ``points`` grid ``image + a d1 + b d2`` (rows: b)."""
    grid = torch.linspace(-radius, radius, points, device=image.device)
    a, b = torch.meshgrid(grid, grid, indexing="xy")
    pts = (image.unsqueeze(0) + a.reshape(-1, 1, 1, 1) * d1 + b.reshape(-1, 1, 1, 1) * d2)
    loss, _, _, _ = _evaluate(model, pts.clamp(0, 1), label, None)
    return loss.view(points, points)
