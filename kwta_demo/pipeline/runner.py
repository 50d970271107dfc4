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

import argparse
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

__all__ = [
    "TrainStep",
    "EvalStep",
    "AuditStep",
    "Plan",
    "DEFAULT_PLAN",
    "PipelineStopped",
    "load_plan",
    "typical_epoch_seconds",
    "arch_of",
    "run_pipeline",
    "pipeline_status",
    "request_stop",
    "add_arguments",
    "main",
]

log = logging.getLogger(__name__)


class PipelineStopped(RuntimeError):
    """The run stopped on request; its state is saved and the next run resumes it."""


@dataclass(frozen=True)
class TrainStep:
    """One training stage: ``stage`` of ``arch`` with its recipe (see ``train.stage_config``)."""

    arch: str
    stage: str
    epochs: int
    sizes: str = "32"  # progressive resizing, "16x14+24x12+32x24" (train.parse_image_sizes)
    lr: float | None = None  # None: the recipe's default for the batch size
    batch_size: int = 128
    eval_every: int | None = None  # None: the plan's
    out: str | None = None  # checkpoint root for this stage (None: the plan's checkpoints)
    label_smoothing: float = 0.0
    amp: str = "auto"  # "off": float32, as the shipped AlexNets were trained
    seed: int | None = None  # None: the plan's (a second seed of a probe measures its noise)

    @property
    def name(self) -> str:
        from ..training.train import _stage_name

        return _stage_name(self.arch, self.stage)

    def state_dir(self, plan: "Plan") -> Path:
        """Where this stage's training state lives: beside its checkpoint when it has its own
        root (two roots may train stages of the same name), else the plan's ``runs``."""
        return Path(self.out) if self.out else Path(plan.runs)


@dataclass(frozen=True)
class EvalStep:
    """Evaluation rows: every model x every attack spec (``name[:preset][@eps]``), on ``n``
    seeded test images; ``n_clean`` images (None: the whole split) for clean accuracy."""

    models: tuple[str, ...]
    attacks: tuple[str, ...] = ()
    n: int = 320
    n_clean: int | None = None
    seed: int = 0
    batch_size: int = 64


@dataclass(frozen=True)
class AuditStep:
    """The gradient-masking audit of one architecture's three checkpoints under each attack
    spec, and the transfer matrix of the last spec, on ``n`` class-balanced test images."""

    arch: str
    attacks: tuple[str, ...] = ("pgd:report", "deepfool:paper", "pgd:corrected")
    n: int = 64
    seed: int = 0
    square: str = "cpu"


@dataclass(frozen=True)
class Plan:
    """What the pipeline does, where it reads and where it writes."""

    train: tuple[TrainStep, ...] = ()
    evaluate: tuple[EvalStep, ...] = ()
    audits: tuple[AuditStep, ...] = ()  # after the evaluation
    after: tuple[TrainStep, ...] = ()  # trained once the evaluation is done (findings runs)
    data: str | None = None  # CIFAR-10 source (None: KWTA_CIFAR10 or the default search)
    checkpoints: str | None = None  # None: KWTA_CHECKPOINTS or checkpoints/
    runs: str = "runs"
    results: str = "results/reproduction.json"
    audit_results: str = "results/audit.json"
    half: bool = True
    eval_every: int = 5
    save_every_minutes: float = 5.0
    threads: int | None = None
    eval_processes: int = 1  # >1: the evaluation runs under torchrun, the batches shared
    limit_train: int | None = None  # seeded subsets: for tests and smoke runs only
    limit_test: int | None = None
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Plan":
        d = dict(d)
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"plan has unknown fields: {', '.join(sorted(unknown))}")
        d["train"] = tuple(TrainStep(**t) for t in d.get("train", ()))
        d["after"] = tuple(TrainStep(**t) for t in d.get("after", ()))
        d["audits"] = tuple(AuditStep(**{**a, "attacks": tuple(a.get("attacks", AuditStep.attacks))})
                            for a in d.get("audits", ()))
        d["evaluate"] = tuple(
            EvalStep(**{**e, "models": tuple(e["models"]), "attacks": tuple(e.get("attacks", ()))})
            for e in d.get("evaluate", ()))
        return cls(**d)


# The ResNet18 recipe for a 2-core CPU (docs/training.md): ReLU from scratch for 50
# epochs with progressive resizing (14 at 16 px, 12 at 24 px, the last 24 at 32 px),
# then each k-WTA stage fine-tuned at 32 px from the one before. AlexNet is trained
# (three stages, shipped in checkpoints/); the evaluation rows follow.
_SIX = ("resnet18-relu", "resnet18-kwta-0.2", "resnet18-kwta-0.1",
        "alexnet-relu", "alexnet-kwta-0.2", "alexnet-kwta-0.1")
