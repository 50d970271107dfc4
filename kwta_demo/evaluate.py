"""Clean and robust accuracy tables: `python -m kwta_demo evaluate`.

Clean accuracy is measured on the whole test split; robust accuracy on a seeded random
subset (the JPEG copy is ordered by class, so "the first N" would be one class). The
result is JSON (one row per model x attack x preset, for others to check and plot)
plus a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from tqdm.auto import tqdm

from .checkpoints import MODEL_NAMES, atomic_write_text, load_model
from .data import CifarSplit, batches, load_cifar10, seeded_subset
from .settings import resolve_device

__all__ = ["AttackSpec", "clean_accuracy", "evaluate", "to_markdown", "add_arguments", "main"]


@dataclass(frozen=True)
class AttackSpec:
    """One column of the robust table: an attack, its preset and epsilon."""

    attack: str
    preset: str = "paper"
    eps: float = 0.031

    @classmethod
    def parse(cls, text: str, default_eps: float) -> "AttackSpec":
        """``name[:preset][@eps]``, e.g. ``pgd:report@0.031`` or ``deepfool``."""
        spec, _, eps = text.partition("@")
        attack, _, preset = spec.partition(":")
        try:
            value = float(eps) if eps else default_eps
        except ValueError:
            raise ValueError(f"bad epsilon in attack spec {text!r}") from None
        if not attack:
            raise ValueError(f"empty attack name in spec {text!r}")
        return cls(attack, preset or "paper", value)

    @property
    def label(self) -> str:
        return f"{self.attack}:{self.preset}@{self.eps:g}"


@torch.no_grad()
def clean_accuracy(
    model: torch.nn.Module, split: CifarSplit, *, batch_size: int = 500, device: torch.device,
    progress: bool = False, desc: str = "clean",
) -> float:
    """Top-1 accuracy of ``model`` over every image of ``split``."""
    model.eval()
    correct = 0
    it = batches(split, batch_size, device=device)
    for images, labels in tqdm(it, total=-(-len(split.labels) // batch_size), disable=not progress,
                               desc=desc, leave=False):
        correct += (model(images).argmax(1) == labels).sum().item()
    return correct / len(split.labels)


def _environment(device: torch.device) -> dict[str, Any]:
    env = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "command": " ".join(["python -m kwta_demo"] + sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    return env


def evaluate(
    models: Iterable[str],
    attacks: Iterable[AttackSpec] = (),
    *,
    data: str | None = None,
    n_robust: int = 1000,
    seed: int = 0,
    batch_size: int = 250,
    device: str | None = None,
    limit_clean: int | None = None,
    progress: bool = True,
    on_update: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Clean accuracy (whole test split) and robust accuracy (seeded subset) of each model.

    Returns ``{"meta": ..., "rows": [...]}`` with one row per model x attack x preset
    (``attack`` is ``"none"`` for the clean row). ``on_update`` receives the partial
    result after every row, so a long run that is killed keeps what it finished.
    """
    dev = resolve_device(device)
    test = load_cifar10("test", data)
    clean_split = seeded_subset(test, limit_clean, seed) if limit_clean else test
    attacks = list(attacks)
    robust_split = seeded_subset(test, min(n_robust, len(test.labels)), seed) if attacks else None
    meta = {**_environment(dev), "data": data or "default search (see kwta_demo.data)",
            "n_clean": len(clean_split.labels), "n_robust": len(robust_split.labels) if robust_split else 0,
            "seed": seed}
    rows: list[dict[str, Any]] = []

    def add(row: dict[str, Any]) -> None:
        rows.append(row)
        if on_update is not None:
            on_update({"meta": meta, "rows": rows})

    for name in models:
        model = load_model(name, dev)
        clean = clean_accuracy(model, clean_split, batch_size=batch_size, device=dev,
                               progress=progress, desc=f"{name} clean")
        base = {"model": name, "device": str(dev), "seed": seed, "clean_acc": clean}
        add({**base, "attack": "none", "preset": "", "eps": 0.0,
             "n": len(clean_split.labels), "robust_acc": clean})
        for spec in attacks:
            from .attacks.evaluate import robust_accuracy  # heavy: only when attacking

            res = robust_accuracy(
                model, robust_split.images, robust_split.labels, spec.attack, eps=spec.eps,
                preset=spec.preset, seed=seed, batch_size=batch_size, device=dev,
                progress=progress,
            )
            add({**base, **res, "model": name, "attack": spec.attack,
                 "preset": spec.preset, "eps": spec.eps, "n": len(robust_split.labels)})
    return {"meta": meta, "rows": rows}


def to_markdown(result: dict[str, Any]) -> str:
    """A models x (clean, attacks...) table of accuracies in percent, with its provenance."""
    rows = result["rows"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    columns = list(dict.fromkeys(
        f"{r['attack']}:{r['preset']}@{r['eps']:g}" for r in rows if r["attack"] != "none"
    ))
    cell = {(r["model"], f"{r['attack']}:{r['preset']}@{r['eps']:g}"): r["robust_acc"] for r in rows}
    clean = {r["model"]: r["clean_acc"] for r in rows if r["attack"] == "none"}
    lines = ["| model | clean | " + " | ".join(columns) + " |" if columns else "| model | clean |"]
    lines.append("|" + "---|" * (2 + len(columns)))
    for m in models:
        vals = [f"{100 * clean[m]:.2f}"] + [
            f"{100 * cell[(m, c)]:.2f}" if (m, c) in cell else "-" for c in columns
        ]
        lines.append(f"| {m} | " + " | ".join(vals) + " |")
    meta = result["meta"]
    lines.append("")
    lines.append(
        f"Accuracy in %. Clean: {meta['n_clean']} test images; robust: {meta['n_robust']} "
        f"(seeded subset, seed {meta['seed']}). Data: {meta['data']}. Device: "
        f"{meta['device']} ({meta['device_name']}), torch {meta['torch']}. "
        f"Command: `{meta['command']}`."
    )
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default=",".join(MODEL_NAMES),
                        help="comma-separated checkpoint names or folders (default: the six)")
    parser.add_argument("--attacks", default="",
                        help="comma-separated name[:preset][@eps], e.g. pgd:paper,pgd:report,deepfool")
    parser.add_argument("--eps", type=float, default=0.031, help="default epsilon for attacks")
    parser.add_argument("--n", type=int, default=1000, help="images for robust accuracy")
    parser.add_argument("--limit-clean", type=int, default=None,
                        help="seeded subset for clean accuracy (default: whole test split)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--data", default=None, help="CIFAR-10 source (see README)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: auto)")
    parser.add_argument("--out", default="results/evaluation",
                        help="output stem: writes STEM.json (after every row) and STEM.md")


def main(args: argparse.Namespace) -> int:
    models = [m for m in args.models.split(",") if m]
    attacks = [AttackSpec.parse(a, args.eps) for a in args.attacks.split(",") if a]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Appended, not with_suffix: a stem such as "eval-alexnet-kwta-0.1" keeps its dots.
    json_path, md_path = out.parent / f"{out.name}.json", out.parent / f"{out.name}.md"

    def save(result: dict[str, Any]) -> None:
        atomic_write_text(json_path, json.dumps(result, indent=2) + "\n")

    result = evaluate(models, attacks, data=args.data, n_robust=args.n, seed=args.seed,
                      batch_size=args.batch_size, device=args.device,
                      limit_clean=args.limit_clean, on_update=save)
    save(result)
    table = to_markdown(result)
    atomic_write_text(md_path, table)
    print(table)
    return 0
