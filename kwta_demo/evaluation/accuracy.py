"""Accuracy over a data set, clean and under attack, batch by batch; every image attacked
with its own seed, so an image's outcome does not depend on the batch it is in."""

from __future__ import annotations

import json
import math
import time
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..attacks import get_attack, run_attack
from ..attacks.autoattack import FLAGS as AUTOATTACK_FLAGS
from ..attacks.base import AttackParameterError, attack_mode, check_labels, derived_seed
from ..data.cifar10 import (
    CifarSplit,
)
from .batches import BatchParts, Outcomes, Progress, map_batches, reporter, seeds_name

__all__ = ["AUTOATTACK_INFO", "SEEDING", "clean_accuracy", "robust_accuracy",
           "autoattack_summary", "vga_statistics"]


AUTOATTACK_INFO = ("fooled_by", *(f"flag_{f}" for f in AUTOATTACK_FLAGS))
SEEDING = "per image: derived_seed(seed, test-split index)"
"""How a row's images were seeded; part of a row's identity, so rows seeded otherwise are
never mixed with these."""


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


def _indices(indices: Sequence[int] | torch.Tensor | None, n: int) -> torch.Tensor:
    """Each image's index (its test-split index, for the seeds); 0..n-1 when not given."""
    if indices is None:
        return torch.arange(n)
    out = torch.as_tensor(indices, dtype=torch.long).flatten()
    if out.numel() != n:
        raise ValueError(f"{out.numel()} indices for {n} images; give one per image")
    return out


def _json_params(params: dict[str, Any]) -> dict[str, Any]:
    """An attack's params as they read back from JSON, without the per-image seeds."""
    return json.loads(json.dumps({k: v for k, v in params.items() if k != "seed"}, default=list))


def _mean(values: torch.Tensor) -> float:
    return float(values.double().mean()) if values.numel() else math.nan


