"""Training one model (``train_model``): the loop, resumable at any step, and the saved,
reloaded and measured result.

SGD with momentum, a per-step learning-rate schedule, bf16 autocast and channels-last on
CUDA (and on CPUs that compute bf16 natively); the same code runs on any CPU. After each
epoch the whole training state (weights, optimiser momentum, RNG states, history) goes to
``<state_dir>/<name>.state.safetensors`` (``state.py``), and inside epochs every few
minutes: a run killed at any moment resumes from the last save, bit-identically on the
CPU; a different configuration is an error, not a silent restart. The finished model is
written with ``checkpoints.save_checkpoint`` (atomic), loaded back and measured on the test
split; ``metrics.json`` carries those numbers (the card is rendered from it by the
command that ships the model).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..data.cifar10 import (
    DATA_CAVEAT,
    DATA_NAME,
    IMAGE_SIZE,
    CifarSplit,
    batches,
    held_out,
    seeded_subset,
    shuffled_order,
)
from ..evaluation.accuracy import clean_accuracy
from ..models.activations import activation_sparsity
from ..models.architectures import (
    Classifier,
    build_model,
)
from ..models.checkpoints import (
    MANIFEST,
    atomic_write_text,
    find_checkpoint,
    load_state_dict_strict,
    save_checkpoint,
    write_manifest,
)
from ..models.kwta import KWTA, get_kwta_impl
from ..provenance import device_name, git_commit
from ..settings import resolve_device
from .adversarial import (
    HoldoutCheck,
    holdout_check,
    training_examples,
)
from .config import CONFIG_DEFAULTS, TrainConfig, lr_at
from .state import (
    STATE_SUFFIX,
    EpochProgress,
    check_state_matches,
    fingerprint_checkpoint,
    fingerprint_split,
    read_state,
    remove_stale_temporaries,
    restore_partial,
    restore_state,
    save_state,
    state_path,
)

__all__ = ["TrainingStopped", "cpu_has_native_bf16", "evaluate_accuracy", "train_model",
           "benchmark_epoch_seconds"]

log = logging.getLogger(__name__)


class TrainingStopped(RuntimeError):
    """A run stopped on request (``should_stop``) after saving its state; rerun to resume."""


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively here (AVX512-BF16 or AMX), not emulated."""
    try:
        return bool(torch.backends.mkldnn.is_available()
                    and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    # bf16 needs no loss scaling. "auto": on CUDA, and on CPUs that compute bf16 natively
    # (twice the float32 speed for ResNet18 there, docs/training.md); on other CPUs bf16
    # autocast is emulated and slower, so float32.
    if cfg.amp == "bf16":
        return torch.bfloat16
    if cfg.amp == "auto" and (device.type == "cuda"
                              or (device.type == "cpu" and cpu_has_native_bf16())):
        return torch.bfloat16
    return None


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device_type=device.type, dtype=dtype or torch.bfloat16,
                          enabled=dtype is not None)


def _prepare(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    # NHWC: cuDNN's fastest convolutions take it, and oneDNN's on the CPU too (ResNet18
    # trains 1.5x faster than in NCHW there, docs/training.md).
    return x.contiguous(memory_format=torch.channels_last)


def evaluate_accuracy(
    model: nn.Module,
    split: CifarSplit,
    device: str | torch.device | None = None,
    *,
    batch_size: int = 1000,
    amp_dtype: torch.dtype | None = None,
) -> float:
    """Top-1 accuracy of ``model`` over every image of ``split``: ``evaluate.clean_accuracy``
    under the training's autocast (``amp_dtype``; None: float32)."""
    device = resolve_device(device)
    with _autocast(device, amp_dtype):
        return clean_accuracy(model, split, batch_size=batch_size, device=device)


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on BN parameters and biases: decaying them only fights the
    # normalisation, as the usual CIFAR recipes note.
    decay = [p for p in model.parameters() if p.ndim > 1]
    other = [p for p in model.parameters() if p.ndim <= 1]
    return torch.optim.SGD(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}],
        lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
    )


def _on_device(split: CifarSplit, device: torch.device) -> CifarSplit:
    # The whole split fits on any GPU (150 MB for the training images): one copy, then
    # batches are gathered and augmented on the device with no host round trips.
    return CifarSplit(split.images.to(device), split.labels.to(device))


