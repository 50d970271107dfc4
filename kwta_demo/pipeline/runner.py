"""The whole remaining job as one resumable command: ``python -m kwta_demo pipeline``.

``pipeline run`` trains every stage that has no checkpoint yet, in order, then runs the
evaluation rows that have no result yet. Everything it does resumes: a training stage
from its state file (saved every few minutes, inside epochs too), the evaluation batch
by batch (a row is written as soon as it is done and never computed again; the row in
progress keeps its finished batches). With ``eval_processes`` above 1 the evaluation
runs under ``torchrun``, giving the same rows. It detaches and
logs to ``<runs>/pipeline/pipeline.log``; ``--foreground`` runs it in this process.
``pipeline status`` says what is done, what is running and the time left, estimated
from the seconds measured so far; ``pipeline stop`` asks the run to stop at its next
step, after saving.

The plan (which stages with which recipe, which evaluation rows) is ``DEFAULT_PLAN``,
or a JSON file given with ``--plan`` (the tests use tiny ones).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..data.cifar10 import load_cifar10, seeded_subset
from ..evaluation.audit import appender, audit_checkpoints, load_rows
from ..evaluation.batches import EvaluationStopped
from ..evaluation.evaluate import STOPPED_EXIT, evaluate
from ..evaluation.results import RobustColumn, load_result, save_result
from ..models.checkpoints import atomic_write_text
from ..reporting.cards import write_card
from ..training.loop import TrainingStopped
from ..training.schedule import set_threads, train_schedule
from ..training.state import STATE_SUFFIX, read_state_meta
from .plan import DEFAULT_PLAN, AuditStep, EvalStep, Plan, TrainStep, checkpoint_root

__all__ = ["PipelineStopped", "PipelineFiles", "pipeline_files", "running_pid", "alive",
           "run_pipeline", "request_stop", "detach", "stage_done", "state_summary", "results_stem",
           "parts_dir", "train_groups", "shown_path", "not_trained_yet",
           "eval_step_done", "rows_present"]

log = logging.getLogger(__name__)


class PipelineStopped(RuntimeError):
    """The run stopped on request; its state is saved and the next run resumes it."""


# ------------------------------------------------------------------ files


@dataclass
class PipelineFiles:
    root: Path

    @property
    def pid(self) -> Path:
        return self.root / "pid"

    @property
    def stop(self) -> Path:
        return self.root / "STOP"

    @property
    def current(self) -> Path:
        return self.root / "current.json"

    @property
    def log(self) -> Path:
        return self.root / "pipeline.log"


def pipeline_files(plan: Plan) -> PipelineFiles:
    return PipelineFiles(Path(plan.runs) / "pipeline")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_pid(files: PipelineFiles) -> int | None:
    try:
        pid = int(files.pid.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid != os.getpid() and alive(pid) else None


# ------------------------------------------------------------------ running


def train_groups(steps: tuple[TrainStep, ...]) -> list[list[TrainStep]]:
    """Consecutive steps of one architecture, root and shared settings: one
    ``train_schedule`` call each (a fine-tuning stage starts from the one before it)."""
    def key(step: TrainStep) -> tuple[Any, ...]:
        return (step.arch, step.out, step.batch_size, step.eval_every, step.label_smoothing,
                step.amp, step.seed)

    groups: list[list[TrainStep]] = []
    for step in steps:
        if groups and key(groups[-1][0]) == key(step):
            groups[-1].append(step)
        else:
            groups.append([step])
    return groups


def _write_current(files: PipelineFiles, what: dict[str, Any]) -> None:
    atomic_write_text(files.current, json.dumps({**what, "pid": os.getpid(),
                                                  "since": time.time()}) + "\n")


def run_pipeline(plan: Plan = DEFAULT_PLAN, *, progress: bool = False) -> None:
    """Run whatever of ``plan`` is not done yet, in this process.

    Raises ``PipelineStopped`` after ``request_stop`` (the state is saved), and
    RuntimeError when another run of the same plan is alive.
    """
    files = pipeline_files(plan)
    files.root.mkdir(parents=True, exist_ok=True)
    lock = open(files.root / "lock", "w")  # held, exclusively, for as long as this run lives
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise RuntimeError(f"the pipeline is already running (pid {running_pid(files)}); "
                           f"`pipeline stop` stops it") from None
    atomic_write_text(files.pid, f"{os.getpid()}\n")
    files.stop.unlink(missing_ok=True)

    def should_stop() -> bool:
        return files.stop.exists()

    try:
        threads = set_threads(plan.threads)
        log.info("pipeline: pid %d, %d threads, plan of %d training stages and %d evaluation "
                 "steps", os.getpid(), threads, len(plan.train) + len(plan.after),
                 len(plan.evaluate))
        _train_steps(plan, plan.train, files, should_stop, progress)
        _evaluate_and_audit(plan, files, should_stop)
        _train_steps(plan, plan.after, files, should_stop, progress)
        _evaluate_and_audit(plan, files, should_stop)  # the models `after` trained
        log.info("pipeline: everything in the plan is done")
    finally:
        files.current.unlink(missing_ok=True)
        if files.pid.is_file() and files.pid.read_text().strip() == str(os.getpid()):
            files.pid.unlink()
        lock.close()


def _train_steps(plan: Plan, steps: tuple[TrainStep, ...], files: PipelineFiles,
                 should_stop: Callable[[], bool], progress: bool) -> None:
    """Train every stage of ``steps`` that is not done, one architecture's chain at a time."""
    if all(stage_done(plan, s) for s in steps):
        return
    train = load_cifar10("train", plan.data)
    test = load_cifar10("test", plan.data)
    if plan.limit_train:
        train = seeded_subset(train, plan.limit_train, plan.seed)
    if plan.limit_test:
        test = seeded_subset(test, plan.limit_test, plan.seed)
    for group in train_groups(steps):
        if all(stage_done(plan, s) for s in group):
            continue
        _write_current(files, {"step": "train", "stages": [s.name for s in group]})
        try:
            train_schedule(
                group[0].arch, [s.stage for s in group], train, test,
                out_root=Path(group[0].out) if group[0].out else checkpoint_root(plan),
                state_dir=group[0].state_dir(plan),
                epochs=[s.epochs for s in group], lr=[s.lr for s in group],
                image_sizes=[s.sizes for s in group], batch_size=group[0].batch_size,
                half=plan.half, progress=progress, data_hint=plan.data,
                limit_train=plan.limit_train, save_every=60 * plan.save_every_minutes,
                should_stop=should_stop,
                seed=plan.seed if group[0].seed is None else group[0].seed,
                eval_every=group[0].eval_every or plan.eval_every,
                label_smoothing=group[0].label_smoothing, amp=group[0].amp,
                on_model=lambda result: write_card(result["checkpoint"]),
            )
        except TrainingStopped as e:
            raise PipelineStopped(str(e)) from None


