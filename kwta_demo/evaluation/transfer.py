"""Transfer matrices: adversarial examples crafted on one model, tried on every other.

If k-WTA's robustness were real, examples crafted on its ReLU twin would fool it no more
often than its own white-box attack does; under gradient masking they fool it more
(Athalye et al. 2018, Tramèr et al. 2020). A row is a source (a model attacked with the
chosen attack, or with BPDA for a k-WTA model), a column a target model; a cell is the
share of images the source's examples fool the target on, with its 95% interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from torch import nn

from ..attacks import run_attack
from ..models.kwta import KWTA
from .results import wilson_interval

__all__ = ["TransferMatrix", "transfer_matrix", "fooled_rates"]


@dataclass(frozen=True)
class TransferMatrix:
    """``rates[i][j]``: share of images the examples of ``sources[i]`` fool ``targets[j]``
    on; ``ci95[i][j]`` its Wilson interval; ``n`` images (each target's correct ones)."""

    sources: tuple[str, ...]
    targets: tuple[str, ...]
    rates: tuple[tuple[float, ...], ...]
    ci95: tuple[tuple[tuple[float, float], ...], ...]
    n: tuple[int, ...]  # per target: the images it classifies correctly
    attack: str
    preset: str
    eps: float

    def rows(self) -> list[list[object]]:
        return [[s, t, round(self.rates[i][j], 4), self.n[j],
                 f"[{self.ci95[i][j][0]:.3f}, {self.ci95[i][j][1]:.3f}]"]
                for i, s in enumerate(self.sources) for j, t in enumerate(self.targets)]


def fooled_rates(
    adversarial: Mapping[str, torch.Tensor], models: Mapping[str, nn.Module],
    images: torch.Tensor, labels: torch.Tensor,
) -> tuple[list[list[float]], list[list[tuple[float, float]]], list[int]]:
    """For each source's ``adversarial`` images and each target model: the share of the
    images the target classifies correctly clean that the adversarial ones fool."""
    rates, cis, counts = [], [], []
    correct = {}
    with torch.no_grad():
        for name, model in models.items():
            correct[name] = model(images).argmax(1) == labels
    for adv in adversarial.values():
        row, ci = [], []
        with torch.no_grad():
            for name, model in models.items():
                keep = correct[name]
                n = int(keep.sum())
                fooled = int(((model(adv).argmax(1) != labels) & keep).sum())
                row.append(fooled / n if n else float("nan"))
                ci.append(tuple(wilson_interval(fooled, n)))
        rates.append(row)
        cis.append(ci)
    counts = [int(c.sum()) for c in correct.values()]
    return rates, cis, counts


def _has_kwta(model: nn.Module) -> bool:
    return any(isinstance(m, KWTA) for m in model.modules())


def transfer_matrix(
    models: Mapping[str, nn.Module], images: torch.Tensor, labels: torch.Tensor, *,
    attack: str = "pgd", preset: str = "corrected", eps: float | None = 0.031, seed: int = 0,
    bpda_preset: str | None = "interactive", adversarial: Mapping[str, torch.Tensor] | None = None,
) -> TransferMatrix:
    """Attack ``images`` on every model (or take the given ``adversarial`` examples per
    model), and, for each k-WTA model, with BPDA too (``bpda_preset``; None: no BPDA rows);
    then try every source's examples on every model."""
    sources: dict[str, torch.Tensor] = dict(adversarial or {})
    used_eps = eps
    for name, model in models.items():
        if name not in sources:
            result = run_attack(attack, model, images, labels, eps=eps, preset=preset, seed=seed)
            sources[name] = result.adversarial
            used_eps = result.params["eps"]
    if bpda_preset is not None:
        for name, model in models.items():
            if _has_kwta(model):
                sources[f"{name} (BPDA)"] = run_attack(
                    "bpda", model, images, labels, eps=used_eps, preset=bpda_preset, seed=seed
                ).adversarial
    rates, cis, counts = fooled_rates(sources, models, images, labels)
    return TransferMatrix(tuple(sources), tuple(models), tuple(map(tuple, rates)),
                          tuple(tuple(c) for c in cis), tuple(counts), attack, preset,
                          float(used_eps if used_eps is not None else float("nan")))
