"""The results files: one row per model x attack x preset, kept across runs (JSON, with each
image's outcome), their keys, Wilson intervals, and the markdown table."""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..attacks import get_attack
from ..models.checkpoints import (
    atomic_write_text,
)
from .accuracy import SEEDING

__all__ = ["RobustColumn", "robust_row_key", "parts_folder", "row_key", "WHOLE_SPLIT",
           "CLEAN_SAMPLE", "ROBUST_SAMPLE", "sample_description", "preset_params",
           "wilson_interval", "load_result", "save_result", "to_markdown"]


@dataclass(frozen=True)
class RobustColumn:
    """One column of the robust table: an attack, its preset and epsilon."""

    attack: str
    preset: str = "paper"
    eps: float = 0.031

    @classmethod
    def parse(cls, text: str, default_eps: float) -> "RobustColumn":
        """``name[:preset][@eps]``, e.g. ``pgd:report@0.031``, ``pgd:paper@8/255`` or
        ``deepfool``."""
        spec, _, eps = text.partition("@")
        attack, _, preset = spec.partition(":")
        num, slash, den = eps.partition("/")
        try:
            value = (float(num) / float(den) if slash else float(num)) if eps else default_eps
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"bad epsilon in attack spec {text!r}") from None
        if not attack:
            raise ValueError(f"empty attack name in spec {text!r}")
        return cls(attack, preset or "paper", value)

    @property
    def label(self) -> str:
        return f"{self.attack}:{self.preset}@{self.eps:g}"


def robust_row_key(label: str, sha: str, spec: RobustColumn, n: int, seed: int) -> tuple:
    """What names a robust row: a row with the same key is the same measurement."""
    return (label, sha, spec.attack, spec.preset, spec.eps, n, seed, ROBUST_SAMPLE,
            preset_params(spec), SEEDING)


def parts_folder(parts_dir: str | os.PathLike, key: tuple, batch_size: int) -> Path:
    """The folder of a row's finished batches: one per model, attack and settings (``key``
    as ``robust_row_key`` makes it). A robust row's batches are named by their images'
    seeds, so rows over nested samples share the folder (n is left out)."""
    ident = list(key) if key[2] == "none" else list(key[:5]) + list(key[6:])
    digest = hashlib.sha256(json.dumps([ident, batch_size], default=str).encode())
    return Path(parts_dir) / digest.hexdigest()[:16]


def row_key(row: dict[str, Any]) -> tuple:
    return (Path(row["model"]).name, row.get("weights_sha256"), row["attack"], row["preset"],
            float(row["eps"]), int(row["n"]), int(row["seed"]), row.get("sample"),
            row.get("preset_params", ""), row.get("seeding", ""))


WHOLE_SPLIT = "the whole test split"
CLEAN_SAMPLE = "seeded random subset (data.seeded_subset)"
ROBUST_SAMPLE = "seeded class-balanced subset (data.evaluation_sample)"


def sample_description(limit_clean: int | None) -> str:
    return CLEAN_SAMPLE if limit_clean else WHOLE_SPLIT


def preset_params(spec: RobustColumn) -> str:
    """The preset's parameters as JSON: a row measured with other settings under the same
    preset name is not reused."""
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
    sizes: dict[str, set[int]] = {}
    for r in rows:
        if r["attack"] != "none":
            sizes.setdefault(f"{r['attack']}:{r['preset']}@{r['eps']:g}", set()).add(
                int(r.get("n", meta["n_robust"])))
    counts = [n for ns in sizes.values() for n in ns]
    usual = max(set(counts), key=lambda n: (counts.count(n), n)) if counts else meta["n_robust"]
    other = [f"{c}: {'/'.join(map(str, sorted(ns)))}" for c, ns in sizes.items() if ns != {usual}]
    lines.append("")
    lines.append(
        f"Accuracy in %. Clean: {meta['n_clean']} test images; robust: {usual}"
        + (f" ({', '.join(other)})" if other else "")
        + f" (seeded subset, seed {meta['seed']}). Data: {meta['data']}. Device: "
        f"{meta['device']} ({meta['device_name']}), torch {meta['torch']}. "
        f"Command: `{meta['command']}`."
    )
    return "\n".join(lines) + "\n"
