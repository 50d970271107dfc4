"""Clean and robust accuracy tables: `python -m kwta_demo evaluate`.

Clean accuracy is measured on the whole test split; robust accuracy on a seeded random
subset (the JPEG copy is ordered by class, so "the first N" would be one class). The
result is JSON (one row per model x attack x preset, for others to check and plot)
plus a markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from tqdm.auto import tqdm

from .checkpoints import MODEL_NAMES, atomic_write_text, find_checkpoint, load_model, weights_sha256
from .data import CifarSplit, batches, evaluation_sample, load_cifar10, seeded_subset
from .settings import resolve_device

__all__ = ["RobustColumn", "EvaluationStopped", "clean_accuracy", "evaluate", "load_result",
           "save_result", "to_markdown", "wilson_interval", "add_arguments", "main"]


class EvaluationStopped(RuntimeError):
    """``should_stop`` said stop; every finished row is kept."""


@dataclass(frozen=True)
class RobustColumn:
    """One column of the robust table: an attack, its preset and epsilon."""

    attack: str
    preset: str = "paper"
    eps: float = 0.031

    @classmethod
    def parse(cls, text: str, default_eps: float) -> "RobustColumn":
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
    attacks: Iterable[RobustColumn] = (),
    *,
    data: str | None = None,
    n_robust: int = 1000,
    seed: int = 0,
    batch_size: int = 250,
    device: str | None = None,
    limit_clean: int | None = None,
    progress: bool = True,
    on_update: Callable[[dict[str, Any]], None] | None = None,
    done: Iterable[dict[str, Any]] = (),
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Clean accuracy (whole test split) and robust accuracy (seeded subset) of each model.

    Returns ``{"meta": ..., "rows": [...]}`` with one row per model x attack x preset
    (``attack`` is ``"none"`` for the clean row). ``on_update`` receives the partial
    result after every row, so a long run that is killed keeps what it finished.
    ``done``: rows of an earlier run; a row with the same model weights (sha256),
    attack, preset, eps, n and seed is kept, not computed again. ``should_stop()`` is
    asked between rows; when true, ``EvaluationStopped`` is raised.
    """
    dev = resolve_device(device)
    test = load_cifar10("test", data)
    clean_split = seeded_subset(test, limit_clean, seed) if limit_clean else test
    attacks = list(attacks)
    robust_split = (evaluation_sample(test, min(n_robust, len(test.labels)), seed)[0]
                    if attacks else None)
    meta = {**_environment(dev), "data": data or "default search (see kwta_demo.data)",
            "n_clean": len(clean_split.labels), "n_robust": len(robust_split.labels) if robust_split else 0,
            "seed": seed, "clean_sample": CLEAN_SAMPLE if limit_clean else WHOLE_SPLIT,
            "robust_sample": ROBUST_SAMPLE}
    rows: list[dict[str, Any]] = list(done)
    kept = {_row_key(r): r for r in rows}

    def add(row: dict[str, Any]) -> None:
        rows.append(row)
        kept[_row_key(row)] = row
        if on_update is not None:
            on_update({"meta": meta, "rows": rows})

    def check_stop() -> None:
        if should_stop is not None and should_stop():
            raise EvaluationStopped(f"stopped after {len(rows)} rows; they are saved")

    for name in models:
        folder = find_checkpoint(name)
        sha = weights_sha256(folder)
        label = folder.name if Path(name).is_dir() else name
        n_clean = len(clean_split.labels)
        clean_key = (label, sha, "none", "", 0.0, n_clean, seed, _sample(limit_clean), "")
        keys = {s: (label, sha, s.attack, s.preset, s.eps, len(robust_split.labels), seed,
                    ROBUST_SAMPLE, _preset_params(s)) for s in attacks}
        if clean_key in kept and all(k in kept for k in keys.values()):
            continue
        model = load_model(folder, dev)
        base = {"model": name if label == name else label, "weights_sha256": sha,
                "device": str(dev), "seed": seed}
        clean_row = kept.get(clean_key)
        if clean_row is None:
            check_stop()
            t0 = time.perf_counter()
            clean = clean_accuracy(model, clean_split, batch_size=batch_size, device=dev,
                                   progress=progress, desc=f"{name} clean")
            clean_row = {**base, "attack": "none", "preset": "", "eps": 0.0, "n": n_clean,
                         "sample": _sample(limit_clean), "clean_acc": clean, "robust_acc": clean,
                         "robust_ci95": wilson_interval(round(clean * n_clean), n_clean),
                         "seconds": time.perf_counter() - t0}
            add(clean_row)
        for spec in attacks:
            if keys[spec] in kept:
                continue
            check_stop()
            from .attacks.evaluate import robust_accuracy  # heavy: only when attacking

            t0 = time.perf_counter()
            res = robust_accuracy(
                model, robust_split.images, robust_split.labels, spec.attack, eps=spec.eps,
                preset=spec.preset, seed=seed, batch_size=batch_size, device=dev,
                progress=progress,
            )
            # the attacked subset's clean accuracy is named apart from the whole split's
            subset_clean = res.pop("clean_acc", None)
            trials = res.get("n_pairs", len(robust_split.labels))  # VGA: (image, target) pairs
            add({**base, **res, "clean_acc": clean_row["clean_acc"],
                 "clean_acc_subset": subset_clean, "attack": spec.attack,
                 "preset": spec.preset, "eps": spec.eps, "n": len(robust_split.labels),
                 "sample": ROBUST_SAMPLE, "preset_params": _preset_params(spec),
                 "robust_ci95": wilson_interval(round(res["robust_acc"] * trials), trials),
                 "seconds": time.perf_counter() - t0})
    return {"meta": meta, "rows": rows}


