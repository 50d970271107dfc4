"""Accuracy under attack over a data set, in batches: what the evaluate command tabulates."""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import torch
from torch import nn

from .base import AttackParameterError, attack_mode, check_labels, derived_seed
from .registry import get_attack, run_attack

__all__ = ["robust_accuracy", "vga_statistics"]

Progress = Callable[[int, int], None]
"""Called after every batch with (items done, items in all)."""


def _reporter(
    progress: Progress | bool | None, total: int, desc: str
) -> tuple[Progress, Callable[[], None]]:
    """A progress callback and a closer: a tqdm bar for ``True``, nothing for None/False."""
    if callable(progress):
        return progress, lambda: None
    if not progress:
        return (lambda done, total: None), lambda: None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, leave=False)
    return (lambda done, _total: bar.update(done - bar.n)), bar.close


def _device_of(model: nn.Module, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    tensor = next(model.parameters(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def _as_float(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 images (a CifarSplit's) become floats in [0, 1]; float images pass as they are."""
    images = images.to(device)
    return images.float() / 255.0 if images.dtype == torch.uint8 else images


def _check_data(images: Any, labels: Any, batch_size: Any) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[0] == 0:
        raise AttackParameterError("images must be a non-empty (N, 3, H, W) tensor")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise AttackParameterError(f"batch_size must be a positive integer, got {batch_size!r}")
    return check_labels(labels, images.shape[0], images.device)


def _predict(
    model: nn.Module, images: torch.Tensor, device: torch.device, batch_size: int
) -> tuple[torch.Tensor, int]:
    """Clean predictions (on the CPU) and the number of classes."""
    preds, num_classes = [], 0
    with attack_mode(model), torch.no_grad():
        for lo in range(0, images.shape[0], batch_size):
            logits = model(_as_float(images[lo : lo + batch_size], device))
            num_classes = logits.shape[1]
            preds.append(logits.argmax(dim=1).cpu())
    return torch.cat(preds), num_classes


def _mean(values: torch.Tensor) -> float:
    return float(values.float().mean()) if values.numel() else math.nan


def robust_accuracy(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    attack: str,
    *,
    eps: float | None,
    preset: str = "paper",
    seed: int = 0,
    batch_size: int = 100,
    device: str | torch.device | None = None,
    progress: Progress | bool | None = None,
    **params: Any,
) -> dict[str, Any]:
    """Clean and robust accuracy of ``model`` under ``attack`` on ``images`` (uint8 or [0, 1]).

    robust_acc = fraction of images classified correctly *and* not successfully attacked.
    Batch ``i`` is attacked with seed ``derived_seed(seed, i)``, so a result depends on
    the batch size.
    ``progress``: a callable ``(done, total)``, True for a tqdm bar, or None/False.
    mean_linf / mean_l2 average the perturbations of the successful attacks on correctly
    classified images (NaN if there are none). For ``vga`` the numbers are the
    all-9-targets statistics of ``vga_statistics``; robust_acc is then the report's
    metric, the fraction of (image, wrong target) pairs whose prediction after the attack
    is still the true label, and target_missed_rate the fraction whose target was not
    reached.
    """
    if get_attack(attack).name == "vga":
        stats = vga_statistics(
            model, images, labels, eps=eps, preset=preset, seed=seed, batch_size=batch_size,
            device=device, progress=progress, **params,
        )
        # the report's metric: over (image, target) pairs, the prediction after the attack
        # still equals the true label; ours, 1 - (target reached), is target_missed_rate
        return {**stats, "attack": "vga", "robust_acc": stats["true_label_kept_rate"],
                "target_missed_rate": 1.0 - stats["success_rate"]}

    labels = _check_data(images, labels, batch_size)
    device = _device_of(model, device)
    start = time.perf_counter()
    n = images.shape[0]
    report, close = _reporter(progress, n, f"{attack}:{preset}")
    correct, success, linf, l2, raw_success, raw_l2 = [], [], [], [], [], []
    first_params: dict[str, Any] = {}
    for i, lo in enumerate(range(0, n, batch_size)):
        x = _as_float(images[lo : lo + batch_size], device)
        y = labels[lo : lo + batch_size].to(device)
        result = run_attack(attack, model, x, y, eps=eps, preset=preset,
                            seed=derived_seed(seed, i), **params)
        first_params = first_params or result.params
        correct.append((result.clean_pred == y).cpu())
        success.append(result.success.cpu())
        linf.append(result.linf.cpu())
        l2.append(result.l2.cpu())
        if "raw_success" in result.info:
            raw_success.append(result.info["raw_success"].cpu())
            raw_l2.append(result.info["raw_l2"].cpu())
        report(min(lo + batch_size, n), n)
    close()
    correct_t, success_t = torch.cat(correct), torch.cat(success)
    broken = correct_t & success_t
    out: dict[str, Any] = {
        "attack": attack,
        "preset": preset,
        "eps": first_params["eps"],
        "seed": seed,
        "n": n,
        "clean_acc": _mean(correct_t),
        "robust_acc": _mean(correct_t & ~success_t),
        "success_rate": _mean(success_t),
        "attack_success_rate": _mean(success_t[correct_t]),
        "mean_linf": _mean(torch.cat(linf)[broken]),
        "mean_l2": _mean(torch.cat(l2)[broken]),
        "params": first_params,
        "seconds": time.perf_counter() - start,
    }
    if raw_success:
        # without the eps limit (the attack's own criterion, e.g. C&W's minimal L2)
        raw_ok = torch.cat(raw_success) & correct_t
        out["raw_success_rate"] = _mean(torch.cat(raw_success)[correct_t])
        out["raw_l2_median"] = (
            float(torch.cat(raw_l2)[raw_ok].median()) if bool(raw_ok.any()) else math.nan
        )
    return out


def vga_statistics(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float | None,
    preset: str = "paper",
    seed: int = 0,
    batch_size: int = 100,
    device: str | torch.device | None = None,
    progress: Progress | bool | None = None,
    **params: Any,
) -> dict[str, Any]:
    """Targeted VGA towards every wrong class of every image (9 per image on CIFAR-10).

    ``batch_size`` counts (image, target) pairs per attack call. Returns success_rate
    (targets reached), true_label_kept_rate (pairs still predicted as the true label
    after the attack: the report's robustness), mean_steps (over the reached targets),
    per_target (success rate per target class), clean_acc, n (images), n_pairs.
    """
    labels = _check_data(images, labels, batch_size)
    device = _device_of(model, device)
    start = time.perf_counter()
    first_params: dict[str, Any] = {}
    clean_pred, num_classes = _predict(model, images, device, batch_size)
    # pair k: image k // (C - 1), target the (k % (C - 1))-th class after the label
    n = images.shape[0]
    image_idx = torch.arange(n).repeat_interleave(num_classes - 1)
    offsets = torch.arange(num_classes - 1).repeat(n)
    targets = (labels.cpu()[image_idx] + 1 + offsets) % num_classes
    success, steps, kept = [], [], []
    total = image_idx.numel()
    report, close = _reporter(progress, total, f"vga:{preset}")
    for i, lo in enumerate(range(0, total, batch_size)):
        idx = image_idx[lo : lo + batch_size]
        x = _as_float(images[idx.to(images.device)], device)
        y = labels[idx.to(labels.device)].to(device)
        t = targets[lo : lo + batch_size].to(device)
        result = run_attack(
            "vga", model, x, y, eps=eps, preset=preset, seed=derived_seed(seed, i), target=t,
            **params
        )
        first_params = first_params or result.params
        success.append(result.success.cpu())
        kept.append((result.adv_pred == y).cpu())
        steps.append(result.info["steps_to_success"].cpu())
        report(min(lo + batch_size, total), total)
    close()
    success_t, steps_t = torch.cat(success), torch.cat(steps)
    per_target = [_mean(success_t[targets == c]) for c in range(num_classes)]
    return {
        "attack": "vga",
        "preset": preset,
        "eps": first_params["eps"],
        "seed": seed,
        "n": n,
        "n_pairs": total,
        "clean_acc": _mean(clean_pred == labels.cpu()),
        "success_rate": _mean(success_t),
        "true_label_kept_rate": _mean(torch.cat(kept)),
        "mean_steps": _mean(steps_t[success_t]),
        "per_target": per_target,
        "params": first_params,
        "seconds": time.perf_counter() - start,
    }
