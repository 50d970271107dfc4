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

import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from ..data.cifar10 import (
    describe_source,
    evaluation_sample,
    load_cifar10,
    seeded_subset,
)
from ..models.checkpoints import (
    find_checkpoint,
    load_model,
    weights_sha256,
)
from ..provenance import device_name, utc_now
from ..settings import resolve_device
from . import distributed
from .accuracy import SEEDING, clean_accuracy, robust_accuracy
from .batches import BatchParts
from .results import (
    CLEAN_SAMPLE,
    ROBUST_SAMPLE,
    WHOLE_SPLIT,
    RobustColumn,
    parts_folder,
    preset_params,
    robust_row_key,
    row_key,
    sample_description,
    wilson_interval,
)

__all__ = ["STOPPED_EXIT", "evaluate"]
STOPPED_EXIT = 3
"""The exit status of a run of one process that stopped on request (its finished work is
saved). Under torchrun a stopped run exits 0: torchrun reports any other status as the
job's failure, with a traceback; the stop file and the "stopped:" line say it stopped."""


log = logging.getLogger(__name__)


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
    kept = {row_key(r): r for r in rows}

    def add(row: dict[str, Any]) -> None:
        # Rows of one file come from several runs (each keeps the rows before it): each
        # row says when it was finished, the meta describes the latest run.
        row["finished"] = utc_now()
        if ranks.leader:
            log.info("%s %s%s: %.1f%% of %d (%.0f s)", row["model"], row["attack"],
                     f":{row['preset']}" if row["preset"] else "", 100 * row["robust_acc"],
                     row.get("n_pairs", row["n"]), row["seconds"])
        rows.append(row)
        kept[row_key(row)] = row
        if ranks.leader and on_update is not None:
            on_update({"meta": meta, "rows": rows})

    def parts_for(key: tuple) -> BatchParts | None:
        return None if parts_dir is None else BatchParts(parts_folder(parts_dir, key, batch_size))

    for name in models:
        folder = find_checkpoint(name)
        sha = weights_sha256(folder)
        label = folder.name if Path(name).is_dir() else name
        n_clean = len(clean_split.labels)
        clean_key = (label, sha, "none", "", 0.0, n_clean, seed, sample_description(limit_clean), "", "")
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
                         "sample": sample_description(limit_clean), "clean_acc": clean, "robust_acc": clean,
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
                 "sample": ROBUST_SAMPLE, "preset_params": preset_params(spec),
                 "robust_ci95": wilson_interval(round(res["robust_acc"] * trials), trials),
                 "seconds": time.perf_counter() - t0})
    return {"meta": meta, "rows": rows}
