"""The k-Winners-Take-All activation (Xiao, Zhong and Zheng, ICLR 2020).

For each sample, all non-batch dimensions are flattened (C*H*W for a conv activation,
F for a linear one), k = floor(gamma * N) (at least 1), and every element at or above
the k-th largest value survives; the rest become zero. Ties at the threshold keep more
than k elements, exactly as the authors' reference code does. The gradient is the
survivor mask times the upstream gradient: the threshold itself is not differentiated.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

__all__ = [
    "KWTA",
    "check_gamma",
    "kwta_mask",
    "kwta_reference",
    "kwta_threshold",
    "num_winners",
    "relu_to_kwta",
    "kwta_to_relu",
]


def check_gamma(gamma: float) -> float:
    """Return gamma as a float, or raise ValueError unless 0 < gamma <= 1."""
    try:
        value = float(gamma)
    except (TypeError, ValueError):
        raise ValueError(f"k-WTA gamma must be a number in (0, 1], got {gamma!r}") from None
    if not 0.0 < value <= 1.0:  # also rejects NaN
        raise ValueError(f"k-WTA gamma must lie in (0, 1], got {gamma!r}")
    return value


def num_winners(gamma: float, n: int) -> int:
    """k = floor(gamma * n), at least 1."""
    return max(1, int(gamma * n))


def kwta_threshold(flat: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th largest value of each row of a 2-D tensor, shape (rows, 1).

    Reference formulation (a per-row ``topk``), kept as the oracle for faster paths.
    """
    return flat.topk(k, dim=1).values[:, -1:]


def kwta_mask(x: torch.Tensor, gamma: float, threshold_fn=None) -> torch.Tensor:
    """Boolean mask of the k-WTA winners of ``x`` (batch first), no gradient."""
    if x.dim() < 2:
        raise ValueError(f"k-WTA needs a batch dimension, got shape {tuple(x.shape)}")
    flat = x.detach().reshape(x.shape[0], -1)
    k = num_winners(gamma, flat.shape[1])
    with torch.no_grad():
        threshold = (threshold_fn or kwta_threshold)(flat, k)
        return (flat >= threshold).view_as(x)


def kwta_reference(x: torch.Tensor, gamma: float) -> torch.Tensor:
    """k-WTA of ``x`` (batch first) with the reference semantics; out of place."""
    return x * kwta_mask(x, check_gamma(gamma))


class KWTA(nn.Module):
    """k-WTA activation: keeps the top ``gamma`` fraction of each sample's units.

    A drop-in replacement for ``nn.ReLU`` (``inplace`` is accepted for that reason).
    Note that, unlike ReLU, a surviving unit may be negative when fewer than k units
    are positive: this is the reference behaviour.
    """

    def __init__(self, gamma: float, inplace: bool = False) -> None:
        super().__init__()
        self.gamma = check_gamma(gamma)
        self.inplace = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = kwta_mask(x, self.gamma)
        # Multiplying by a constant mask gives exactly "gradient = mask * upstream".
        return x.mul_(mask) if self.inplace else x * mask

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}" + (", inplace=True" if self.inplace else "")


def _replace_modules(
    model: nn.Module, match: Callable[[nn.Module], bool], make: Callable[[nn.Module], nn.Module]
) -> int:
    """Replace every submodule for which ``match`` holds by ``make(old)``; return the count."""
    count = 0
    for name, child in list(model.named_children()):
        if match(child):
            setattr(model, name, make(child))
            count += 1
        else:
            count += _replace_modules(child, match, make)
    return count


def relu_to_kwta(model: nn.Module, gamma: float) -> int:
    """Swap every ``nn.ReLU`` of ``model`` (in place) for ``KWTA(gamma)``; return how many.

    Works on any model whose ReLUs are modules, torchvision's ResNet18 and AlexNet
    included. A module used twice (torchvision's BasicBlock reuses ``self.relu``) is
    swapped once and stays shared. ReLUs called functionally cannot be seen, so check
    the returned count. An existing ``KWTA`` is given the new gamma.
    """
    gamma = check_gamma(gamma)
    return _replace_modules(
        model,
        lambda m: isinstance(m, (nn.ReLU, KWTA)),
        lambda old: KWTA(gamma, inplace=getattr(old, "inplace", False)),
    )


def kwta_to_relu(model: nn.Module) -> int:
    """Swap every ``KWTA`` of ``model`` (in place) back to ``nn.ReLU``; return how many."""
    return _replace_modules(
        model, lambda m: isinstance(m, KWTA), lambda old: nn.ReLU(inplace=old.inplace)
    )
