"""What the pipeline does: its training stages, evaluation rows and audits (``Plan``), the
built-in plan (``DEFAULT_PLAN``) and plans read from JSON (the tests use tiny ones)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..models.architectures import family
from ..settings import get_settings
from ..training.config import stage_name

__all__ = ["TrainStep", "EvalStep", "AuditStep", "Plan", "DEFAULT_PLAN", "load_plan",
           "checkpoint_root"]


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
        return stage_name(self.arch, self.stage)

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
    adversarial: bool = False  # the adversarially trained models (``<arch>-at-...``)
    eps: float = 0.031
    gammas: tuple[float, ...] = (0.2, 0.1)  # the k-WTA models beside the ReLU one

    @property
    def models(self) -> tuple[str, ...]:
        return family(self.arch, adversarial=self.adversarial, gammas=self.gammas)


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
        d["audits"] = tuple(AuditStep(**{**a, "attacks": tuple(a.get("attacks", AuditStep.attacks)),
                                          "gammas": tuple(a.get("gammas", AuditStep.gammas))})
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
_AT_ALEXNET = ("alexnet-at-relu", "alexnet-at-kwta-0.2", "alexnet-at-kwta-0.1")
_AT_RESNET18 = ("resnet18-at-relu", "resnet18-at-kwta-0.1")
_MAIN = ("vga:report@1", "pgd:report", "pgd:corrected", "pgd:paper", "deepfool:paper",
         "bpda:paper")
# the adversarially trained controls, at their own eps (8/255): the paper's PGD-20, BPDA,
# and AutoAttack's white-box pair
_AT_ATTACKS = ("pgd:paper@8/255", "bpda:paper@8/255", "autoattack:apgd-ce-t")
DEFAULT_PLAN = Plan(
    train=(
        TrainStep("resnet18", "relu", 50, sizes="16x14+24x12+32x24"),
        TrainStep("resnet18", "kwta-0.2", 15),
        TrainStep("resnet18", "kwta-0.1", 20),
        # The adversarially trained controls (docs/training.md, "Adversarial training"):
        # N-FGSM at eps 8/255, 500 training images held out for the PGD-10 check after each
        # epoch, the best epoch kept; ReLU from scratch (one-cycle), then k-WTA 0.2 and 0.1
        # fine-tuned from it as the report fine-tunes the standard ones. AlexNet first: a
        # quarter of ResNet18's cost, it takes the whole path (training, evaluation, audit)
        # before ResNet18's (in `after`) starts.
        TrainStep("alexnet", "at-relu", 20),
        TrainStep("alexnet", "at-kwta-0.2", 5),
        TrainStep("alexnet", "at-kwta-0.1", 5),
    ),
    # Budget (docs/reproduction.md): seconds per image measured by benchmarks/attack_cost.py.
    # Each step's rows are kept as soon as they are done; a model the plan has not trained
    # yet waits for the evaluation pass after the `after` stages.
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
        # the standard AutoAttack (the number RobustBench ranks by) at 8/255 on the same 320
        # images: cheap on these models, where APGD-CE fools almost every image first
        EvalStep(models=_SIX, attacks=("autoattack:standard",), n=320, batch_size=32),
        # the adversarially trained controls on the same 320 images; the full standard
        # ensemble (APGD-T's and FAB-T's nine targets and Square's 5,000 queries on every
        # image still standing) on the first 100 of them
        EvalStep(models=_AT_ALEXNET + _AT_RESNET18, attacks=_AT_ATTACKS, n=320, batch_size=32),
        EvalStep(models=_AT_ALEXNET + _AT_RESNET18, attacks=("autoattack:standard",), n=100,
                 batch_size=10),
    ),
    # is the robustness real? the audit and the transfer matrix, AlexNet first (cheaper);
    # the adversarially trained trios at their eps
    audits=(AuditStep("alexnet"), AuditStep("resnet18"),
            AuditStep("alexnet", adversarial=True, eps=8 / 255),
            AuditStep("resnet18", adversarial=True, eps=8 / 255, gammas=(0.1,))),
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
                     out="results/recipes/6ep-16-24-32px-seed1"),
           # ResNet18's adversarially trained controls, after AlexNet's are evaluated; k-WTA
           # 0.1 straight from the AT ReLU weights: the 0.2 step would cost ~1.5 h more on
           # the Intel Xeon (docs/training.md, "Adversarial training")
           TrainStep("resnet18", "at-relu", 15),
           TrainStep("resnet18", "at-kwta-0.1", 5)),
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


def checkpoint_root(plan: Plan) -> Path:
    """Where the plan's shipped checkpoints go: its own folder, or KWTA_CHECKPOINTS."""
    return Path(plan.checkpoints) if plan.checkpoints else get_settings().checkpoint_dir