_MAIN = ("vga:report@1", "pgd:report", "pgd:corrected", "pgd:paper", "deepfool:paper",
         "bpda:paper")
DEFAULT_PLAN = Plan(
    train=(
        TrainStep("resnet18", "relu", 50, sizes="16x14+24x12+32x24"),
        TrainStep("resnet18", "kwta-0.2", 15),
        TrainStep("resnet18", "kwta-0.1", 20),
        # The adversarially trained controls (docs/training.md, "Adversarial training"):
        # N-FGSM at eps 8/255, 500 training images held out for the PGD-10 check after each
        # epoch, the best epoch kept; ReLU from scratch (one-cycle), then k-WTA 0.2 and 0.1
        # fine-tuned from it as the report fine-tunes the standard ones. AlexNet first: a
        # quarter of ResNet18's cost, it takes the whole path (training, evaluation, app,
        # cards) early.
        TrainStep("alexnet", "at-relu", 20),
        TrainStep("alexnet", "at-kwta-0.2", 5),
        TrainStep("alexnet", "at-kwta-0.1", 5),
        TrainStep("resnet18", "at-relu", 15),
        TrainStep("resnet18", "at-kwta-0.2", 5),
        TrainStep("resnet18", "at-kwta-0.1", 5),
    ),
    # Budget (docs/reproduction.md, ~6 CPU-hours): seconds per image measured by
    # benchmarks/attack_cost.py. Each step's rows are kept as soon as they are done.
    evaluate=(
        # the report's columns and ours, on the report's 320 images (class-balanced, seeded)
        EvalStep(models=_SIX, attacks=_MAIN, n=320),
        # AutoAttack's white-box pair and its gradient-free attack, on the same images, in
        # ten batches of 32: five per rank (five of 64 left one rank idle for the last)
        EvalStep(models=_SIX, attacks=("apgd-ce:paper", "apgd-dlr:paper", "square:cpu"), n=320,
                 batch_size=32),
        # C&W, an optimiser of its own, on the same images (about 0.1-0.6 s per image)
        EvalStep(models=_SIX, attacks=("cw:paper",), n=320, batch_size=32),
        # gradient estimation reads thousands of scores per image it cannot fool quickly:
        # 13-22 s per image on the trained models (one thread), ~3 CPU-hours for 320 images
        # of six models, so the first 100 of them (docs/reproduction.md, budget), in four
        # batches of 25: two per rank, and a stop waits for one batch only
        EvalStep(models=_SIX, attacks=("gradient-estimation:cpu",), n=100, batch_size=25),
        # AlexNet stays at 320 images too: 1,000 would cost about 0.9 h more, past the
        # 6-hour budget once Square on the trained k-WTA ResNet18s is counted
    ),
    # is the robustness real? the audit and the transfer matrix, AlexNet first (cheaper)
    audits=(AuditStep("alexnet"), AuditStep("resnet18")),
    # the report's finding 2: k-WTA from scratch against k-WTA from ReLU, same epochs, in
    # float32 like the shipped AlexNets (trained with --amp off), so only the start differs;
    # then what a 6-epoch ReLU budget buys (docs/training.md): 32 px only, progressive
    # resizing with the last half at 32 px (as the shipped 16x14+24x12+32x24), and that with
    # label smoothing; 1.1 to 2 CPU-hours for the three, by machine
    after=(TrainStep("alexnet", "kwta-0.2:scratch", 3, eval_every=1, out="results/findings",
                     amp="off"),
           TrainStep("resnet18", "relu", 6, out="results/recipes/6ep-32px"),
           TrainStep("resnet18", "relu", 6, sizes="16x2+24x1+32x3",
                     out="results/recipes/6ep-16-24-32px"),
           TrainStep("resnet18", "relu", 6, sizes="16x2+24x1+32x3", label_smoothing=0.1,
                     out="results/recipes/6ep-16-24-32px-ls0.1"),
           # the same recipe as 6ep-16-24-32px, seed 1: how far apart two seeds land
           TrainStep("resnet18", "relu", 6, sizes="16x2+24x1+32x3", seed=1,
                     out="results/recipes/6ep-16-24-32px-seed1")),
    data=None,
    # two torchrun ranks of one thread: 1.12x (PGD) to 1.28x (APGD) faster than one process
    # of two threads on the 2-core CPU, the same rows (benchmarks/distributed_eval.py)
    eval_processes=2,
)


