"""Accuracy over a data set, clean and under attack: `python -m kwta_demo evaluate`.

Clean accuracy is measured on the whole test split; robust accuracy on a seeded
class-balanced subset (the JPEG copy is ordered by class, so "the first N" would be one
class). Every image is attacked with its own seed, ``derived_seed(seed, test index)``, and
the images are cut into fixed batches: a row is the same for any number of processes
(``torchrun``, see ``distributed``), and an interrupted row goes on from its last finished
batch. The result is JSON (one row per model x attack x preset, with the per-image
outcomes, for others to check and plot) plus a markdown table.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from ..attacks import get_attack, run_attack
from ..attacks.autoattack import FLAGS as AUTOATTACK_FLAGS
from ..attacks.base import AttackParameterError, attack_mode, check_labels, derived_seed
from ..data.cifar10 import (
    CifarSplit,
    describe_source,
    evaluation_sample,
    load_cifar10,
    seeded_subset,
)
from ..models.checkpoints import (
    atomic_write_text,
    find_checkpoint,
    load_model,
    weights_sha256,
)
from ..provenance import device_name, utc_now
from ..settings import resolve_device
from . import distributed

__all__ = [
    "STOPPED_EXIT","RobustColumn", "EvaluationStopped", "BatchParts", "clean_accuracy", "robust_accuracy",
           "vga_statistics", "map_batches", "evaluate", "load_result", "save_result",
           "to_markdown", "wilson_interval", "robust_row_key", "parts_folder"]

STOPPED_EXIT = 3
"""The exit status of a run of one process that stopped on request (its finished work is
saved). Under torchrun a stopped run exits 0: torchrun reports any other status as the
job's failure, with a traceback; the stop file and the "stopped:" line say it stopped."""

log = logging.getLogger(__name__)

AUTOATTACK_INFO = ("fooled_by", *(f"flag_{f}" for f in AUTOATTACK_FLAGS))

SEEDING = "per image: derived_seed(seed, test-split index)"
"""How a row's images were seeded; part of a row's identity, so rows seeded otherwise are
never mixed with these."""

Progress = Callable[[int, int], None]
"""Called after every batch with (items done, items in all)."""

Outcomes = dict[str, torch.Tensor]
"""Per-item tensors of one batch (or of all batches, concatenated in order)."""


class EvaluationStopped(RuntimeError):
    """``should_stop`` said stop; every finished row and batch is kept."""

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



# --------------------------------------------------------------------- batches