def state_summary(plan: Plan, step: TrainStep) -> dict[str, Any] | None:
    """Epochs done, the unfinished epoch's step and the history of a stage's state file."""
    path = step.state_dir(plan) / f"{step.name}{STATE_SUFFIX}"
    meta = read_state_meta(path) if path.is_file() else None
    if meta is None:
        return None
    return {"epoch": int(meta.get("epoch", 0)), "partial": meta.get("partial"),
            "history": meta.get("history", []), "config": meta.get("config_full", {}),
            "saved": path.stat().st_mtime}


def stage_done(plan: Plan, step: TrainStep) -> bool:
    """A stage is done when its checkpoint exists and its state file reached the last epoch
    (or, with no state file at all, when the checkpoint's metrics say it was trained)."""
    folder = (Path(step.out) if step.out else checkpoint_root(plan)) / step.name
    if not (folder / "metrics.json").is_file():
        return False
    state = state_summary(plan, step)
    if state is None:
        return True
    return state["epoch"] >= step.epochs and not state.get("partial")


def results_stem(plan: Plan) -> Path:
    """The results file without ``.json``: what ``evaluate --out`` takes."""
    out = Path(plan.results)
    return out.parent / out.name.removesuffix(".json")


def parts_dir(plan: Plan) -> Path:
    """Where ``evaluate`` keeps finished batches for the plan's results (``STEM.parts``)."""
    stem = results_stem(plan)
    return stem.with_name(stem.name + ".parts")


def _evaluate_and_audit(plan: Plan, files: PipelineFiles,
                        should_stop: Callable[[], bool]) -> None:
    """Every evaluation step, then every audit, of the models trained so far."""
    for step in plan.evaluate:
        _write_current(files, {"step": "evaluate", "models": list(step.models)})
        _run_evaluation(plan, step, should_stop, files.stop)
    for step in plan.audits:
        if waiting := [m for m in step.models if not_trained_yet(plan, m)]:
            log.info("audit of %s: waits for %s to be trained", step.arch, ", ".join(waiting))
            continue
        _write_current(files, {"step": "audit", "models": list(step.models)})
        _run_audit(plan, step, should_stop)


def not_trained_yet(plan: Plan, model: str) -> bool:
    """Whether ``model`` is one of the plan's own stages with no checkpoint yet."""
    planned = {s.name for s in plan.train + plan.after if s.out is None}
    return model in planned and not (checkpoint_root(plan) / model / "metrics.json").is_file()


def rows_present(rows: list[dict[str, Any]]) -> tuple[set[tuple[Any, ...]], set[str]]:
    """The (model, attack, preset, eps, n) of the robust rows in ``rows``, and the models
    with a clean row: what says a row of a plan is done."""
    have = {(Path(r["model"]).name, r["attack"], r.get("preset", ""), float(r.get("eps", 0.0)),
             int(r.get("n", 0))) for r in rows if r.get("attack") != "none"}
    clean = {Path(r["model"]).name for r in rows if r.get("attack") == "none"}
    return have, clean


