"""Check trained checkpoints before use: ``python -m kwta_demo verify FOLDER...``.

For each checkpoint folder: the weights against a SHA256SUMS manifest, a strict load
(every tensor present, no extra ones, shapes as the config says), clean accuracy on
the whole test split, and the non-zero share of every k-WTA layer against γ. A folder
that fails a check is reported with the reason; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch

from ..models.checkpoints import (
    MANIFEST,
    CheckpointError,
    atomic_write_text,
    load_model,
    verify_manifest,
    weights_sha256,
    write_manifest,
)
from ..data.cifar10 import CifarSplit, load_cifar10, seeded_subset
from ..models.kwta import KWTA
from ..settings import resolve_device

__all__ = ["SPARSITY_TOLERANCE", "verify_checkpoint", "check_external_manifest",
           "record_verification", "add_arguments", "main"]

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
    from .evaluate import clean_accuracy

    return clean_accuracy(model, split, batch_size=500, device=device)


def verify_checkpoint(
    folder: str | Path, test: CifarSplit, *, device: str | torch.device | None = None,
    manifest: str | Path | None = None, sparsity_images: int = 1000,
) -> dict[str, Any]:
    """Run every check on one checkpoint folder; returns the findings (``ok`` says it all)."""
    from ..models.activations import activation_sparsity

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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m kwta_demo verify``."""
    parser.add_argument("folders", nargs="+", help="checkpoint folders")
    parser.add_argument("--manifest", default=None,
                        help="a SHA256SUMS file to check against (default: the folders' "
                             "parent's, when it covers them)")
    parser.add_argument("--data", default=None, help="CIFAR-10 source (see README)")
    parser.add_argument("--limit-test", type=int, default=None,
                        help="seeded test subset (default: all 10,000 images)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--json", default=None, help="write the findings to this JSON file")
    parser.add_argument("--results", default="results/reproduction.json",
                        help="with --record: the evaluation rows whose robust accuracies, "
                             "measured on these weights, go on the card (default: %(default)s)")
    parser.add_argument("--record", action="store_true",
                        help="for each checkpoint that passes, store the findings in its "
                             "metrics.json and model card, and rewrite the SHA256SUMS of its "
                             "parent folder")


def main(args: argparse.Namespace) -> int:
    """Run ``python -m kwta_demo verify``; returns 1 if any checkpoint failed."""
    test = load_cifar10("test", args.data)
    if args.limit_test:
        test = seeded_subset(test, args.limit_test, 0)
    results = [verify_checkpoint(f, test, device=args.device, manifest=args.manifest)
               for f in args.folders]
    print("| checkpoint | verdict | clean accuracy | k-WTA non-zero share (min-max) |")
    print("|---|---|---|---|")
    for r in results:
        acc = f"{100 * r['clean_accuracy']:.2f}% of {r['test_images']}" if "clean_accuracy" in r else "-"
        sp = r.get("sparsity") or {}
        share = (f"{min(sp.values()):.4f}-{max(sp.values()):.4f}"
                 if sp and r.get("name", "").find("kwta") >= 0 else "-")
        verdict = "ok" if r["ok"] else "FAILED: " + "; ".join(r["problems"])
        print(f"| {r.get('name', r['folder'])} | {verdict} | {acc} | {share} |")
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
    if args.record:
        command = "python -m kwta_demo verify " + " ".join(Path(f).name for f in args.folders)
        for folder, r in zip(args.folders, results):
            if r["ok"]:
                record_verification(folder, r, command=command, results=args.results)
        for parent in {Path(f).parent for f, r in zip(args.folders, results) if r["ok"]}:
            write_manifest(parent)
    return 0 if all(r["ok"] for r in results) else 1


def record_verification(folder: str | Path, findings: dict[str, Any], *, command: str,
                        results: str | Path | None = None) -> None:
    """Store ``findings`` as ``verification`` in ``folder/metrics.json`` (and, from the
    evaluation ``results`` file, the robust accuracies measured on these very weights),
    then rewrite the card."""
    from ..reporting.cards import model_card, robust_rows_for, worst_case_for
    from .evaluate import load_result
    from ..models.architectures import ModelConfig

    folder = Path(folder)
    metrics_path = folder / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    metrics["verification"] = {
        **{k: findings.get(k) for k in ("clean_accuracy", "test_images", "sparsity",
                                         "sparsity_images", "weights_sha256", "device")},
        "manifest": Path(findings["manifest"]).name if findings.get("manifest") else None,
        "date": time.strftime("%Y-%m-%d"), "command": command,
        "device": _device_name(findings.get("device", "cpu")),
    }
    if results is not None:
        result = load_result(results)
        metrics["robust"] = robust_rows_for(result, findings["weights_sha256"])
        metrics["worst_case"] = worst_case_for(result, findings["weights_sha256"])
    config = ModelConfig.from_dict(json.loads((folder / "config.json").read_text()))
    atomic_write_text(metrics_path, json.dumps(metrics, indent=2) + "\n")
    atomic_write_text(folder / "README.md", model_card(config, metrics, metrics.get("recipe", {})))


def _device_name(device: str) -> str:
    from ..training.train import _device_name as name

    return name(torch.device(device))