class BatchParts:
    """Finished batches, one JSON file each, named by what they hold: an interrupted row
    (or one rank of it) goes on where it stopped, and a row over a larger nested sample
    reads the batches it shares with a smaller one. Floats are stored exactly (float32 ->
    JSON -> float32 round-trips). A cache: deleting the folder only costs recomputation."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def _path(self, name: str) -> Path:
        return self.folder / f"{name}.json"

    def load(self, name: str) -> tuple[Outcomes, dict[str, Any]] | None:
        """The outcomes and params of batch ``name``, or None when it was not finished."""
        path = self._path(name)
        try:
            data = json.loads(path.read_text())
            tensors = {k: torch.tensor(v, dtype=getattr(torch, data["dtypes"][k]))
                       for k, v in data["tensors"].items()}
            return tensors, data["params"]
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, AttributeError):
            path.unlink(missing_ok=True)  # a damaged part is computed again
            return None

    def save(self, name: str, tensors: Outcomes, params: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        data = {"tensors": {k: v.tolist() for k, v in tensors.items()},
                "dtypes": {k: str(v.dtype).removeprefix("torch.") for k, v in tensors.items()},
                "params": params}
        atomic_write_text(self._path(name), json.dumps(data))


def seeds_name(seeds: Sequence[int]) -> str:
    """A batch's part name from its items' seeds (which name the items and the run)."""
    return "seeds-" + hashlib.sha256(",".join(map(str, seeds)).encode()).hexdigest()[:24]


def map_batches(
    n: int,
    batch_size: int,
    compute: Callable[[int, int], tuple[Outcomes, dict[str, Any]]],
    *,
    parts: BatchParts | None = None,
    part_name: Callable[[int, int], str] | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    label: str = "",
) -> tuple[Outcomes, dict[str, Any]]:
    """``compute(lo, hi)`` on the items ``[lo, hi)`` of every batch, concatenated in order,
    with the params of batch 0.

    Batch ``b`` is items ``[b * batch_size, (b + 1) * batch_size)``, whatever the number of
    processes: under ``torchrun`` each rank computes the batches it owns and every rank
    receives them all. Batches already in ``parts`` (under ``part_name(lo, hi)``, by default
    ``batch-<b>``) are read, not computed; each new one is saved there. ``should_stop()``
    is asked before each batch computed.
    """
    ranks = distributed.current()
    count = -(-n // batch_size)
    mine: dict[int, tuple[Outcomes, dict[str, Any]]] = {}
    name = part_name or (lambda lo, hi: f"batch-{lo // batch_size:06d}")
    read = 0
    for r in range(-(-count // ranks.world)):  # in rounds, so that the ranks agree on a stop
        b = r * ranks.world + ranks.rank
        lo, hi = b * batch_size, min(n, (b + 1) * batch_size)
        got = parts.load(name(lo, hi)) if parts is not None and b < count else None
        read += got is not None
        needed = b < count and got is None
        if should_stop is not None and distributed.any_rank(needed and should_stop()):
            raise EvaluationStopped(f"stopped before batch {b} of {count}; "
                                    "finished batches are saved")
        if b >= count:
            continue
        if got is None:
            got = compute(lo, hi)
            if parts is not None:
                parts.save(name(lo, hi), *got)
        mine[b] = got
        if progress is not None:
            progress(min(hi, n), n)
    merged: dict[int, tuple[Outcomes, dict[str, Any]]] = {}
    gathered = distributed.gather((mine, read))
    for done, _ in gathered:
        merged.update(done)
    read = sum(r for _, r in gathered)
    if read and ranks.leader and label:
        log.info("%s: %d of %d batches read from finished parts", label, read, count)
    ordered = [merged[b] for b in range(count)]
    tensors = {k: torch.cat([o[0][k] for o in ordered]) for k in ordered[0][0]}
    return tensors, ordered[0][1]


def _reporter(
    progress: Progress | bool | None, total: int, desc: str
) -> tuple[Progress | None, Callable[[], None]]:
    """A progress callback and a closer: a tqdm bar for ``True`` (rank 0 only), nothing for
    None/False."""
    if callable(progress):
        return progress, lambda: None
    if not progress or not distributed.current().leader:
        return None, lambda: None
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


# ----------------------------------------------------------------- accuracies

def clean_accuracy(
    model: nn.Module, split: CifarSplit, *, batch_size: int = 500,
    device: str | torch.device | None = None, progress: Progress | bool | None = None,
    desc: str = "clean", parts: BatchParts | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> float:
    """Top-1 accuracy of ``model`` over every image of ``split``."""
    dev = _device_of(model, device)
    n = len(split.labels)
    report, close = _reporter(progress, n, desc)

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
    report, close = _reporter(progress, n, f"{attack}:{preset}")

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
    report, close = _reporter(progress, total, f"vga:{preset}")

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


def _environment(device: torch.device) -> dict[str, Any]:
    env = {
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "command": " ".join(["python -m kwta_demo"] + sys.argv[1:]),
        "date": utc_now(),
    }
    return env


def evaluate(
    models: Iterable[str],
    attacks: Iterable[RobustColumn] = (),
    *,
    data: str | None = None,
    n_robust: int = 1000,
    seed: int = 0,
    batch_size: int = 64,
    device: str | None = None,
    limit_clean: int | None = None,
    progress: bool = True,
    on_update: Callable[[dict[str, Any]], None] | None = None,
    done: Iterable[dict[str, Any]] = (),
    should_stop: Callable[[], bool] | None = None,
    parts_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Clean accuracy (whole test split) and robust accuracy (seeded subset) of each model.

    Returns ``{"meta": ..., "rows": [...]}`` with one row per model x attack x preset
    (``attack`` is ``"none"`` for the clean row). ``on_update`` receives the partial
    result after every row (on rank 0 only under ``torchrun``), so a long run that is
    killed keeps what it finished. ``done``: rows of an earlier run; a row with the same
    model weights (sha256), attack, preset and its parameters, eps, n, seed and seeding is
    kept, not computed again. ``parts_dir``: where finished batches are kept, so a stopped
    or killed row goes on from there and a larger nested sample reuses a smaller one's. ``should_stop()`` is
    asked before every batch; when true (on any rank), ``EvaluationStopped`` is raised.
    """
    ranks = distributed.current()
    dev = resolve_device(device)
    test = load_cifar10("test", data)
    clean_split = seeded_subset(test, limit_clean, seed) if limit_clean else test
    attacks = list(attacks)
    robust_split, robust_index = (evaluation_sample(test, min(n_robust, len(test.labels)), seed)
                                  if attacks else (None, None))
    n_robust = len(robust_split.labels) if robust_split else 0
    rows: list[dict[str, Any]] = list(done)
    # The meta lists the images of the largest sample a kept or new row uses: a row on n
    # images used the first n of them (the samples are nested), so a run on fewer images
    # than an earlier one does not cut the list the earlier rows' outcomes are read by.
    longest = max([n_robust] + [int(r["n"]) for r in rows if r.get("sample") == ROBUST_SAMPLE
                                and r.get("seed") == seed and r.get("seeding") == SEEDING])
    listed = (evaluation_sample(test, min(longest, len(test.labels)), seed)[1]
              if longest > n_robust else robust_index)
    meta = {**_environment(dev), "data": describe_source(data),
            "n_clean": len(clean_split.labels), "n_robust": n_robust,
            "seed": seed, "seeding": SEEDING, "batch_size": batch_size,
            "processes": ranks.world,
            "clean_sample": CLEAN_SAMPLE if limit_clean else WHOLE_SPLIT,
            "robust_sample": ROBUST_SAMPLE,
            "robust_test_indices": listed.tolist() if listed is not None else []}
    kept = {_row_key(r): r for r in rows}

    def add(row: dict[str, Any]) -> None:
        # Rows of one file come from several runs (each keeps the rows before it): each
        # row says when it was finished, the meta describes the latest run.
        row["finished"] = utc_now()
        if ranks.leader:
            log.info("%s %s%s: %.1f%% of %d (%.0f s)", row["model"], row["attack"],
                     f":{row['preset']}" if row["preset"] else "", 100 * row["robust_acc"],
                     row.get("n_pairs", row["n"]), row["seconds"])
        rows.append(row)
        kept[_row_key(row)] = row
        if ranks.leader and on_update is not None:
            on_update({"meta": meta, "rows": rows})

    def parts_for(key: tuple) -> BatchParts | None:
        return None if parts_dir is None else BatchParts(parts_folder(parts_dir, key, batch_size))

    for name in models:
        folder = find_checkpoint(name)
        sha = weights_sha256(folder)
        label = folder.name if Path(name).is_dir() else name
        n_clean = len(clean_split.labels)
        clean_key = (label, sha, "none", "", 0.0, n_clean, seed, _sample(limit_clean), "", "")
        keys = {s: robust_row_key(label, sha, s, n_robust, seed) for s in attacks}
        if clean_key in kept and all(k in kept for k in keys.values()):
            continue
        model = load_model(folder, dev)
        base = {"model": name if label == name else label, "weights_sha256": sha,
                "device": str(dev), "seed": seed}
        clean_row = kept.get(clean_key)
        if clean_row is None:
            t0 = time.perf_counter()
            parts = parts_for(clean_key)
            clean = clean_accuracy(model, clean_split, batch_size=batch_size, device=dev,
                                   progress=progress, desc=f"{label} clean", parts=parts,
                                   should_stop=should_stop)
            clean_row = {**base, "attack": "none", "preset": "", "eps": 0.0, "n": n_clean,
                         "sample": _sample(limit_clean), "clean_acc": clean, "robust_acc": clean,
                         "robust_ci95": wilson_interval(round(clean * n_clean), n_clean),
                         "seconds": time.perf_counter() - t0}
            add(clean_row)
        for spec in attacks:
            if keys[spec] in kept:
                continue
            t0 = time.perf_counter()
            parts = parts_for(keys[spec])
            res = robust_accuracy(
                model, robust_split.images, robust_split.labels, spec.attack, eps=spec.eps,
                preset=spec.preset, seed=seed, batch_size=batch_size, device=dev,
                progress=progress, indices=robust_index, parts=parts, should_stop=should_stop,
            )
            # the attacked subset's clean accuracy is named apart from the whole split's
            subset_clean = res.pop("clean_acc", None)
            trials = res.get("n_pairs", n_robust)  # VGA: (image, target) pairs
            add({**base, **res, "clean_acc": clean_row["clean_acc"],
                 "clean_acc_subset": subset_clean, "attack": spec.attack,
                 "preset": spec.preset, "eps": spec.eps, "n": n_robust,
                 "sample": ROBUST_SAMPLE, "preset_params": _preset_params(spec),
                 "robust_ci95": wilson_interval(round(res["robust_acc"] * trials), trials),
                 "seconds": time.perf_counter() - t0})
    return {"meta": meta, "rows": rows}


