"""Check trained checkpoints before use: ``python -m kwta_demo verify FOLDER...``.

For each checkpoint folder: the weights against a SHA256SUMS manifest, a strict load
(every tensor present, no extra ones, shapes as the config says), clean accuracy on
the whole test split, and the non-zero share of every k-WTA layer against γ. A folder
that fails a check is reported with the reason; the exit status is 1 if any failed.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch

from ..data.cifar10 import CifarSplit, seeded_subset
from ..models.activations import activation_sparsity
from ..models.checkpoints import (
    MANIFEST,
    CheckpointError,
    load_model,
    verify_manifest,
    weights_sha256,
)
from ..models.kwta import KWTA
from ..settings import resolve_device
from .accuracy import clean_accuracy

__all__ = ["SPARSITY_TOLERANCE", "verify_checkpoint", "check_external_manifest",
           ]

# A k-WTA layer keeps floor(γN) units plus the ties at the threshold, minus winners that
# are exactly zero: its measured share may differ from γ by this much (absolute).
SPARSITY_TOLERANCE = 0.01


def check_external_manifest(folder: Path, manifest: Path) -> None:
    """Check ``folder``'s weight files against ``manifest`` (lines ``sha256  name/file``)."""
    listed: dict[str, str] = {}
    for line in manifest.read_text().splitlines():
        if line.strip():
            digest, _, rel = line.strip().partition("  ")
            listed[rel.strip()] = digest
    files = sorted(p for p in folder.iterdir() if p.name.endswith(".safetensors"))
    if not files:
        raise CheckpointError(f"{folder}: no weights file")
    for path in files:
        rel = f"{folder.name}/{path.name}"
        if rel not in listed:
            raise CheckpointError(f"{manifest} does not list {rel}")
        h = hashlib.sha256(path.read_bytes()).hexdigest()
        if h != listed[rel]:
            raise CheckpointError(f"{rel}: sha256 {h} differs from {listed[rel]} in {manifest}")


@torch.no_grad()
def _accuracy(model: torch.nn.Module, split: CifarSplit, device: torch.device) -> float:
    return clean_accuracy(model, split, batch_size=500, device=device)


def verify_checkpoint(
    folder: str | Path, test: CifarSplit, *, device: str | torch.device | None = None,
    manifest: str | Path | None = None, sparsity_images: int = 1000,
) -> dict[str, Any]:
    """Run every check on one checkpoint folder; returns the findings (``ok`` says it all)."""
    folder = Path(folder)
    dev = resolve_device(device)
    out: dict[str, Any] = {"folder": str(folder), "ok": False, "problems": []}
    try:
        if manifest is not None:
            check_external_manifest(folder, Path(manifest))
            out["manifest"] = str(manifest)
        else:
            out["manifest"] = str(folder.parent / MANIFEST) if verify_manifest(folder) else None
        model = load_model(folder, dev)  # strict: names, shapes, no extras
    except (CheckpointError, OSError, ValueError) as e:
        out["problems"].append(str(e))
        return out
    config = model.config
    out.update(name=config.name, weights_sha256=weights_sha256(folder))
    if config.name != folder.name:
        out["problems"].append(f"folder {folder.name!r} holds {config.name!r}")
    t0 = time.perf_counter()
    out["clean_accuracy"] = _accuracy(model, test, dev)
    out["test_images"] = len(test.labels)
    out["eval_seconds"] = time.perf_counter() - t0
    stored = {}
    metrics_path = folder / "metrics.json"
    if metrics_path.is_file():
        stored = json.loads(metrics_path.read_text())
        claimed = stored.get("clean_accuracy")
        if claimed is not None and stored.get("test_images") == len(test.labels):
            out["claimed_accuracy"] = claimed
            if abs(claimed - out["clean_accuracy"]) > 1.5 / len(test.labels):
                out["problems"].append(f"metrics.json says {claimed:.4f}, measured "
                                       f"{out['clean_accuracy']:.4f} on the same images")
    sample = seeded_subset(test, min(sparsity_images, len(test.labels)), seed=0)
    sparsity = activation_sparsity(model, sample.images)
    if config.activation == "kwta":
        kwta_layers = {n for n, m in model.backbone.named_modules() if isinstance(m, KWTA)}
        sparsity = {n: v for n, v in sparsity.items() if n in kwta_layers}
        off = {n: v for n, v in sparsity.items() if abs(v - config.gamma) > SPARSITY_TOLERANCE}
        if not sparsity:
            out["problems"].append("a k-WTA config, but no k-WTA layer in the model")
        for n, v in off.items():
            out["problems"].append(f"layer {n}: non-zero share {v:.4f}, γ = {config.gamma:g}")
    out["sparsity"] = sparsity
    out["sparsity_images"] = len(sample.labels)
    out["device"] = str(dev)
    out["ok"] = not out["problems"]
    return out