def clean_accuracy(
    model: nn.Module, split: CifarSplit, *, batch_size: int = 500,
    device: str | torch.device | None = None, progress: Progress | bool | None = None,
    desc: str = "clean", parts: BatchParts | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> float:
    """Top-1 accuracy of ``model`` over every image of ``split``."""
    dev = _device_of(model, device)
    n = len(split.labels)
    report, close = reporter(progress, n, desc)

    def compute(lo: int, hi: int) -> tuple[Outcomes, dict[str, Any]]:
        with attack_mode(model), torch.no_grad():
            pred = model(_as_float(split.images[lo:hi], dev)).argmax(1).cpu()
        return {"correct": pred == split.labels[lo:hi].cpu()}, {}

    try:
        out, _ = map_batches(n, batch_size, compute, parts=parts, progress=report,
                             should_stop=should_stop, label=desc)
    finally:
        close()
    return _mean(out["correct"])


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
    indices: Sequence[int] | torch.Tensor | None = None,
    parts: BatchParts | None = None,
    should_stop: Callable[[], bool] | None = None,
    **params: Any,
) -> dict[str, Any]:
    """Clean and robust accuracy of ``model`` under ``attack`` on ``images`` (uint8 or [0, 1]).

    robust_acc = fraction of images classified correctly *and* not successfully attacked;
    ``robust_per_image`` says which. Image ``j`` is attacked with seed
    ``derived_seed(seed, indices[j])`` (``indices``: the images' test-split indices; 0..N-1
    by default), so an image's outcome does not depend on the batch it is in.
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
            device=device, progress=progress, indices=indices, parts=parts,
            should_stop=should_stop, **params,
        )
        # the report's metric: over (image, target) pairs, the prediction after the attack
        # still equals the true label; ours, 1 - (target reached), is target_missed_rate
        return {**stats, "attack": "vga", "robust_acc": stats["true_label_kept_rate"],
                "target_missed_rate": 1.0 - stats["success_rate"]}

    labels = _check_data(images, labels, batch_size)
    index = _indices(indices, images.shape[0])
    dev = _device_of(model, device)
    start = time.perf_counter()
    n = images.shape[0]
    report, close = reporter(progress, n, f"{attack}:{preset}")

    seeds = [derived_seed(seed, int(i)) for i in index]

    def compute(lo: int, hi: int) -> tuple[Outcomes, dict[str, Any]]:
        x = _as_float(images[lo:hi], dev)
        y = labels[lo:hi].to(dev)
        result = run_attack(attack, model, x, y, eps=eps, preset=preset, seed=seeds[lo:hi],
                            **params)
        out = {"correct": (result.clean_pred == y).cpu(), "success": result.success.cpu(),
               "linf": result.linf.cpu(), "l2": result.l2.cpu()}
        if "raw_success" in result.info:
            out["raw_success"] = result.info["raw_success"].cpu()
            out["raw_l2"] = result.info["raw_l2"].cpu()
        for key in AUTOATTACK_INFO:
            if key in result.info:
                out[key] = result.info[key].cpu()
        return out, _json_params(result.params)

    try:
        got, first_params = map_batches(n, batch_size, compute, parts=parts,
                                        part_name=lambda lo, hi: seeds_name(seeds[lo:hi]),
                                        progress=report, should_stop=should_stop,
                                        label=f"{attack}:{preset}")
    finally:
        close()
    correct_t, success_t = got["correct"], got["success"]
    broken = correct_t & success_t
    robust = correct_t & ~success_t
    out: dict[str, Any] = {
        "attack": attack,
        "preset": preset,
        "eps": first_params["eps"],
        "seed": seed,
        "seeding": SEEDING,
        "n": n,
        "clean_acc": _mean(correct_t),
        "robust_acc": _mean(robust),
        "success_rate": _mean(success_t),
        "attack_success_rate": _mean(success_t[correct_t]),
        "mean_linf": _mean(got["linf"][broken]),
        "mean_l2": _mean(got["l2"][broken]),
        "params": first_params,
        "robust_per_image": robust.int().tolist(),
        "seconds": time.perf_counter() - start,
    }
    if "fooled_by" in got:
        out["autoattack"] = autoattack_summary(got, correct_t, first_params["attacks"])
    if "raw_success" in got:
        # without the eps limit (the attack's own criterion, e.g. C&W's minimal L2)
        raw_ok = got["raw_success"] & correct_t
        out["raw_success_rate"] = _mean(got["raw_success"][correct_t])
        out["raw_l2_median"] = (
            float(got["raw_l2"][raw_ok].median()) if bool(raw_ok.any()) else math.nan
        )
    return out


def autoattack_summary(got: dict[str, torch.Tensor], correct: torch.Tensor,
                       attacks: str) -> dict[str, Any]:
    """Which of AutoAttack's attacks fooled how many of the correctly classified images, and
    on how many images each of its checks raised its flag. ``square_after_white_box`` is
    AutoAttack's last check: the share of the images that Square fooled after every
    white-box attack before it had failed (AutoAttack flags more than 0.2%)."""
    names = attacks.split("+")
    by = got["fooled_by"][correct]
    fooled = {name: int((by == i).sum()) for i, name in enumerate(names, start=1)}
    summary: dict[str, Any] = {
        "attacks": names, "fooled_by": fooled,
        "flags": {flag: int(got[f"flag_{flag}"].sum()) for flag in AUTOATTACK_FLAGS},
    }
    if "square" in names and len(names) > 1:
        summary["square_after_white_box"] = fooled["square"] / max(len(got["fooled_by"]), 1)
    return summary


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
    indices: Sequence[int] | torch.Tensor | None = None,
    parts: BatchParts | None = None,
    should_stop: Callable[[], bool] | None = None,
    **params: Any,
) -> dict[str, Any]:
    """Targeted VGA towards every wrong class of every image (9 per image on CIFAR-10).

    ``batch_size`` counts (image, target) pairs per attack call; the pair of image ``j``
    and its ``k``-th wrong class is seeded ``derived_seed(seed, 9 * indices[j] + k)``.
    Returns success_rate (targets reached), true_label_kept_rate (pairs still predicted as
    the true label after the attack: the report's robustness), mean_steps (over the reached
    targets), per_target (success rate per target class), clean_acc, n (images), n_pairs,
    robust_per_image (each image's number of pairs that kept the true label).
    """
    labels = _check_data(images, labels, batch_size)
    index = _indices(indices, images.shape[0])
    dev = _device_of(model, device)
    start = time.perf_counter()
    with attack_mode(model), torch.no_grad():
        num_classes = int(model(_as_float(images[:1], dev)).shape[1])
    # pair k: image k // (C - 1), target the (k % (C - 1))-th class after the label
    n = images.shape[0]
    wrong = num_classes - 1
    image_idx = torch.arange(n).repeat_interleave(wrong)
    offsets = torch.arange(wrong).repeat(n)
    targets = (labels.cpu()[image_idx] + 1 + offsets) % num_classes
    pair_seeds = [derived_seed(seed, int(index[i]) * wrong + int(k))
                  for i, k in zip(image_idx, offsets)]
    total = image_idx.numel()
    report, close = reporter(progress, total, f"vga:{preset}")

    def compute(lo: int, hi: int) -> tuple[Outcomes, dict[str, Any]]:
        idx = image_idx[lo:hi]
        x = _as_float(images[idx.to(images.device)], dev)
        y = labels[idx.to(labels.device)].to(dev)
        result = run_attack("vga", model, x, y, eps=eps, preset=preset, seed=pair_seeds[lo:hi],
                            target=targets[lo:hi].to(dev), **params)
        return ({"success": result.success.cpu(), "kept": (result.adv_pred == y).cpu(),
                 "steps": result.info["steps_to_success"].cpu(),
                 "clean_correct": (result.clean_pred == y).cpu()},
                _json_params(result.params))

    try:
        got, first_params = map_batches(total, batch_size, compute, parts=parts,
                                        part_name=lambda lo, hi: seeds_name(pair_seeds[lo:hi]),
                                        progress=report, should_stop=should_stop,
                                        label=f"vga:{preset}")
    finally:
        close()
    success_t, steps_t = got["success"], got["steps"]
    per_target = [_mean(success_t[targets == c]) for c in range(num_classes)]
    return {
        "attack": "vga",
        "preset": preset,
        "eps": first_params["eps"],
        "seed": seed,
        "seeding": SEEDING,
        "n": n,
        "n_pairs": total,
        "clean_acc": _mean(got["clean_correct"].view(n, wrong)[:, 0]),
        "success_rate": _mean(success_t),
        "true_label_kept_rate": _mean(got["kept"]),
        "mean_steps": _mean(steps_t[success_t]),
        "per_target": per_target,
        "params": first_params,
        "robust_per_image": got["kept"].view(n, wrong).sum(1).tolist(),
        "seconds": time.perf_counter() - start,
    }