def load_plan(path: str | os.PathLike | None) -> Plan:
    """The plan in the JSON file ``path``, or ``DEFAULT_PLAN``."""
    if path is None:
        return DEFAULT_PLAN
    try:
        return Plan.from_dict(json.loads(Path(path).read_text()))
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{path}: not a pipeline plan ({e})") from None


# ------------------------------------------------------------------ files


@dataclass
class _Files:
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


def _files(plan: Plan) -> _Files:
    return _Files(Path(plan.runs) / "pipeline")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _running_pid(files: _Files) -> int | None:
    try:
        pid = int(files.pid.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid != os.getpid() and _alive(pid) else None


def _checkpoint_root(plan: Plan) -> Path:
    from ..settings import get_settings

    return Path(plan.checkpoints) if plan.checkpoints else get_settings().checkpoint_dir


# ------------------------------------------------------------------ running


def _train_groups(steps: tuple[TrainStep, ...]) -> list[list[TrainStep]]:
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


def _write_current(files: _Files, what: dict[str, Any]) -> None:
    from ..models.checkpoints import atomic_write_text

    atomic_write_text(files.current, json.dumps({**what, "pid": os.getpid(),
                                                  "since": time.time()}) + "\n")


def run_pipeline(plan: Plan = DEFAULT_PLAN, *, progress: bool = False) -> dict[str, Any]:
    """Run whatever of ``plan`` is not done yet, in this process; returns ``pipeline_status``.

    Raises ``PipelineStopped`` after ``request_stop`` (the state is saved), and
    RuntimeError when another run of the same plan is alive.
    """
    from ..models.checkpoints import atomic_write_text
    from ..training.train import set_threads

    files = _files(plan)
    files.root.mkdir(parents=True, exist_ok=True)
    lock = open(files.root / "lock", "w")  # held, exclusively, for as long as this run lives
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise RuntimeError(f"the pipeline is already running (pid {_running_pid(files)}); "
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
        for step in plan.evaluate:
            _write_current(files, {"step": "evaluate", "models": list(step.models)})
            _run_evaluation(plan, step, should_stop, files.stop)
        for step in plan.audits:
            _write_current(files, {"step": "audit", "models": [step.arch]})
            _run_audit(plan, step, should_stop)
        _train_steps(plan, plan.after, files, should_stop, progress)
        log.info("pipeline: everything in the plan is done")
    finally:
        files.current.unlink(missing_ok=True)
        if files.pid.is_file() and files.pid.read_text().strip() == str(os.getpid()):
            files.pid.unlink()
        lock.close()
    return pipeline_status(plan)


def _train_steps(plan: Plan, steps: tuple[TrainStep, ...], files: _Files,
                 should_stop: Callable[[], bool], progress: bool) -> None:
    """Train every stage of ``steps`` that is not done, one architecture's chain at a time."""
    from ..data.cifar10 import load_cifar10, seeded_subset
    from ..training.train import TrainingStopped, train_schedule

    if all(_stage_done(plan, s) for s in steps):
        return
    train = load_cifar10("train", plan.data)
    test = load_cifar10("test", plan.data)
    if plan.limit_train:
        train = seeded_subset(train, plan.limit_train, plan.seed)
    if plan.limit_test:
        test = seeded_subset(test, plan.limit_test, plan.seed)
    for group in _train_groups(steps):
        if all(_stage_done(plan, s) for s in group):
            continue
        _write_current(files, {"step": "train", "stages": [s.name for s in group]})
        try:
            train_schedule(
                group[0].arch, [s.stage for s in group], train, test,
                out_root=Path(group[0].out) if group[0].out else _checkpoint_root(plan),
                state_dir=group[0].state_dir(plan),
                epochs=[s.epochs for s in group], lr=[s.lr for s in group],
                image_sizes=[s.sizes for s in group], batch_size=group[0].batch_size,
                half=plan.half, progress=progress, data_hint=plan.data,
                limit_train=plan.limit_train, save_every=60 * plan.save_every_minutes,
                should_stop=should_stop,
                seed=plan.seed if group[0].seed is None else group[0].seed,
                eval_every=group[0].eval_every or plan.eval_every,
                label_smoothing=group[0].label_smoothing, amp=group[0].amp,
            )
        except TrainingStopped as e:
            raise PipelineStopped(str(e)) from None


def _stage_done(plan: Plan, step: TrainStep) -> bool:
    """A stage is done when its checkpoint exists and its state file reached the last epoch
    (or, with no state file at all, when the checkpoint's metrics say it was trained)."""
    folder = (Path(step.out) if step.out else _checkpoint_root(plan)) / step.name
    if not (folder / "metrics.json").is_file():
        return False
    state = _state_summary(plan, step)
    if state is None:
        return True
    return state["epoch"] >= step.epochs and not state.get("partial")


def _stem(plan: Plan) -> Path:
    """The results file without ``.json``: what ``evaluate --out`` takes."""
    out = Path(plan.results)
    return out.parent / out.name.removesuffix(".json")


def _parts_dir(plan: Plan) -> Path:
    """Where ``evaluate`` keeps finished batches for the plan's results (``STEM.parts``)."""
    stem = _stem(plan)
    return stem.with_name(stem.name + ".parts")


def _run_evaluation(plan: Plan, step: EvalStep, should_stop: Callable[[], bool],
                    stop_file: Path) -> None:
    from ..evaluation.evaluate import RobustColumn, EvaluationStopped, evaluate, load_result, save_result

    out = Path(plan.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    stem = _stem(plan)
    root = _checkpoint_root(plan)
    models = [_shown(root / m) if (root / m).is_dir() else m for m in step.models]
    if plan.eval_processes > 1:
        _run_evaluation_ranks(plan, step, models, stem, stop_file)
        return
    done = load_result(out)
    attacks = [RobustColumn.parse(a, 0.031) for a in step.attacks]
    try:
        evaluate(models, attacks, data=plan.data, n_robust=step.n, seed=step.seed,
                 batch_size=step.batch_size, limit_clean=step.n_clean or plan.limit_test,
                 progress=False, done=done["rows"] if done else (),
                 on_update=lambda result: save_result(out, result), should_stop=should_stop,
                 parts_dir=_parts_dir(plan))
    except EvaluationStopped as e:
        raise PipelineStopped(str(e)) from None


def _shown(path: Path) -> str:
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
    from ..evaluation.evaluate import STOPPED_EXIT

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
    import torch

    return torch.get_num_threads()


def _run_audit(plan: Plan, step: AuditStep, should_stop: Callable[[], bool]) -> None:
    from ..evaluation.audit import appender, audit_checkpoints, load_rows

    rows = load_rows(plan.audit_results)
    add = appender(plan.audit_results, rows)

    def save(row: dict[str, Any]) -> None:
        add(row)
        if should_stop():
            raise PipelineStopped(f"stopped after auditing {row['model']} ({row['attack']})")

    audit_checkpoints(step.arch, attacks=step.attacks, n=step.n, seed=step.seed, data=plan.data,
                      square_preset=step.square, done=rows, on_row=save,
                      checkpoint_dir=_checkpoint_root(plan))


def request_stop(plan: Plan = DEFAULT_PLAN) -> int | None:
    """Ask a running pipeline to stop after its current step; returns its pid (None: none runs)."""
    files = _files(plan)
    pid = _running_pid(files)
    if pid is not None:
        files.root.mkdir(parents=True, exist_ok=True)
        files.stop.touch()
    return pid


# ------------------------------------------------------------------ status


def _state_summary(plan: Plan, step: TrainStep) -> dict[str, Any] | None:
    """Epochs done, the unfinished epoch's step and the history of a stage's state file."""
    from ..training.state import STATE_SUFFIX, read_state_meta

    path = step.state_dir(plan) / f"{step.name}{STATE_SUFFIX}"
    meta = read_state_meta(path) if path.is_file() else None
    if meta is None:
        return None
    return {"epoch": int(meta.get("epoch", 0)), "partial": meta.get("partial"),
            "history": meta.get("history", []), "config": meta.get("config_full", {}),
            "saved": path.stat().st_mtime}


# Seconds per epoch grow with the image side to this power: ResNet18 on a 2-core CPU
# measured 648, 333 and 205 img/s at 16, 24 and 32 px (bf16, batch 128), i.e. 1.66-1.68.
_SIZE_EXPONENT = 1.7


def _typical(values: list[float]) -> float:
    """The lower quartile: epochs timed while other work shared the CPU run long, and the
    estimate is for the epochs still to come, which usually have it to themselves."""
    ordered = sorted(values)
    return ordered[len(ordered) // 4]


def _measured(history: list[dict[str, Any]]) -> dict[int, list[float]]:
    measured: dict[int, list[float]] = {}
    for h in history:
        if h.get("epoch", 0) > 0 and "train_seconds" in h:
            measured.setdefault(int(h.get("image_size", 32)), []).append(h["train_seconds"])
    return measured


def typical_epoch_seconds(history: list[dict[str, Any]], size: int = 32) -> float | None:
    """The lower quartile of a run's epoch times at ``size`` px (None: no such epoch).

    Epochs that shared the CPU with other work run long (up to 6x here); the lower quartile
    stands for an epoch with the CPU to itself, which a median of a shared run does not.
    """
    times = _measured(history).get(size)
    return _typical(times) if times else None


def _epoch_seconds(history: list[dict[str, Any]], size: int) -> float | None:
    """Typical seconds of the measured epochs at ``size`` px (or scaled from another size)."""
    measured = _measured(history)
    if size in measured:
        return _typical(measured[size])
    if measured:
        other = max(measured)
        return _typical(measured[other]) * (size / other) ** _SIZE_EXPONENT
    return None


def arch_of(model: str) -> str:
    """The architecture part of a model's name or folder (``resnet18-kwta-0.2``: resnet18);
    the transfer rows' bare architecture names pass through."""
    return Path(model).name.split("-")[0]


_CostKey = tuple[str, str, str, float]  # (arch, attack, preset, eps)


def _seconds_per_image(plan: Plan, rows: list[dict[str, Any]]) -> Callable[[_CostKey], float | None]:
    """Seconds per image of an attack on an architecture: the slower of that architecture's
    models in the evaluation's own rows, else in ``attack-cost-cpu.json`` beside the
    results (``benchmarks/attack_cost.py``), else the mean of everything known."""
    from ..evaluation.evaluate import RobustColumn

    measured: dict[_CostKey, list[float]] = {}
    for r in rows:
        if r.get("seconds") and r.get("n"):
            key = (arch_of(r["model"]), r["attack"], r.get("preset", ""), float(r.get("eps", 0.0)))
            measured.setdefault(key, []).append(r["seconds"] / r["n"])
    costs: dict[_CostKey, list[float]] = {}
    cost_file = Path(plan.results).parent / "attack-cost-cpu.json"
    try:
        cost_rows = json.loads(cost_file.read_text()).get("rows", []) if cost_file.is_file() else []
    except (OSError, ValueError):
        cost_rows = []
    for c in cost_rows:
        spec = RobustColumn.parse(c["attack"], 0.031)
        costs.setdefault((arch_of(c["model"]), spec.attack, spec.preset, spec.eps),
                         []).append(float(c["seconds_per_image"]))
    everything = [v for values in (*measured.values(), *costs.values()) for v in values]
    fallback = sum(everything) / len(everything) if everything else None

    def lookup(key: _CostKey) -> float | None:
        found = measured.get(key) or costs.get(key)
        return max(found) if found else fallback

    return lookup


def audit_estimate(plan: Plan, rows: list[dict[str, Any]], eval_rows: list[dict[str, Any]]
                   ) -> tuple[int, int, float | None]:
    """Audit rows done, in all, and the seconds left: an architecture's own rows' mean
    seconds, else another's scaled by how much slower its PGD is per image. A model's
    later attacks reuse the checks its first one made (Square above all), so this runs high."""
    per_image = _seconds_per_image(plan, eval_rows)
    seconds: dict[str, list[float]] = {}
    for r in rows:
        if r.get("seconds"):
            seconds.setdefault(arch_of(r["model"]), []).append(float(r["seconds"]))
    done = total = 0
    left: float | None = 0.0
    for step in plan.audits:
        n_rows = 3 * len(step.attacks) + 1  # three models per attack, one transfer matrix
        have = sum(1 for r in rows if arch_of(r["model"]) == step.arch)
        done, total = done + min(have, n_rows), total + n_rows
        if have >= n_rows:
            continue
        own = seconds.get(step.arch)
        if own:
            row = sum(own) / len(own)
        else:
            other = next(iter(seconds), None)
            pgd = [per_image((a, "pgd", "report", 0.031)) for a in (step.arch, other)]
            row = (sum(seconds[other]) / len(seconds[other]) * pgd[0] / pgd[1]
                   if other and None not in pgd and pgd[1] else None)
        left = None if left is None or row is None else left + row * (n_rows - have)
    return done, total, left


def _batches_done(plan: Plan) -> Callable[[EvalStep, str, Any], int]:
    """Finished batches kept of a model's row in an evaluation step (``evaluate``'s parts
    folder beside the results; 0 where its checkpoint is not there to name it). Each
    checkpoint is hashed once."""
    from ..models.checkpoints import weights_sha256
    from ..evaluation.evaluate import parts_folder, robust_row_key

    parts_dir = _parts_dir(plan)
    root = _checkpoint_root(plan)
    shas: dict[str, str | None] = {}

    def count(step: EvalStep, model: str, spec: Any) -> int:
        if model not in shas:
            try:
                shas[model] = weights_sha256(root / model)
            except (OSError, ValueError):
                shas[model] = None
        if shas[model] is None:
            return 0
        folder = parts_folder(parts_dir, robust_row_key(model, shas[model], spec, step.n,
                                                        step.seed), step.batch_size)
        return len(list(folder.glob("*.json"))) if folder.is_dir() else 0

    return count


def rows_in_progress(plan: Plan, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The evaluation's rows not finished but with finished batches kept: model, attack
    (``name:preset``), eps, n, batches done and in all, and the images those batches hold."""
    from ..evaluation.evaluate import RobustColumn

    have = {(Path(r["model"]).name, r["attack"], r.get("preset", ""), float(r.get("eps", 0.0)),
             int(r.get("n", 0))) for r in rows}
    count = _batches_done(plan)
    found = []
    for step in plan.evaluate:
        for model in step.models:
            for text in step.attacks:
                spec = RobustColumn.parse(text, 0.031)
                if (model, spec.attack, spec.preset, spec.eps, step.n) in have:
                    continue
                batches = -(-step.n // step.batch_size)
                done = min(count(step, model, spec), batches)
                if done:
                    found.append({"model": model, "attack": f"{spec.attack}:{spec.preset}",
                                  "eps": spec.eps, "n": step.n, "batches_done": done,
                                  "batches": batches,
                                  "images_done": min(step.n, done * step.batch_size)})
    return found


def evaluation_estimate(plan: Plan, rows: list[dict[str, Any]],
                        in_progress: list[dict[str, Any]] | None = None
                        ) -> tuple[int, int, float | None]:
    """Rows of the plan's evaluation done, rows in all, and the seconds left (None: no
    measurement to go on).

    A missing row costs its new images (the samples are nested, so a larger row reuses a
    smaller one's) times the seconds per image measured for its attack
    (name, preset, eps) on its architecture: by this evaluation's own rows, else by
    ``benchmarks/attack_cost.py`` (``attack-cost-cpu.json`` beside the results), else the
    mean of what is known. Attacks differ by 20x per image here, so the mean of the rows
    done so far is no estimate of the rest. The images a stopped run kept
    (``in_progress``, from ``rows_in_progress``, which this reads when not given) count
    as done.
    """
    from ..evaluation.evaluate import RobustColumn

    per_image = _seconds_per_image(plan, rows)
    have = {(Path(r["model"]).name, r["attack"], r.get("preset", ""), float(r.get("eps", 0.0)),
             int(r.get("n", 0))) for r in rows if r.get("attack") != "none"}
    clean = {Path(r["model"]).name for r in rows if r.get("attack") == "none"}
    clean_per_image = [r["seconds"] / r["n"] for r in rows
                       if r.get("attack") == "none" and r.get("seconds") and r.get("n")]
    done = total = 0
    left: float | None = 0.0
    for model in dict.fromkeys(m for step in plan.evaluate for m in step.models):
        total += 1
        if model in clean:
            done += 1
            continue
        # the clean row is one float32 pass over the test split, which train timed too
        metrics = _checkpoint_root(plan) / model / "metrics.json"
        try:
            seconds = json.loads(metrics.read_text()).get("eval_seconds")
        except (OSError, ValueError):
            seconds = None
        if seconds is None and clean_per_image:
            seconds = max(clean_per_image) * (plan.limit_test or 10_000)
        left = None if left is None or seconds is None else left + seconds
    if in_progress is None:
        in_progress = rows_in_progress(plan, rows)
    kept = {(r["model"], r["attack"], r["eps"], r["n"]): r["images_done"] for r in in_progress}
    for step in plan.evaluate:
        for model in step.models:
            for text in step.attacks:
                spec = RobustColumn.parse(text, 0.031)
                total += 1
                if (model, spec.attack, spec.preset, spec.eps, step.n) in have:
                    done += 1
                    continue
                # the samples are nested: a larger row reuses a smaller one's images, and
                # the batches a stopped run finished (the smaller row's among them)
                reused = max([h[4] for h in have if h[:4] == (model, spec.attack, spec.preset,
                                                              spec.eps) and h[4] < step.n]
                             + [kept.get((model, f"{spec.attack}:{spec.preset}", spec.eps,
                                          step.n), 0)])
                cost = per_image((arch_of(model), spec.attack, spec.preset, spec.eps))
                left = (None if left is None or cost is None
                        else left + cost * (step.n - reused))
    return done, total, left


def _stage_remaining(step: TrainStep, state: dict[str, Any] | None,
                     reference: float | None) -> float | None:
    """Seconds left for a stage: its own measured epochs, else ``reference`` s per 32 px epoch."""
    from ..training.train import parse_image_sizes

    phases = parse_image_sizes(step.sizes, step.epochs) or ((32, step.epochs),)
    sizes = [s for s, n in phases for _ in range(n)]
    done = state["epoch"] if state else 0
    history = state["history"] if state else []
    total = 0.0
    for epoch in range(done + 1, step.epochs + 1):
        size = sizes[epoch - 1]
        per = _epoch_seconds(history, size)
        if per is None:
            if reference is None:
                return None
            per = reference * (size / 32) ** _SIZE_EXPONENT
        if epoch == done + 1 and state and state.get("partial"):
            per -= state["partial"].get("seconds", 0.0)
        total += max(per, 0.0)
    return total


def _partial_epoch32(step: TrainStep, state: dict[str, Any] | None) -> float | None:
    """Seconds per 32 px epoch from the epoch under way (its seconds per image so far),
    when the state says how many images an epoch has; None otherwise."""
    from ..training.train import parse_image_sizes

    partial = (state or {}).get("partial") or {}
    seen, seconds, images = partial.get("seen"), partial.get("seconds"), partial.get("images")
    if not (seen and seconds and images):
        return None
    phases = parse_image_sizes(step.sizes, step.epochs) or ((32, step.epochs),)
    sizes = [s for s, n in phases for _ in range(n)]
    size = sizes[min(int(state["epoch"]), len(sizes) - 1)]
    return seconds / seen * images * (32 / size) ** _SIZE_EXPONENT


def pipeline_status(plan: Plan = DEFAULT_PLAN) -> dict[str, Any]:
    """What is done, what is running and the time left (estimated from measured epochs,
    else from the epoch under way)."""
    from ..evaluation.evaluate import load_result

    files = _files(plan)
    pid = _running_pid(files)
    current = None
    if pid is not None and files.current.is_file():
        try:
            current = json.loads(files.current.read_text())
        except ValueError:
            current = None
    stages = []
    # per arch: seconds per 32 px epoch, from the last measured stage, else from a shipped
    # checkpoint of that arch (its recipe's median epoch)
    reference: dict[str, float] = {}
    root = _checkpoint_root(plan)
    for metrics_file in sorted(root.glob("*/metrics.json")) if root.is_dir() else ():
        try:
            recipe = json.loads(metrics_file.read_text()).get("recipe", {})
        except ValueError:
            continue
        if recipe.get("seconds_per_epoch") and not recipe.get("image_sizes"):
            reference[recipe.get("arch")] = float(recipe["seconds_per_epoch"])
    measured: set[str] = set()  # archs whose reference is a finished epoch of this machine
    for step in plan.train + plan.after:
        state = _state_summary(plan, step)
        done = _stage_done(plan, step)
        if state and (per32 := _epoch_seconds(state["history"], 32)) is not None:
            reference[step.arch] = per32
            measured.add(step.arch)
        elif step.arch not in measured and (per32 := _partial_epoch32(step, state)) is not None:
            # no finished epoch here yet: the epoch under way says more of this machine
            # than a checkpoint trained elsewhere
            reference[step.arch] = per32
        remaining = 0.0 if done else _stage_remaining(step, state, reference.get(step.arch))
        stages.append({
            "name": step.name + (f" ({step.out})" if step.out else ""), "done": done,
            "epochs": step.epochs,
            "epochs_done": state["epoch"] if state else (step.epochs if done else 0),
            "partial_step": (state.get("partial") or {}).get("step") if state else None,
            "last_test_acc": next((h["test_acc"] for h in reversed(state["history"])
                                   if "test_acc" in h), None) if state else None,
            "remaining_seconds": remaining,
        })
    from ..evaluation.audit import load_rows

    result = load_result(Path(plan.results))
    eval_rows = result["rows"] if result else []
    in_progress = rows_in_progress(plan, eval_rows)
    rows_done, rows_total, eval_left = evaluation_estimate(plan, eval_rows, in_progress)
    audit_done, audit_total, audit_left = audit_estimate(plan, load_rows(plan.audit_results),
                                                         eval_rows)
    train_left = [s["remaining_seconds"] for s in stages]
    return {
        "running": pid is not None, "pid": pid, "current": current,
        "stop_requested": files.stop.exists(), "log": str(files.log),
        "stages": stages,
        "evaluation": {"rows_done": rows_done, "rows_total": rows_total,
                       "remaining_seconds": eval_left, "results": plan.results,
                       "last": _last_finished(eval_rows),
                       "in_progress": in_progress},
        "audit": {"rows_done": audit_done, "rows_total": audit_total,
                  "remaining_seconds": audit_left, "results": plan.audit_results},
        "remaining_seconds": None if None in train_left or None in (eval_left, audit_left)
        else sum(train_left) + eval_left + audit_left,
        "train_remaining_seconds": None if None in train_left else sum(train_left),
    }


def _last_finished(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row finished last (of those that say when; the later one in the file on a tie)."""
    stamped = [(r["finished"], i, r) for i, r in enumerate(rows) if r.get("finished")]
    return max(stamped, key=lambda t: t[:2])[2] if stamped else None


def _hours(seconds: float | None) -> str:
    if seconds is None:
        return "unknown yet"
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def format_status(status: dict[str, Any]) -> str:
    """``pipeline_status`` as the lines ``pipeline status`` prints."""
    lines = []
    if status["running"]:
        cur = status["current"] or {}
        what = ", ".join(cur.get("stages") or cur.get("models") or [])
        lines.append(f"running (pid {status['pid']}): {cur.get('step', '?')} {what}".rstrip())
        if status["stop_requested"]:
            lines.append("stop requested: it stops at its next step, after saving")
    else:
        lines.append("not running")
    for s in status["stages"]:
        if s["done"]:
            state = "done"
        else:
            state = f"{s['epochs_done']}/{s['epochs']} epochs"
            if s["partial_step"]:
                state += f" (+{s['partial_step']} steps)"
            state += f", {_hours(s['remaining_seconds'])} left"
        acc = f", last test acc {100 * s['last_test_acc']:.2f}%" if s["last_test_acc"] else ""
        lines.append(f"  train {s['name']}: {state}{acc}")
    ev = status["evaluation"]
    lines.append(f"  evaluate: {ev['rows_done']}/{ev['rows_total']} rows in {ev['results']}"
                 + ("" if ev["rows_done"] >= ev["rows_total"]
                    else f", {_hours(ev['remaining_seconds'])} left"))
    if last := ev.get("last"):
        attack = f"{last['attack']}:{last['preset']}" if last.get("preset") else last["attack"]
        lines.append(f"    last row: {Path(last['model']).name} {attack}, "
                     f"{100 * last['robust_acc']:.1f}% of {last.get('n_pairs', last['n'])}, "
                     f"finished {last['finished']}")
    for row in ev.get("in_progress", ()):
        lines.append(f"    in progress: {row['model']} {row['attack']}, "
                     f"{row['batches_done']} of {row['batches']} batches kept")
    au = status["audit"]
    lines.append(f"  audit: {au['rows_done']}/{au['rows_total']} rows in {au['results']}"
                 + ("" if au["rows_done"] >= au["rows_total"]
                    else f", {_hours(au['remaining_seconds'])} left"))
    lines.append(f"time left: {_hours(status['remaining_seconds'])} "
                 f"(training: {_hours(status['train_remaining_seconds'])}); log: {status['log']}")
    return "\n".join(lines)


# ------------------------------------------------------------------ command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m kwta_demo pipeline``."""
    parser.add_argument("action", choices=("run", "status", "stop"))
    parser.add_argument("--plan", default=None, help="a plan as JSON (default: the built-in plan)")
    parser.add_argument("--foreground", action="store_true",
                        help="run in this process instead of detaching")
    parser.add_argument("--wait", action="store_true", help="stop: wait until it has stopped")


def _detach(args: argparse.Namespace, files: _Files) -> int:
    files.root.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "kwta_demo", "pipeline", "run", "--foreground"]
    if args.plan:
        cmd += ["--plan", args.plan]
    with open(files.log, "ab") as logf:
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    print(f"pipeline started (pid {proc.pid}); log: {files.log}")
    return 0


def main(args: argparse.Namespace) -> int:
    """Run ``python -m kwta_demo pipeline run|status|stop``; returns the exit status."""
    plan = load_plan(args.plan)
    files = _files(plan)
    if args.action == "status":
        print(format_status(pipeline_status(plan)))
        return 0
    if args.action == "stop":
        pid = request_stop(plan)
        if pid is None:
            print("the pipeline is not running")
            return 0
        print(f"stop requested (pid {pid}); it stops at its next step, after saving")
        while args.wait and _alive(pid):
            time.sleep(1)
        return 0
    other = _running_pid(files)
    if other is not None:
        print(f"the pipeline is already running (pid {other}); `pipeline status` shows it")
        return 1
    if not args.foreground:
        return _detach(args, files)
    signal.signal(signal.SIGTERM, lambda *_: files.stop.touch())  # SIGTERM: a clean stop
    try:
        status = run_pipeline(plan, progress=False)
    except PipelineStopped as e:
        log.info("pipeline: %s", e)
        return 0
    except RuntimeError as e:
        if "already running" not in str(e):
            raise
        print(e)
        return 1
    print(format_status(status))
    return 0
