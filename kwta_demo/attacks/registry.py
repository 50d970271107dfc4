"""The attack registry and ``run_attack``, the one way every attack is called."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from .adaptive import BPDA, GRADIENT_ESTIMATION
from .art_attacks import APGD_CE, APGD_DLR, SQUARE
from .autoattack import AUTOATTACK
from .base import (
    AttackParameterError,
    AttackResult,
    AttackSpec,
    ImageStreams,
    RawOutput,
    attack_mode,
    batch_seeds,
    check_class_range,
    check_eps,
    check_images,
    check_labels,
    check_model_device,
    check_target,
    is_success,
    project,
)
from .foolbox_attacks import CW, DEEPFOOL
from .gradient import FGSM, PGD, VGA

__all__ = ["ATTACKS", "PRESETS", "PRESET_NOTES", "get_attack", "run_attack"]

ATTACKS: dict[str, AttackSpec] = {
    spec.name: spec for spec in (FGSM, PGD, DEEPFOOL, CW, VGA, GRADIENT_ESTIMATION, BPDA,
                                 APGD_CE, APGD_DLR, SQUARE, AUTOATTACK)
}
"""name -> AttackSpec (title, description, params with docs, presets, preset_notes, ...)."""

PRESETS: dict[str, Mapping[str, Mapping[str, Any]]] = {
    name: spec.presets for name, spec in ATTACKS.items()
}
"""attack -> preset -> parameters. Every attack has 'interactive' and 'paper'."""

PRESET_NOTES: dict[str, Mapping[str, str]] = {
    name: spec.preset_notes for name, spec in ATTACKS.items()
}


def get_attack(name: str) -> AttackSpec:
    """The registered attack ``name``, or AttackParameterError listing the valid names."""
    try:
        return ATTACKS[name]
    except (KeyError, TypeError):
        raise AttackParameterError(
            f"unknown attack {name!r}; choose one of {', '.join(ATTACKS)}"
        ) from None


def run_attack(
    name: str,
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float | None,
    preset: str = "interactive",
    seed: int | Sequence[int] = 0,
    target: int | torch.Tensor | None = None,
    **params: Any,
) -> AttackResult:
    """Attack ``images`` (float (B, 3, H, W) in [0, 1]) with labels (B,) at L-inf radius ``eps``.

    ``preset`` supplies every parameter; ``params`` override single ones (unknown names
    and invalid values raise AttackParameterError). ``eps=None`` takes the eps the preset
    was published with, where it has one (e.g. pgd/report: 0.031). ``target`` (an int or
    a (B,) tensor, never the true label) makes the attack targeted where supported; VGA
    requires it. ``seed``: one per image, or an int ``s`` that seeds image ``i`` with
    ``derived_seed(s, i)``. Each image draws its random numbers from its own seed, so its
    result does not depend on the other images of the batch (up to the float rounding of
    batched kernels) and the same seeds give the same result. The model is attacked in
    eval mode with frozen weights and handed back in its previous state.
    """
    spec = get_attack(name)
    if not isinstance(preset, str):
        raise AttackParameterError(f"preset must be a string, got {preset!r}")
    resolved = spec.resolve(preset, params)
    if eps is None:
        if preset not in spec.preset_eps:
            raise AttackParameterError(
                f"{name}: preset {preset!r} has no published eps; pass eps explicitly"
            )
        eps = spec.preset_eps[preset]
    eps = check_eps(eps)
    if spec.targeted == "no" and target is not None:
        raise AttackParameterError(f"{name} is untargeted; target must be None")
    if spec.targeted == "required" and target is None:
        raise AttackParameterError(f"{name} needs a target class (an int or a (B,) tensor)")
    if not isinstance(model, nn.Module):
        raise AttackParameterError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    images = check_images(images)
    labels = check_labels(labels, images.shape[0], images.device)
    seeds = batch_seeds(seed, images.shape[0])
    check_model_device(model, images)

    # inference_mode(False): a caller inside inference_mode (a UI handler) still gets gradients.
    with torch.inference_mode(False), torch.enable_grad(), attack_mode(model):
        images = images.detach().clone()
        labels = labels.clone()
        with torch.no_grad():
            clean_logits = model(images)
        num_classes = clean_logits.shape[1]
        check_class_range(labels, num_classes, "labels")
        tgt = None if target is None else check_target(target, labels, num_classes).clone()
        raw = _run(spec, model, images, labels, tgt, eps, seeds, resolved)
        adversarial = project(raw.adversarial.detach(), images, eps)  # a safety net; no-op
        with torch.no_grad():
            adv_logits = model(adversarial)
        success = is_success(adv_logits, labels, tgt)
        clean_pred = clean_logits.argmax(dim=1)
        adv_pred = adv_logits.argmax(dim=1)
        if resolved.get("keep_best", True):
            # Already adversarial (misclassified, or showing the target) but the attack
            # moved away: the clean image itself is the adversarial, at distance zero.
            back = is_success(clean_logits, labels, tgt) & ~success
            adversarial[back] = images[back]
            adv_pred[back] = clean_pred[back]
            success = success | back

    delta = (adversarial - images).flatten(1)
    recorded_seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else seeds
    out_params = {**resolved, **raw.notes, "eps": eps, "seed": recorded_seed,
                  "targeted": tgt is not None}
    out_params.setdefault("per_step", True)
    info = {k: v.detach() for k, v in raw.info.items()}
    if tgt is not None:
        info["target"] = tgt
    return AttackResult(
        adversarial=adversarial.detach(),
        success=success,
        losses=raw.losses.detach(),
        true_prob=raw.true_prob.detach(),
        linf=delta.abs().amax(dim=1),
        l2=delta.norm(dim=1),
        clean_pred=clean_pred,
        adv_pred=adv_pred,
        params=out_params,
        attack=name,
        preset=preset,
        info=info,
    )


def _run(spec: AttackSpec, model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
         target: torch.Tensor | None, eps: float, seeds: list[int],
         params: dict[str, Any]) -> RawOutput:
    """The runner on the whole batch, or one image at a time where it draws globally."""
    if not spec.draws_globally(params) or images.shape[0] == 1:
        return spec.run(model, images, labels, target, eps=eps,
                        rng=ImageStreams(seeds, images.device), **params)
    parts = [
        spec.run(model, images[i : i + 1], labels[i : i + 1],
                 None if target is None else target[i : i + 1], eps=eps,
                 rng=ImageStreams(seeds[i : i + 1], images.device), **params)
        for i in range(images.shape[0])
    ]
    return RawOutput(
        adversarial=torch.cat([p.adversarial for p in parts]),
        losses=torch.cat([p.losses for p in parts], dim=1),
        true_prob=torch.cat([p.true_prob for p in parts], dim=1),
        info={k: torch.cat([p.info[k] for p in parts]) for k in parts[0].info},
        notes=parts[0].notes,
    )