def eval_step_done(step: EvalStep, rows: list[dict[str, Any]]) -> bool:
    """Whether every row of ``step`` (the clean row of each model, and each model under
    each attack on ``step.n`` images) is in ``rows``."""
    have, clean = rows_present(rows)
    specs = [RobustColumn.parse(a, 0.031) for a in step.attacks]
    return all(m in clean and all((m, c.attack, c.preset, c.eps, step.n) in have for c in specs)
               for m in step.models)


def _run_evaluation(plan: Plan, step: EvalStep, should_stop: Callable[[], bool],
                    stop_file: Path) -> None:
    out = Path(plan.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = load_result(out)
    if done and eval_step_done(step, done["rows"]):
        return
    stem = results_stem(plan)
    root = checkpoint_root(plan)
    if waiting := [m for m in step.models if not_trained_yet(plan, m)]:
        log.info("evaluation: %s wait for their training", ", ".join(waiting))
    models = [shown_path(root / m) if (root / m).is_dir() else m for m in step.models
              if m not in waiting]
    if not models:
        return
    if plan.eval_processes > 1:
        _run_evaluation_ranks(plan, step, models, stem, stop_file)
        return
    attacks = [RobustColumn.parse(a, 0.031) for a in step.attacks]
    try:
        evaluate(models, attacks, data=plan.data, n_robust=step.n, seed=step.seed,
                 batch_size=step.batch_size, limit_clean=step.n_clean or plan.limit_test,
                 progress=False, done=done["rows"] if done else (),
                 on_update=lambda result: save_result(out, result), should_stop=should_stop,
                 parts_dir=parts_dir(plan))
    except EvaluationStopped as e:
        raise PipelineStopped(str(e)) from None


def shown_path(path: Path) -> str:
    """``path`` relative to the working directory where it lies inside it, so that the
    command recorded in the results carries no machine's layout; else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


def _run_evaluation_ranks(plan: Plan, step: EvalStep, models: list[str], stem: Path,
                          stop_file: Path) -> None:
    """The evaluation step as ``torchrun --nproc-per-node eval_processes``: the same rows,
    written to the same file, the batches shared among the processes."""
    limit_clean = step.n_clean or plan.limit_test
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={plan.eval_processes}", "-m", "kwta_demo", "evaluate",
               "--models", ",".join(models), "--attacks", ",".join(step.attacks),
               "--images", str(step.n), "--seed", str(step.seed),
               "--batch-size", str(step.batch_size), "--out", str(stem),
               "--stop-file", str(stop_file), "--no-progress"]
    command += ["--data", plan.data] if plan.data else []
    command += ["--limit-clean", str(limit_clean)] if limit_clean else []
    threads = max(1, _threads() // plan.eval_processes)
    log.info("evaluation over %d processes of %d threads: %s", plan.eval_processes, threads,
             " ".join(command))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    code = subprocess.run(command, env=env).returncode
    # a stopped evaluation exits 0 under torchrun (evaluate.STOPPED_EXIT): the stop file
    # is what says the step is not done
    if stop_file.exists():
        raise PipelineStopped("stopped during the evaluation; finished rows and batches are saved")
    if code != 0:
        raise RuntimeError(f"the evaluation under torchrun failed (exit {code}"
                           f"{', stopped' if code == STOPPED_EXIT else ''}); its log is above. "
                           "Run the pipeline again to go on from the finished batches")


def _threads() -> int:

    return torch.get_num_threads()


def _run_audit(plan: Plan, step: AuditStep, should_stop: Callable[[], bool]) -> None:
    rows = load_rows(plan.audit_results)
    add = appender(plan.audit_results, rows)

    def save(row: dict[str, Any]) -> None:
        add(row)
        if should_stop():
            raise PipelineStopped(f"stopped after auditing {row['model']} ({row['attack']})")

    audit_checkpoints(step.arch, attacks=step.attacks, n=step.n, seed=step.seed, data=plan.data,
                      adversarial=step.adversarial, eps=step.eps, gammas=step.gammas,
                      square_preset=step.square, done=rows, on_row=save,
                      checkpoint_dir=checkpoint_root(plan))


def request_stop(plan: Plan = DEFAULT_PLAN) -> int | None:
    """Ask a running pipeline to stop after its current step; returns its pid (None: none runs)."""
    files = pipeline_files(plan)
    pid = running_pid(files)
    if pid is not None:
        files.root.mkdir(parents=True, exist_ok=True)
        files.stop.touch()
    return pid


def detach(files: PipelineFiles, plan_path: str | None = None) -> int:
    """Start ``pipeline run`` in a process of its own, logging to ``files.log``; returns 0."""
    files.root.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "kwta_demo", "pipeline", "run", "--foreground"]
    if plan_path:
        cmd += ["--plan", plan_path]
    with open(files.log, "ab") as logf:
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    print(f"pipeline started (pid {proc.pid}); log: {files.log}")
    return 0
