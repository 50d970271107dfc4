"""Capture what the activation layers output, and measure sparsity and flipped winners.

A "layer" is an activation module (``nn.ReLU`` or ``KWTA``) named by its path inside the
backbone, e.g. ``layer2.0.act1``. ReLU and k-WTA models of one architecture share these
paths, so the same name picks the same place in both. The comparable layers are the ones
that k-WTA replaces: ResNet18's stem keeps ReLU in every model, so it is not offered.

"Active" means non-zero. For k-WTA that is the set of winners (a winner that is exactly
zero has probability zero); for ReLU it is the positive units.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

import torch
from torch import nn

from .architectures import Classifier, build_model
from .kwta import KWTA

__all__ = [
    "LayerInfo",
    "comparable_layers",
    "capture_activations",
    "active_share",
    "flipped_share",
    "activation_sparsity",
]


@dataclass(frozen=True)
class LayerInfo:
    name: str  # module path inside the backbone
    shape: tuple[int, ...]  # per-sample output shape, (C, H, W) or (F,)

    @property
    def label(self) -> str:
        return f"{self.name} ({'x'.join(str(s) for s in self.shape)})"


@lru_cache(maxsize=None)
def comparable_layers(arch: str) -> tuple[LayerInfo, ...]:
    """The activation layers of ``arch`` that k-WTA replaces, in forward order, with shapes."""
    model = build_model(arch, "kwta", 0.1).eval()
    names = [n for n, m in model.backbone.named_modules() if isinstance(m, KWTA)]
    shapes = capture_activations(model, torch.zeros(1, 3, 32, 32), names)
    return tuple(LayerInfo(n, tuple(shapes[n].shape[1:])) for n in names)


def _activation_module(model: Classifier, name: str) -> nn.Module:
    modules = dict(model.backbone.named_modules())
    module = modules.get(name)
    if not isinstance(module, (nn.ReLU, KWTA)):
        known = [n for n, m in modules.items() if isinstance(m, (nn.ReLU, KWTA))]
        raise ValueError(f"unknown layer {name!r}; activation layers are: {', '.join(known)}")
    return module


@torch.no_grad()
def capture_activations(
    model: Classifier, images: torch.Tensor, layers: list[str] | tuple[str, ...]
) -> dict[str, torch.Tensor]:
    """Run ``images`` (B, 3, 32, 32) in [0, 1] through ``model``; return each layer's output.

    Outputs are detached CPU copies, shape (B, *layer shape). A module that runs more than
    once per forward pass keeps its last output.
    """
    captured: dict[str, torch.Tensor] = {}
    handles = []
    # Hooks are per module, and the model is shared between request threads: record only
    # this thread's forward pass, never another request's.
    owner = threading.get_ident()
    for name in layers:
        module = _activation_module(model, name)

        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor, name: str = name) -> None:
            if threading.get_ident() != owner:
                return
            # Clone: ReLU runs in place, so a later in-place op could change what we saw.
            captured[name] = output.detach().to("cpu", copy=True)

        handles.append(module.register_forward_hook(hook))
    try:
        device = next(model.parameters()).device
        model(images.to(device))
    finally:
        for handle in handles:
            handle.remove()
    return captured


def active_share(activation: torch.Tensor) -> float:
    """The share of units that are non-zero, over the whole tensor."""
    return float((activation != 0).float().mean())


def flipped_share(clean: torch.Tensor, adversarial: torch.Tensor) -> float:
    """The share of the clean input's active units that are inactive for the adversarial one.

    For a k-WTA layer, the share of winners that the attack flipped to losers. NaN when
    the clean input has no active unit.
    """
    if clean.shape != adversarial.shape:
        raise ValueError(f"shapes differ: {tuple(clean.shape)} vs {tuple(adversarial.shape)}")
    winners = clean != 0
    total = int(winners.sum())
    if total == 0:
        return float("nan")
    return float((winners & (adversarial == 0)).sum()) / total


@torch.no_grad()
def activation_sparsity(
    model: nn.Module, images: torch.Tensor, *, batch_size: int = 250
) -> dict[str, float]:
    """Fraction of non-zero outputs of every activation module (``KWTA`` or ``nn.ReLU``).

    ``images``: (N, 3, 32, 32), uint8 or float in [0, 1]. Layers are named by their path
    inside the backbone (``layer2.0.act1``). For a k-WTA layer the fraction should be
    about γ (ties at the threshold keep a few more; a winner that is exactly zero, one
    fewer); for ReLU it is the share of positive units.
    """
    device = next(model.parameters()).device
    root = getattr(model, "backbone", model)
    counts: dict[str, list[int]] = {}
    hooks = []

    def make_hook(name: str) -> Callable:
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            c = counts.setdefault(name, [0, 0])
            c[0] += int(torch.count_nonzero(output))
            c[1] += output.numel()
        return hook

    for name, module in root.named_modules():
        if isinstance(module, (KWTA, nn.ReLU)):
            hooks.append(module.register_forward_hook(make_hook(name)))
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size].to(device)
            model(x.float().div(255) if x.dtype == torch.uint8 else x.float())
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return {name: nz / total for name, (nz, total) in counts.items()}
