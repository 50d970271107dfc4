"""Receipts: one attack click, written down so that anyone can check or replay it.

A receipt is a JSON document (the input image's SHA-256 and the model input itself as
32x32 RGB values, each model's name and weights SHA-256, every parameter and the seed,
the library versions and device, and each model's outcome) plus a safetensors file with
the float tensors: the clean input, each model's adversarial image and its 8-bit version.
Replaying a receipt runs the same attack on the same input with the same weights and
seed: on the CPU the tensors come out bit-identical (``replay``).
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from ..models.architectures import CIFAR10_CLASSES, ModelConfig
from ..provenance import versions

__all__ = ["FORMAT", "receipt", "receipt_tensors", "read_tensors", "image_sha256", "versions",
           "replay_arguments"]

FORMAT = "kwta-demo attack receipt, version 1"


def image_sha256(image: torch.Tensor) -> str:
    """SHA-256 of the 32x32 model input as 8-bit RGB bytes (H, W, 3), the uploaded image's
    identity as the models saw it."""
    pixels = (image.detach().cpu().permute(1, 2, 0) * 255).round().to(torch.uint8)
    return hashlib.sha256(pixels.contiguous().numpy().tobytes()).hexdigest()


def receipt(outcome: Any, *, weights: dict[str, str], device: str) -> dict[str, Any]:
    """The JSON receipt of an ``explorer.AttackOutcome``; ``weights`` maps each model to the
    SHA-256 of its weights."""
    image = outcome.image.tensor
    pixels = (image.permute(1, 2, 0) * 255).round().to(torch.uint8).tolist()
    params = {k: v for k, v in outcome.params.items() if k != "target"}  # target_class below
    return {
        "format": FORMAT,
        "image": {"sha256": image_sha256(image), "description": outcome.image.description,
                  "rgb_32x32": pixels},
        "arch": outcome.arch, "attack": outcome.attack, "preset": outcome.preset,
        "eps": params.pop("eps"), "seed": params.pop("seed"), "overrides": params,
        "true_class": None if outcome.label is None else CIFAR10_CLASSES[outcome.label],
        "target_class": None if outcome.target is None else CIFAR10_CLASSES[outcome.target],
        "models": [{**m.summary(), "weights_sha256": weights.get(m.name)} for m in outcome.models],
        "device": device, "versions": versions(), "seconds": round(outcome.seconds, 3),
        "tensors": "the safetensors file beside this receipt: clean, adversarial/<model>, "
                   "adversarial_8bit/<model>",
    }


def receipt_tensors(outcome: Any) -> bytes:
    """The safetensors bytes of a click: the clean input and every model's results."""
    tensors = {"clean": outcome.image.tensor.detach().cpu().contiguous()}
    for m in outcome.ok():
        tensors[f"adversarial/{m.name}"] = m.adversarial.contiguous()
        tensors[f"adversarial_8bit/{m.name}"] = m.adv_8bit.contiguous()
    return save_tensors(tensors, metadata={"format": FORMAT})


def replay_arguments(document: dict[str, Any]) -> dict[str, Any]:
    """The ``Explorer.attack`` arguments that repeat the click of a receipt (the image as an
    (H, W, 3) uint8 array); ValueError for a document that is not a receipt."""
    import numpy as np

    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f"not a receipt ({FORMAT!r} expected)")
    overrides = document.get("overrides", {})
    image = np.asarray(document["image"]["rgb_32x32"], dtype=np.uint8)
    variants = [ModelConfig.from_name(m["model"]).variant for m in document["models"]]
    step = overrides.get("step_size")
    return dict(image=image, arch=document["arch"], variants=variants,
                attack=document["attack"], preset=document["preset"],
                eps_255=document["eps"] * 255, steps=overrides.get("steps"),
                step_size_255=None if step is None else step * 255,
                true_class=document.get("true_class"), target_class=document.get("target_class"),
                seed=document["seed"])


def read_tensors(data: bytes) -> dict[str, torch.Tensor]:
    """The tensors of a receipt's safetensors file."""
    return load_tensors(data)