def robust_row_key(label: str, sha: str, spec: RobustColumn, n: int, seed: int) -> tuple:
    """What names a robust row: a row with the same key is the same measurement."""
    return (label, sha, spec.attack, spec.preset, spec.eps, n, seed, ROBUST_SAMPLE,
            _preset_params(spec), SEEDING)


def parts_folder(parts_dir: str | os.PathLike, key: tuple, batch_size: int) -> Path:
    """The folder of a row's finished batches: one per model, attack and settings (``key``
    as ``robust_row_key`` makes it). A robust row's batches are named by their images'
    seeds, so rows over nested samples share the folder (n is left out)."""
    ident = list(key) if key[2] == "none" else list(key[:5]) + list(key[6:])
    digest = hashlib.sha256(json.dumps([ident, batch_size], default=str).encode())
    return Path(parts_dir) / digest.hexdigest()[:16]


def _row_key(row: dict[str, Any]) -> tuple:
    return (Path(row["model"]).name, row.get("weights_sha256"), row["attack"], row["preset"],
            float(row["eps"]), int(row["n"]), int(row["seed"]), row.get("sample"),
            row.get("preset_params", ""), row.get("seeding", ""))


WHOLE_SPLIT = "the whole test split"
CLEAN_SAMPLE = "seeded random subset (data.seeded_subset)"
ROBUST_SAMPLE = "seeded class-balanced subset (data.evaluation_sample)"


def _sample(limit_clean: int | None) -> str:
    return CLEAN_SAMPLE if limit_clean else WHOLE_SPLIT


def _preset_params(spec: RobustColumn) -> str:
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