def _row_key(row: dict[str, Any]) -> tuple:
    return (Path(row["model"]).name, row.get("weights_sha256"), row["attack"], row["preset"],
            float(row["eps"]), int(row["n"]), int(row["seed"]), row.get("sample"),
            row.get("preset_params", ""))


WHOLE_SPLIT = "the whole test split"
CLEAN_SAMPLE = "seeded random subset (data.seeded_subset)"
ROBUST_SAMPLE = "seeded class-balanced subset (data.evaluation_sample)"


def _sample(limit_clean: int | None) -> str:
    return CLEAN_SAMPLE if limit_clean else WHOLE_SPLIT


def _preset_params(spec: RobustColumn) -> str:
    """The preset's parameters as JSON: a row measured with other settings under the same
    preset name is not reused."""
    from .attacks import get_attack

    presets = get_attack(spec.attack).presets
    if spec.preset not in presets:
        raise ValueError(f"attack {spec.attack!r} has no preset {spec.preset!r}; "
                         f"choose one of {', '.join(presets)}")
    return json.dumps(dict(presets[spec.preset]), sort_keys=True, default=list)


def wilson_interval(k: int, n: int, z: float = 1.959964) -> list[float]:
    """The Wilson score interval of ``k`` successes in ``n`` trials (95% by default)."""
    if n <= 0:
        return [0.0, 1.0]
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def load_result(path: str | os.PathLike) -> dict[str, Any] | None:
    """A result JSON written by ``save_result`` (or ``evaluate --out``), or None if absent."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path}: not a readable evaluation result ({e})") from None
    if not isinstance(result, dict) or not isinstance(result.get("rows"), list):
        raise ValueError(f"{path}: not an evaluation result (no rows)")
    return result


def save_result(path: str | os.PathLike, result: dict[str, Any]) -> None:
    """Write ``result`` atomically (a killed run keeps the previous complete file)."""
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")


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
                        help="output stem: writes STEM.json (after every row) and STEM.md; rows "
                             "already in STEM.json for the same weights and settings are kept")
    parser.add_argument("--fresh", action="store_true",
                        help="compute every row again instead of keeping those in STEM.json")


def main(args: argparse.Namespace) -> int:
    models = [m for m in args.models.split(",") if m]
    attacks = [RobustColumn.parse(a, args.eps) for a in args.attacks.split(",") if a]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Appended, not with_suffix: a stem such as "eval-alexnet-kwta-0.1" keeps its dots.
    json_path, md_path = out.parent / f"{out.name}.json", out.parent / f"{out.name}.md"

    earlier = None if args.fresh else load_result(json_path)
    result = evaluate(models, attacks, data=args.data, n_robust=args.n, seed=args.seed,
                      batch_size=args.batch_size, device=args.device,
                      limit_clean=args.limit_clean, on_update=lambda r: save_result(json_path, r),
                      done=earlier["rows"] if earlier else ())
    save_result(json_path, result)
    table = to_markdown(result)
    atomic_write_text(md_path, table)
    print(table)
    return 0