def _steps_per_epoch(n: int, batch_size: int) -> tuple[int, bool]:
    drop_last = n >= batch_size  # full batches only, unless the set is smaller than one
    return (n // batch_size if drop_last else 1), drop_last


def _train_epoch(
    model: nn.Module, optimizer: torch.optim.Optimizer, cfg: TrainConfig, split: CifarSplit,
    generator: torch.Generator, device: torch.device, epoch: int, *, amp_dtype: torch.dtype | None,
    progress: bool, on_step: Callable[[int, int], None] | None, desc: str,
    partial: EpochProgress | None = None,
    checkpoint: Callable[[EpochProgress], None] | None = None,
    save_every: float | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, float]:
    """One epoch (or the rest of one: ``partial``). Every ``save_every`` seconds (0: after
    every step), and when ``should_stop()`` says so, ``checkpoint(progress)`` saves the
    epoch so far; a stop then raises ``TrainingStopped``."""
    model.train()
    n = len(split.labels)
    steps, drop_last = _steps_per_epoch(n, cfg.batch_size)
    if partial is None:
        partial = EpochProgress(order=shuffled_order(n, generator))
    if partial.loss_sum is None:
        partial.loss_sum = torch.zeros((), device=device)
        partial.correct = torch.zeros((), dtype=torch.long, device=device)
    size = cfg.image_size(epoch)
    lr = cfg.lr
    started = last_save = time.perf_counter()
    prior_seconds = partial.seconds
    it = batches(split, cfg.batch_size, augment=True, device=device, generator=generator,
                 drop_last=drop_last, order=partial.order, first_batch=partial.step)
    bar = tqdm(it, total=steps, initial=partial.step, desc=desc, disable=not progress,
               leave=False, dynamic_ncols=True)
    for step, (x, y) in enumerate(bar, start=partial.step):
        if on_step is not None:
            on_step(epoch, step)
        lr = lr_at(cfg, (epoch - 1) * steps + step, steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if size != IMAGE_SIZE:  # progressive resizing: the augmented crop, downsampled
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                              align_corners=False)
        if cfg.adversarial is not None:  # in train mode, as the methods' authors train
            x = training_examples(lambda v: _forward(model, v, device, amp_dtype), x, y,
                                  method=cfg.adversarial, eps=cfg.adv_eps, generator=generator)
        logits = _forward(model, x, device, amp_dtype)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
        optimizer.step()
        partial.loss_sum += loss.detach() * len(y)
        partial.correct += (logits.detach().argmax(1) == y).sum()
        partial.seen += len(y)
        partial.step = step + 1
        if progress and step % 20 == 0:  # .item() waits for the GPU: not on every step
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.3g}")
        if partial.step < steps and checkpoint is not None:
            stop = should_stop is not None and should_stop()
            now = time.perf_counter()
            if stop or (save_every is not None and now - last_save >= save_every):
                _sync(device)
                partial.seconds = prior_seconds + time.perf_counter() - started
                checkpoint(partial)
                last_save = time.perf_counter()
                if stop:
                    bar.close()
                    raise TrainingStopped(f"stopped in epoch {epoch} after step {partial.step} "
                                          f"of {steps}; the state is saved")
    bar.close()
    _sync(device)
    seen = max(partial.seen, 1)
    return {"train_loss": partial.loss_sum.item() / seen, "train_acc": partial.correct.item() / seen,
            "lr": lr, "train_seconds": prior_seconds + time.perf_counter() - started,
            "image_size": size}


def _forward(model: nn.Module, x: torch.Tensor, device: torch.device,
             amp_dtype: torch.dtype | None) -> torch.Tensor:
    with _autocast(device, amp_dtype):
        return model(_prepare(x, device))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _build(cfg: TrainConfig, device: torch.device, init_folder: Path | None) -> Classifier:
    torch.manual_seed(cfg.seed)  # the same seed gives the same initial weights everywhere
    model = build_model(cfg.model_config())
    if init_folder is not None:
        # Same parameter names whatever the activation, so ReLU weights load strictly
        # into the k-WTA model: the report's "unaltered weights".
        load_state_dict_strict(model, init_folder)
    return model.to(device).to(memory_format=torch.channels_last)


