"""Fixed, resumable batches: an evaluation is cut into batches whose outcomes are kept as
they finish (``BatchParts``), so a stopped row goes on where it stopped and the processes
of a ``torchrun`` evaluation share them."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from tqdm.auto import tqdm

from ..models.checkpoints import (
    atomic_write_text,
)
from . import distributed

__all__ = ["Progress", "Outcomes", "EvaluationStopped", "BatchParts", "seeds_name",
           "map_batches", "reporter"]


log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]
"""Called after every batch with (items done, items in all)."""


Outcomes = dict[str, torch.Tensor]
"""Per-item tensors of one batch (or of all batches, concatenated in order)."""


class EvaluationStopped(RuntimeError):
    """``should_stop`` said stop; every finished row and batch is kept."""


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


def reporter(
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