def train_model(
    cfg: TrainConfig,
    train_split: CifarSplit,
    test_split: CifarSplit,
    device: str | torch.device | None = None,
    *,
    out: str | os.PathLike,
    state_dir: str | os.PathLike,
    half: bool = False,
    progress: bool = True,
    fresh: bool = False,
    command: str | None = None,
    sparsity_images: int = 1000,
    on_step: Callable[[int, int], None] | None = None,
    save_every: float | None = 300.0,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Train one model, resuming from ``state_dir`` when possible; write the checkpoint ``out``.

    Returns ``{"name", "config", "history", "metrics", "checkpoint", "resumed_from"}``.
    ``history`` has one entry per epoch (``train_loss``, ``train_acc``, ``lr``,
    ``train_seconds``, and ``test_acc`` when evaluated); a fine-tuning run also gets an
    epoch-0 entry, the accuracy of the unaltered initial weights. ``metrics`` is what was
    measured on the saved-and-reloaded weights (also in ``out/metrics.json``).
    ``on_step(epoch, step)`` is called before every optimiser step; an exception from it
    stops the run, leaving the last saved state. The state is saved after every epoch and,
    inside one, every ``save_every`` seconds (0: after every step; None: never), so a
    killed run loses at most that much work. ``should_stop()`` is asked after every step:
    when true, the state is saved and ``TrainingStopped`` raised. ``fresh`` discards a
    saved state instead of resuming it. ``half`` stores the weights as float16.

    Adversarial training (``cfg.adversarial``) holds ``cfg.holdout`` seeded training images
    out of training, measures PGD-10 accuracy on them after every epoch (``holdout_pgd_acc``
    in the history) and saves the weights of the epoch where it was highest: a run that
    overfits catastrophically keeps its last good epoch (``metrics["selected_epoch"]``).
    """
    device = resolve_device(device)
    out = Path(out)
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_path(state_dir, out.name)
    remove_stale_temporaries(path)
    if fresh:
        path.unlink(missing_ok=True)
    init_folder = find_checkpoint(cfg.init_from) if cfg.init_from else None
    expected = {
        "config": cfg.identity(),
        "data": fingerprint_split(train_split),
        "test_data": fingerprint_split(test_split),
        "init_sha256": fingerprint_checkpoint(init_folder) if init_folder else None,
    }
    run_id = hashlib.sha256(json.dumps(expected, sort_keys=True).encode()).hexdigest()[:16]
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    amp_dtype = _amp_dtype(cfg, device)
    model = _build(cfg, device, init_folder)
    optimizer = _optimizer(model, cfg)
    # shuffling, augmentation and adversarial training's noise only
    generator = torch.Generator().manual_seed(cfg.seed)
    holdout: CifarSplit | None = None
    if cfg.holdout:
        train_split, holdout = held_out(train_split, cfg.holdout, seed=cfg.seed)
    train_split, test_split = _on_device(train_split, device), _on_device(test_split, device)
    start, history, partial, best = _resume(path, expected, cfg, model, optimizer, generator,
                                            device, amp_dtype)

    measured_initial = any(h.get("epoch") == 0 for h in history)  # a resumed epoch 1 has it
    if start == 0 and init_folder is not None and cfg.eval_every and not measured_initial:
        t0 = time.perf_counter()
        acc = evaluate_accuracy(model, test_split, device, amp_dtype=amp_dtype)
        history.append({"epoch": 0, "test_acc": acc, "eval_seconds": time.perf_counter() - t0,
                        "test_images": len(test_split.labels)})
        log.info("%s: initial weights from %s give test acc %.4f before fine-tuning",
                 out.name, init_folder.name, acc)

    def save(epoch_done: int, progress_now: EpochProgress | None = None) -> None:
        save_state(path, model, optimizer, generator, device,
                    {**expected, "run_id": run_id, "epoch": epoch_done, "history": history,
                     "config_full": cfg.to_dict(), "amp": str(amp_dtype),
                     **(best.meta() if best else {})}, progress_now,
                    extra=best.tensors() if best else None)

    for epoch in range(start + 1, cfg.epochs + 1):
        if partial is None and should_stop is not None and should_stop():
            raise TrainingStopped(f"stopped after epoch {epoch - 1}; the state is saved")
        _sync(device)
        entry: dict[str, Any] = {"epoch": epoch}
        entry.update(_train_epoch(
            model, optimizer, cfg, train_split, generator, device, epoch, amp_dtype=amp_dtype,
            progress=progress, on_step=on_step, desc=f"{out.name} {epoch}/{cfg.epochs}",
            partial=partial, checkpoint=lambda p, e=epoch: save(e - 1, p),
            save_every=save_every, should_stop=should_stop))
        partial = None
        check = _measure_epoch(model, cfg, epoch, entry, test_split, holdout, device, amp_dtype)
        if check is not None and (best is None or check.pgd_acc >= best.pgd_acc):
            best = _Best(epoch, check.pgd_acc, _weights_copy(model))  # a tie: the later epoch
        history.append(entry)
        save(epoch)
        _log_epoch(out.name, cfg, entry)

    if best is not None and best.epoch != cfg.epochs:
        log.warning("%s: held-out PGD-10 accuracy peaked at epoch %d (%.4f); keeping that "
                    "epoch's weights", out.name, best.epoch, best.pgd_acc)
        model.load_state_dict(best.weights)

    metrics = _finalize(model, cfg, out, test_split, device, history=history, half=half,
                        run_id=run_id, command=command, sparsity_images=sparsity_images,
                        train_images=len(train_split.labels), init_folder=init_folder,
                        selected_epoch=best.epoch if best else None)
    return {"name": out.name, "config": cfg.to_dict(), "history": history, "metrics": metrics,
            "checkpoint": str(out), "resumed_from": start}


def _resume(
    path: Path, expected: dict[str, Any], cfg: TrainConfig, model: nn.Module,
    optimizer: torch.optim.Optimizer, generator: torch.Generator, device: torch.device,
    amp_dtype: torch.dtype | None,
) -> tuple[int, list[dict[str, Any]], EpochProgress | None, "_Best | None"]:
    """The saved state at ``path``, restored into the model, optimiser and generator:
    (epochs done, history, the unfinished epoch, the best epoch so far); a fresh start
    when there is none. A state saved by another run is an error (``TrainStateError``)."""
    if not path.is_file():
        return 0, [], None, None
    tensors, meta = read_state(path)
    check_state_matches(path, meta, expected, CONFIG_DEFAULTS)
    restore_state(tensors, meta, model, optimizer, generator, device)
    start, partial = int(meta["epoch"]), restore_partial(tensors, meta, device)
    name = path.name.removesuffix(STATE_SUFFIX)
    where = f"in epoch {start + 1} at step {partial.step}" if partial else f"after epoch {start}"
    log.info("%s: resuming %s (of %d epochs) from %s", name, where, cfg.epochs, path)
    if meta.get("amp") not in (None, str(amp_dtype)):
        log.warning("%s: the state was saved with autocast %s, this machine runs %s: the "
                    "run goes on, but not bit for bit as it would have", name,
                    meta.get("amp"), amp_dtype)
    return start, list(meta["history"]), partial, _Best.restore(tensors, meta)


def _measure_epoch(
    model: nn.Module, cfg: TrainConfig, epoch: int, entry: dict[str, Any],
    test_split: CifarSplit, holdout: CifarSplit | None, device: torch.device,
    amp_dtype: torch.dtype | None,
) -> HoldoutCheck | None:
    """After an epoch: test accuracy when it is due, and the held-out PGD-10 check of
    adversarial training (returned), both written into ``entry``."""
    if cfg.eval_every and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
        t1 = time.perf_counter()
        entry["test_acc"] = evaluate_accuracy(model, test_split, device, amp_dtype=amp_dtype)
        entry["eval_seconds"] = time.perf_counter() - t1
        entry["test_images"] = len(test_split.labels)
    if holdout is None:
        return None
    check = holdout_check(model, holdout, cfg.adv_eps, seed=cfg.seed)
    entry.update(holdout_clean_acc=check.clean_acc, holdout_pgd_acc=check.pgd_acc,
                 holdout_images=check.images, holdout_seconds=check.seconds)
    return check


def _log_epoch(name: str, cfg: TrainConfig, entry: dict[str, Any]) -> None:
    log.info("%s epoch %d/%d: loss %.4f, train acc %.4f%s%s, lr %.4g, %d px, %.1f s",
             name, entry["epoch"], cfg.epochs, entry["train_loss"], entry["train_acc"],
             f", test acc {entry['test_acc']:.4f}" if "test_acc" in entry else "",
             f", held-out PGD-10 acc {entry['holdout_pgd_acc']:.4f}"
             if "holdout_pgd_acc" in entry else "",
             entry["lr"], entry["image_size"], entry["train_seconds"])


def _finalize(
    model: Classifier, cfg: TrainConfig, out: Path, test_split: CifarSplit, device: torch.device,
    *, history: list[dict[str, Any]], half: bool, run_id: str, command: str | None,
    sparsity_images: int, train_images: int, init_folder: Path | None,
    selected_epoch: int | None = None,
) -> dict[str, Any]:
    """Save, load back, measure and write ``metrics.json`` (the card is the shipping
    command's: ``reporting.cards.write_card``): unless this run already did."""
    metrics_path = out / "metrics.json"
    if metrics_path.is_file():
        try:
            done = json.loads(metrics_path.read_text())
        except ValueError:
            done = {}
        if done.get("run_id") == run_id and done.get("stored_half") == half:
            return done
    save_checkpoint(model, out, half=half)
    # Measure what a user gets: the stored (possibly float16) weights, loaded strictly
    # into a fresh float32 model, evaluated without autocast.
    reloaded = build_model(cfg.model_config())
    load_state_dict_strict(reloaded, out)
    reloaded = reloaded.to(device).eval()
    t0 = time.perf_counter()
    accuracy = evaluate_accuracy(reloaded, test_split, device)
    eval_seconds = time.perf_counter() - t0
    n_sparse = min(sparsity_images, len(test_split.labels))
    sample = seeded_subset(test_split, n_sparse, seed=0)
    sparsity = activation_sparsity(reloaded, sample.images)
    if cfg.activation == "kwta":  # the stem ReLU of ResNet18 is not a k-WTA layer
        kwta_names = {n for n, m in reloaded.backbone.named_modules() if isinstance(m, KWTA)}
        sparsity = {n: v for n, v in sparsity.items() if n in kwta_names}
    epochs = [h for h in history if h.get("epoch", 0) > 0]
    times = [h["train_seconds"] for h in epochs]
    recipe = {
        **cfg.to_dict(),
        "init_from": init_folder.name if init_folder else None,
        "amp_used": f"{_amp_dtype(cfg, device)} autocast".replace("torch.", "")
        if _amp_dtype(cfg, device) else "none (float32)",
        "train_images": train_images,
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "kwta_impl": get_kwta_impl() if cfg.activation == "kwta" else None,
        "commit": git_commit(),
        "wall_seconds": sum(times) + sum(h.get("eval_seconds", 0.0) for h in history),
        "train_seconds": sum(times),
        "seconds_per_epoch": statistics.median(times) if times else 0.0,
        "command": command,
    }
    initial = next((h for h in history if h.get("epoch") == 0 and "test_acc" in h), None)
    metrics = {
        "name": out.name,
        "run_id": run_id,
        "data": DATA_NAME,
        "data_caveat": DATA_CAVEAT,
        "clean_accuracy": accuracy,
        "test_images": len(test_split.labels),
        "eval_device": device_name(device),
        "eval_seconds": eval_seconds,
        "stored_half": half,
        "initial_accuracy": initial["test_acc"] if initial else None,
        "initial_images": initial["test_images"] if initial else None,
        "sparsity": sparsity,
        "sparsity_images": n_sparse,
        "sparsity_seed": 0,
        "selected_epoch": selected_epoch,
        "selected_by": (f"the highest PGD-10 accuracy (10 steps of eps/4 from a random start, "
                        f"eps {cfg.adv_eps * 255:.3g}/255) on the {cfg.holdout} training images "
                        "held out" if selected_epoch is not None else None),
        "recipe": recipe,
        "history": history,
    }
    atomic_write_text(metrics_path, json.dumps(metrics, indent=2) + "\n")
    if (out.parent / MANIFEST).is_file():  # keep an existing manifest true to the new weights
        write_manifest(out.parent)
    log.info("%s: saved to %s; clean accuracy %.4f on %d test images after the round trip",
             out.name, out, accuracy, len(test_split.labels))
    return metrics


@dataclass
class _Best:
    """The epoch with the highest held-out PGD-10 accuracy so far, and its weights."""

    epoch: int
    pgd_acc: float
    weights: dict[str, torch.Tensor]

    def meta(self) -> dict[str, Any]:
        return {"best": {"epoch": self.epoch, "pgd_acc": self.pgd_acc}}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"best.{k}": v for k, v in self.weights.items()}

    @classmethod
    def restore(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> "_Best | None":
        info = meta.get("best")
        if not info:
            return None
        weights = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
        return cls(int(info["epoch"]), float(info["pgd_acc"]), weights)


def _weights_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def benchmark_epoch_seconds(
    cfg: TrainConfig, n_train: int, device: str | torch.device | None = None, *,
    steps: int = 10, warmup: int = 3,
) -> float:
    """Estimated seconds for one training epoch of ``n_train`` images (random data).

    Times ``steps`` real optimiser steps after ``warmup`` (which also lets cuDNN pick its
    kernels); used to fit a run's epochs to a time budget.
    """
    device = resolve_device(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    amp_dtype = _amp_dtype(cfg, device)
    model = _build(cfg, device, None)  # random weights time the same as trained ones
    optimizer = _optimizer(model, cfg)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(cfg.batch_size, 3, 32, 32, generator=gen).to(device)
    y = torch.randint(0, 10, (cfg.batch_size,), generator=gen).to(device)
    model.train()

    def step() -> None:
        with _autocast(device, amp_dtype):
            logits = model(_prepare(x, device))
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    per_step = (time.perf_counter() - t0) / steps
    return per_step * _steps_per_epoch(n_train, cfg.batch_size)[0]
