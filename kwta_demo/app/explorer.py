"""The app's handlers as plain functions: validate inputs, call the library, shape results.

Everything the Gradio app does goes through ``Explorer``; each method can be called and
tested without Gradio. Inputs are validated here (the HTTP API can be called without the
UI): a bad input raises ``ValueError`` with a message meant for the user.

Units at this boundary: epsilon and step size in 1/255 of the pixel range (8 means 8/255,
the usual L-inf budget on CIFAR-10); probabilities and accuracies in 0..1.

Values may arrive as any JSON type (the app passes them on unprocessed), so every check
here also refuses the wrong type with a message, never a ``TypeError``. Each request runs
under ``Limits.time_limit_s``: the model cache stops it at the next forward pass after
that (``model_cache.deadline``), also in the middle of an attack.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import urlencode

import numpy as np
import torch

from ..attacks import ATTACKS, run_attack
from ..attacks.gradient import recording_iterates
from ..data.cifar10 import (
    GALLERY_SAMPLE,
    DataNotFoundError,
    balanced_sample,
    evaluation_sample,
    load_cifar10,
    resolve_source,
)
from ..data.uploads import PreparedImage, prepare_image
from ..evaluation.audit import audit
from ..evaluation.evaluate import clean_accuracy, robust_accuracy
from ..evaluation.landscape import directions, line_slice, plane_slice
from ..evaluation.transfer import transfer_matrix
from ..models.activations import (
    LayerInfo,
    active_share,
    capture_activations,
    comparable_layers,
    flipped_share,
)
from ..models.architectures import ARCHS, CIFAR10_CLASSES, ModelConfig
from ..models.checkpoints import CheckpointError, find_checkpoint, weights_sha256
from ..settings import Settings, get_settings
from .model_cache import ModelCache, ModelStatus, deadline
from .receipts import receipt, receipt_tensors

__all__ = [
    "ARCH_LABELS",
    "VARIANTS",
    "UNKNOWN_LABEL",
    "Limits",
    "GalleryData",
    "ModelAttack",
    "AttackOutcome",
    "ActivationView",
    "SweepOutcome",
    "AuditOutcome",
    "Explorer",
    "AttackControls",
    "attack_controls",
    "attack_names",
    "model_names",
    "parse_eps_list",
]

ARCH_LABELS: dict[str, str] = {"ResNet18": "resnet18", "AlexNet": "alexnet"}
VARIANTS: dict[str, str] = {"ReLU": "relu", "k-WTA γ=0.2": "kwta-0.2", "k-WTA γ=0.1": "kwta-0.1"}
UNKNOWN_LABEL = "unknown: attack each model's own clean prediction"
MAX_EPS_255 = 64.0  # 0.25 of the pixel range: beyond it, an "attack" just paints the image

Progress = Callable[[float, str], None]


def _no_progress(_fraction: float, _desc: str) -> None:
    return None


@dataclass(frozen=True)
class Limits:
    """Caps that bound one request's work (the queue bounds how many run at once)."""

    max_steps: int = 200  # an attack's step override
    max_sweep_images: int = 500
    max_sweep_points: int = 10  # epsilon values in one sweep
    time_limit_s: float = 300.0  # any one request, checked at every forward pass
    sweep_batch: int = 50


# ---------------------------------------------------------------- validation


def _text(value: Any, what: str) -> str:
    """``value`` as a string, or a ValueError naming ``what`` (API values can be any JSON)."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {value!r}")
    return value


def _arch(arch: str) -> str:
    value = ARCH_LABELS.get(_text(arch, "architecture"), arch)
    if value not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose {' or '.join(ARCH_LABELS.values())}")
    return value


def model_names(arch: str, variants: Sequence[str]) -> list[str]:
    """Checkpoint names for an architecture and variant labels (or suffixes), in a fixed order."""
    arch = _arch(arch)
    if isinstance(variants, str):
        variants = [variants]
    if variants is not None and not isinstance(variants, (list, tuple)):
        raise ValueError(f"variants must be a list of model variants, got {variants!r}")
    if not variants:
        raise ValueError("no model selected: tick at least one of " + ", ".join(VARIANTS))
    suffixes = []
    for v in variants:
        suffix = VARIANTS.get(v, v) if isinstance(v, str) else v
        if suffix not in VARIANTS.values():
            raise ValueError(f"unknown model variant {v!r}; choose from "
                             f"{', '.join(VARIANTS.values())} ({', '.join(VARIANTS)})")
        suffixes.append(suffix)
    return [f"{arch}-{s}" for s in VARIANTS.values() if s in suffixes]


def _class_index(value: str | int | float | None, what: str) -> int | None:
    """A class given by name or index; None for empty or 'unknown'."""
    if value is None or value in ("", "none", "unknown", UNKNOWN_LABEL):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if float(value) != int(value) or not 0 <= int(value) < len(CIFAR10_CLASSES):
            raise ValueError(f"{what} must be a class index 0..9 or a class name, got {value!r}")
        return int(value)
    name = str(value).strip().lower()
    if name.isdigit() and 0 <= int(name) < len(CIFAR10_CLASSES):
        return int(name)
    if name not in CIFAR10_CLASSES:
        raise ValueError(f"unknown {what} {value!r}; choose from {', '.join(CIFAR10_CLASSES)}")
    return CIFAR10_CLASSES.index(name)


def _finite(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return x


def _eps(eps_255: Any) -> float:
    eps = _finite(eps_255, "epsilon")
    if not 0 < eps <= MAX_EPS_255:
        raise ValueError(f"epsilon must lie in (0, {MAX_EPS_255:g}] (in 1/255 units), got {eps_255!r}")
    return eps / 255.0


def _int(value: Any, what: str, lo: int, hi: int) -> int:
    x = _finite(value, what)
    if x != int(x) or not lo <= x <= hi:
        raise ValueError(f"{what} must be a whole number in {lo}..{hi}, got {value!r}")
    return int(x)


def parse_eps_list(text: str | Sequence[float], max_points: int = 10) -> list[float]:
    """Epsilons in 1/255 units from '0, 2, 4, 8' (or a list): sorted, unique, each in [0, 64]."""
    if isinstance(text, str):
        parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p.strip()]
    elif isinstance(text, (list, tuple)):
        parts = list(text)
    elif isinstance(text, (int, float)) and not isinstance(text, bool):
        parts = [text]
    else:
        raise ValueError(f"epsilon values must be a text like '0, 2, 4, 8' or a list, got {text!r}")
    if not parts:
        raise ValueError("give at least one epsilon, e.g. '0, 2, 4, 8' (in 1/255 units)")
    values = sorted({_finite(p, "epsilon") for p in parts})
    if values[0] < 0 or values[-1] > MAX_EPS_255:
        raise ValueError(f"each epsilon must lie in [0, {MAX_EPS_255:g}] (1/255 units), got {values}")
    if len(values) > max_points:
        raise ValueError(f"at most {max_points} epsilon values per sweep, got {len(values)}")
    return values


def _spec(attack: str):
    """The registry entry of ``attack`` (ValueError naming the choices when unknown)."""
    if not isinstance(attack, str) or attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; choose from {', '.join(ATTACKS)}")
    return ATTACKS[attack]


def _check_attack(attack: str, preset: str) -> Any:
    spec = _spec(attack)
    if not isinstance(preset, str) or preset not in spec.presets:
        raise ValueError(f"unknown preset {preset!r} for {attack}; choose from {', '.join(spec.presets)}")
    return spec


def attack_names() -> list[str]:
    """The attacks on offer, in registry order."""
    return list(ATTACKS)


@dataclass(frozen=True)
class AttackControls:
    """What the UI should offer for an attack and preset."""

    presets: list[str]
    has_steps: bool
    has_step_size: bool
    targeted: str  # "no", "optional" or "required"
    eps_255: float | None  # the eps the preset was published with, if any
    note: str  # what the attack and the preset do, in markdown


def attack_controls(attack: str, preset: str | None = None) -> AttackControls:
    """Presets, adjustable parameters, target use and the preset's note for ``attack``."""
    spec = _spec(attack)
    presets = list(spec.presets)
    preset = preset if isinstance(preset, str) and preset in spec.presets else presets[0]
    eps = spec.preset_eps.get(preset)
    note = f"**{spec.title}**: {spec.description}\n\nPreset `{preset}`: {spec.preset_notes.get(preset, '')}"
    return AttackControls(presets, "steps" in spec.params, "step_size" in spec.params,
                          spec.targeted, None if eps is None else eps * 255, note)


def quantise_8bit(adversarial: torch.Tensor, clean: torch.Tensor, eps: float) -> torch.Tensor:
    """``adversarial`` rounded to the nearest of 256 levels, kept in [0, 1] and inside the
    eps-ball of ``clean`` on that grid: the image a PNG download holds. A clean image
    from an 8-bit source lies on the grid, so the bounds do too."""
    levels = torch.round(adversarial * 255)
    base = torch.round(clean * 255)
    reach = math.floor(eps * 255 + 1e-6)
    return torch.minimum(torch.maximum(levels, base - reach), base + reach).clamp(0, 255) / 255


REPLAY_KEYS = ("test", "arch", "variants", "attack", "preset", "eps", "steps", "step", "true",
               "target", "seed")


def replay_query(outcome: "AttackOutcome", test_index: int) -> str:
    """The query string that sets the app up for the same click on test image
    ``test_index`` (``?test=...&arch=...``); ``parse_replay`` reads it back."""
    params = outcome.params
    fields = {
        "test": test_index, "arch": outcome.arch,
        "variants": ",".join(ModelConfig.from_name(m.name).variant for m in outcome.models),
        "attack": outcome.attack, "preset": outcome.preset,
        "eps": repr(round(params["eps"] * 255, 6)), "seed": params["seed"],
        "steps": params.get("steps"),
        "step": None if params.get("step_size") is None else repr(round(params["step_size"] * 255, 6)),
        "true": None if outcome.label is None else CIFAR10_CLASSES[outcome.label],
        "target": None if outcome.target is None else CIFAR10_CLASSES[outcome.target],
    }
    return "?" + urlencode({k: v for k, v in fields.items() if v is not None})


def parse_replay(query: dict[str, str]) -> dict[str, Any] | None:
    """The attack settings a replay query holds (None when it holds none); every value is
    checked as ``Explorer.attack`` checks it, so a bad link is a clear error."""
    if "test" not in query:
        return None
    unknown = sorted(set(query) - set(REPLAY_KEYS))
    if unknown:
        raise ValueError(f"unknown replay parameter(s): {', '.join(unknown)}")
    arch = _arch(query.get("arch", "resnet18"))
    variants = [v for v in query.get("variants", "relu,kwta-0.2,kwta-0.1").split(",") if v]
    model_names(arch, variants)
    attack, preset = query.get("attack", "pgd"), query.get("preset", "interactive")
    _check_attack(attack, preset)
    out = {"test": _int(query["test"], "test", 0, 10**6), "arch": arch, "variants": variants,
           "attack": attack, "preset": preset,
           "eps_255": _finite(query.get("eps", "8"), "eps"),
           "steps": _int(query["steps"], "steps", 1, 10**4) if query.get("steps") else None,
           "step_size_255": _finite(query["step"], "step") if query.get("step") else None,
           "seed": _int(query.get("seed", "0"), "seed", 0, 2**31 - 1),
           "true_class": query.get("true"), "target_class": query.get("target")}
    for key in ("true_class", "target_class"):
        if out[key] is not None:
            _class_index(out[key], key.replace("_", " "))
    _eps(out["eps_255"])
    return out


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class GalleryData:
    images: list[np.ndarray]  # (32, 32, 3) uint8
    labels: list[int]
    captions: list[str]
    message: str  # where the images come from, or why there are none
    indices: list[int] = field(default_factory=list)  # each image's index in the test split


@dataclass
class ModelAttack:
    """One model's part of an attack click."""

    name: str
    error: str | None = None  # why this model could not run (the others still did)
    result: Any = None  # AttackResult for one image
    label: int | None = None  # the label attacked (true class or own clean prediction)
    clean_probs: torch.Tensor | None = None  # (10,)
    adv_probs: torch.Tensor | None = None  # (10,)
    adv_8bit: torch.Tensor | None = None  # (3, H, W): the adversarial image as a PNG holds it
    fools_8bit: bool | None = None  # whether that 8-bit image still succeeds

    @property
    def adversarial(self) -> torch.Tensor:
        return self.result.adversarial[0].detach().cpu()

    def summary(self) -> dict[str, Any]:
        """Plain numbers for the API and captions."""
        if self.error is not None:
            return {"model": self.name, "error": self.error}
        r = self.result
        clean_pred, adv_pred = int(r.clean_pred[0]), int(r.adv_pred[0])
        return {
            "model": self.name,
            "label": CIFAR10_CLASSES[self.label],
            "clean_pred": CIFAR10_CLASSES[clean_pred],
            "clean_prob": round(float(self.clean_probs[clean_pred]), 4),
            "adv_pred": CIFAR10_CLASSES[adv_pred],
            "adv_prob": round(float(self.adv_probs[adv_pred]), 4),
            "success": bool(r.success[0]),
            "linf_255": round(float(r.linf[0]) * 255, 3),
            "l2": round(float(r.l2[0]), 4),
            "steps_recorded": int(r.true_prob.shape[0]),
            "steps": r.params.get("steps"),
            "success_8bit": self.fools_8bit,
        }


@dataclass
class AttackOutcome:
    image: PreparedImage
    arch: str
    attack: str
    preset: str
    params: dict[str, Any]  # what was asked (eps in [0, 1], overrides, target)
    label: int | None  # the true class if known
    target: int | None
    models: list[ModelAttack] = field(default_factory=list)
    seconds: float = 0.0

    def ok(self) -> list[ModelAttack]:
        return [m for m in self.models if m.error is None]

    def state(self) -> dict[str, Any]:
        """What a later activation or audit request needs, as CPU tensors (kept server-side)."""
        return {
            "arch": self.arch,
            "clean": self.image.tensor.clone(),
            "adversarial": {m.name: m.adversarial.clone() for m in self.ok()},
            "labels": {m.name: m.label for m in self.ok()},
            "attack": self.attack, "preset": self.preset,
            "params": {k: v for k, v in self.params.items() if k != "target"},
            "target": self.target,
        }


@dataclass
class ActivationView:
    layer: LayerInfo
    stats: list[dict[str, Any]]  # per model: active share clean/adv, flipped share
    maps: dict[str, tuple[torch.Tensor, torch.Tensor]]  # per model: (clean, adversarial) maps


@dataclass
class LandscapeOutcome:
    lines: dict[str, dict[str, Any]]  # per model, per direction: the line slice
    planes: dict[str, torch.Tensor]  # per model: the gradient-sign x random plane
    radius: float  # in pixel units


@dataclass
class AuditOutcome:
    audits: list[Any]  # kwta_demo.evaluation.audit.Audit, one per model
    errors: dict[str, str]
    images: int
    seconds: float

    def rows(self) -> list[list[Any]]:
        flag = {True: "yes", False: "no", None: "—"}
        return [[a.model, c.title, flag[c.flagged], c.evidence] for a in self.audits
                for c in a.checks]


@dataclass
class SweepOutcome:
    eps_255: list[float]
    accuracy: dict[str, list[float]]  # per model, one value per epsilon
    errors: dict[str, str]
    n: int
    seed: int
    attack: str
    preset: str
    seconds: float

    def rows(self) -> list[list[Any]]:
        return [[name, eps, round(acc, 4)] for name, accs in self.accuracy.items()
                for eps, acc in zip(self.eps_255, accs)]


# ---------------------------------------------------------------- the explorer




class Explorer:
    """The app's state (model cache, gallery) and its handlers as methods."""

    def __init__(
        self,
        cache: ModelCache | None = None,
        *,
        data_source: str | None = None,
        gallery_per_class: int = 3,
        gallery_seed: int = 0,
        limits: Limits = Limits(),
    ) -> None:
        self.cache = cache or ModelCache()
        self.data_source = data_source
        self.gallery_per_class = gallery_per_class
        self.gallery_seed = gallery_seed
        self.limits = limits
        self._gallery: GalleryData | None = None
        self._gallery_lock = threading.Lock()
        self._weights_sha: dict[tuple, str] = {}  # receipts: the weights' SHA-256 by file version

    @property
    def settings(self) -> Settings:
        """Where checkpoints and data are looked for: the cache's, else the environment's."""
        return self.cache.settings or get_settings()

    # ------------------------------------------------------------ data

    def _test_split(self):
        """The configured CIFAR-10 test split; with no source configured and none found,
        the gallery sample shipped in the package (100 test images, see its README)."""
        return self._test_data()[0]

    def _test_data(self):
        """(split, test-split index of each image, where it came from)."""

        try:
            split = load_cifar10("test", self.data_source)
        except DataNotFoundError:
            if self.data_source is not None or self.settings.cifar10:
                raise  # a source was asked for: say it is missing, never substitute
            split = load_cifar10("test", GALLERY_SAMPLE)
            index = json.loads((GALLERY_SAMPLE / "index.json").read_text())
            return split, torch.tensor(index), (
                "the sample shipped with the app (kwta_demo/data/gallery_sample: 10 test images "
                "per class of the JPEG CIFAR-10 copy; set KWTA_CIFAR10 for the whole split)")
        kind, path = resolve_source(self.data_source)
        return split, torch.arange(len(split.labels)), f"{path} ({kind})"

    def gallery(self) -> GalleryData:
        """A seeded, class-balanced sample of test images; empty (with the reason) without data.

        Decoded once; callers arriving while it loads wait for that one load.
        """
        with self._gallery_lock:
            if self._gallery is None:
                self._gallery = self._load_gallery()
            return self._gallery

    def start_loading_gallery(self) -> threading.Thread:
        """Load the gallery in the background (the app starts serving meanwhile)."""
        thread = threading.Thread(target=self.gallery, name="gallery-loader", daemon=True)
        thread.start()
        return thread

    def _load_gallery(self) -> GalleryData:

        try:
            split, test_index, where = self._test_data()
            # A small source (a test folder) may hold fewer images per class than asked.
            fewest = int(torch.bincount(split.labels, minlength=len(CIFAR10_CLASSES)).min())
            if fewest == 0:
                raise ValueError("the test split lacks some of the ten classes")
            sample, indices = balanced_sample(split, min(self.gallery_per_class, fewest),
                                              self.gallery_seed)
        except (DataNotFoundError, OSError, ValueError) as e:
            return GalleryData([], [], [], f"No CIFAR-10 test images to show ({e}). Uploads still work.")
        images = [img.permute(1, 2, 0).numpy().copy() for img in sample.images]
        labels = [int(v) for v in sample.labels]
        test_indices = [int(test_index[i]) for i in indices]
        captions = [f"{CIFAR10_CLASSES[lab]} (test #{t})" for lab, t in zip(labels, test_indices)]
        return GalleryData(images, labels, captions, (
            f"{len(images)} CIFAR-10 test images ({len(images) // len(CIFAR10_CLASSES)} per class, "
            f"seed {self.gallery_seed}) from {where}."
        ), test_indices)

    def test_image(self, index: Any) -> tuple[np.ndarray, str]:
        """Test image ``index`` (its index in the test split) and its class name."""
        split, test_index, where = self._test_data()
        i = _int(index, "test image index", 0, 10**6)
        found = (test_index == i).nonzero()
        if len(found) == 0:
            raise ValueError(f"test image #{i} is not in {where}")
        k = int(found[0])
        return (split.images[k].permute(1, 2, 0).numpy().copy(),
                CIFAR10_CLASSES[int(split.labels[k])])

    def gallery_item(self, index: Any) -> tuple[np.ndarray, str]:
        """The gallery image ``index`` and its class name."""
        gallery = self.gallery()
        if not gallery.images:
            raise ValueError("the gallery is empty (no CIFAR-10 source found); upload an image")
        i = _int(index, "gallery index", 0, len(gallery.images) - 1)
        return gallery.images[i], CIFAR10_CLASSES[gallery.labels[i]]

    # ------------------------------------------------------------ models

    def model_status(self) -> list[ModelStatus]:
        """Where each of the six models stands (loaded, local, remote, failed), loading none."""
        return self.cache.status()

    def layers(self, arch: str) -> list[LayerInfo]:
        """The layers offered for activation maps for ``arch``."""
        return list(comparable_layers(_arch(arch)))

    # ------------------------------------------------------------ attack

    def prepare(self, image: Any) -> PreparedImage:
        """The 32x32 model input for any image, and how it was made (see ``uploads``)."""
        return prepare_image(image)

    def attack(
        self,
        image: Any,
        *,
        arch: str,
        variants: Sequence[str],
        attack: str,
        preset: str = "interactive",
        eps_255: float = 8.0,
        steps: int | None = None,
        step_size_255: float | None = None,
        true_class: str | int | None = None,
        target_class: str | int | None = None,
        seed: int = 0,
        progress: Progress = _no_progress,
    ) -> AttackOutcome:
        """Attack one image against each selected model; a model that fails to load is
        reported in its slot and the others still run."""
        names = model_names(arch, variants)
        spec = _check_attack(attack, preset)
        eps = _eps(eps_255)
        label = _class_index(true_class, "true class")
        target = _class_index(target_class, "target class")
        if target is not None and target == label:
            raise ValueError("the target class is the true class: pick another target")
        seed = _int(seed, "seed", 0, 2**31 - 1)
        if target is not None and spec.targeted == "no":
            raise ValueError(f"{attack} is untargeted: leave the target class empty")
        if target is None and spec.targeted == "required":
            raise ValueError(f"{attack} is a targeted attack: pick a target class")
        overrides = self._overrides(spec.params, steps, step_size_255)
        prepared = self.prepare(image)
        outcome = AttackOutcome(prepared, _arch(arch), attack, preset,
                                {"eps": eps, **overrides, "target": target, "seed": seed}, label, target)
        start = time.monotonic()
        with deadline(self.limits.time_limit_s):
            for i, name in enumerate(names):
                self._check_time(start, f"attacking {name}")
                progress(i / len(names), f"{attack} on {name}")
                outcome.models.append(self._attack_one(name, prepared.tensor, label, attack, preset,
                                                       eps, target, seed, overrides))
        progress(1.0, "done")
        outcome.seconds = time.monotonic() - start
        return outcome

    def _overrides(self, params: Any, steps: Any, step_size_255: Any) -> dict[str, Any]:
        """Steps and step size given by the user (None: the preset's), checked; an attack
        without such a parameter ignores it."""
        out: dict[str, Any] = {}
        if steps not in (None, "") and "steps" in params:
            out["steps"] = _int(steps, "steps", 1, self.limits.max_steps)
        if step_size_255 not in (None, "") and "step_size" in params:
            size = _finite(step_size_255, "step size")
            if not 0 < size <= MAX_EPS_255:
                raise ValueError(f"step size must lie in (0, {MAX_EPS_255:g}] (1/255 units), got {step_size_255!r}")
            out["step_size"] = size / 255.0
        return out

    def _check_time(self, start: float, what: str) -> None:
        if time.monotonic() - start > self.limits.time_limit_s:
            raise TimeoutError(
                f"stopped before {what}: this request passed its {self.limits.time_limit_s:g} s "
                "limit. Use fewer steps, images or models."
            )

    def _attack_one(self, name: str, image: torch.Tensor, label: int | None, attack: str,
                    preset: str, eps: float, target: int | None, seed: int,
                    overrides: dict[str, Any]) -> ModelAttack:
        try:
            model = self.cache.get(name)
        except CheckpointError as e:
            return ModelAttack(name, error=str(e))
        device = self.cache.device
        x = image.unsqueeze(0).to(device)
        with torch.no_grad():
            clean_probs = model(x).softmax(1)[0].cpu()
        used = label if label is not None else int(clean_probs.argmax())
        if target is not None and target == used:
            return ModelAttack(name, error=(
                f"predicts the target class ({CIFAR10_CLASSES[target]}) on the clean image "
                "already: nothing to attack. Set the true class or pick another target."))
        y = torch.tensor([used], device=device)
        kwargs = dict(eps=eps, preset=preset, seed=seed, **overrides)
        if target is not None:
            kwargs["target"] = torch.tensor([target], device=device)
        result = run_attack(attack, model, x, y, **kwargs)
        q = quantise_8bit(result.adversarial, x, eps)
        with torch.no_grad():
            adv_probs = model(result.adversarial.to(device)).softmax(1)[0].cpu()
            q_pred = int(model(q).argmax(1)[0])
        fools = q_pred == target if target is not None else q_pred != used
        return ModelAttack(name, None, result, used, clean_probs, adv_probs, q[0].cpu(), fools)

    def receipt(self, outcome: AttackOutcome) -> tuple[dict[str, Any], bytes]:
        """The JSON receipt and the safetensors bytes of one attack click."""

        weights = {}
        for m in outcome.ok():
            try:
                folder = find_checkpoint(m.name, self.settings)
                stamp = tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns)
                              for f in sorted(folder.glob("*.safetensors")))
                key = (str(folder), stamp)  # hashed once per file version, not per click
                if key not in self._weights_sha:
                    self._weights_sha[key] = weights_sha256(folder)
                weights[m.name] = self._weights_sha[key]
            except (CheckpointError, OSError):
                weights[m.name] = None
        return (receipt(outcome, weights=weights, device=str(self.cache.device)),
                receipt_tensors(outcome))

    # ------------------------------------------------------------ activations

    def activations(self, state: dict[str, Any] | None, layer: str | None = None) -> ActivationView:
        """ReLU vs k-WTA activations at ``layer`` for the last attack's clean and adversarial
        inputs: heat maps, channel grid, active shares and flipped winners."""
        if not state or not state.get("adversarial"):
            raise ValueError("run an attack first: the maps compare its clean and adversarial inputs")
        if layer is not None and not isinstance(layer, str):
            raise ValueError(f"layer must be a layer name, got {layer!r}")
        layers = comparable_layers(state["arch"])
        info = layers[0] if not layer else next((l for l in layers if layer in (l.name, l.label)), None)
        if info is None:
            raise ValueError(f"unknown layer {layer!r} for {state['arch']}; choose from "
                             f"{', '.join(l.name for l in layers)}")
        maps: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        stats = []
        clean = state["clean"].unsqueeze(0)
        models, _ = self._loaded(state["adversarial"])
        for name, model in models.items():
            adv = state["adversarial"][name]
            with deadline(self.limits.time_limit_s):
                out = capture_activations(model, torch.cat([clean, adv.unsqueeze(0)]), [info.name])
            a_clean, a_adv = out[info.name][0], out[info.name][1]
            maps[name] = (a_clean, a_adv)
            stats.append({
                "model": name,
                "active_clean": round(active_share(a_clean), 4),
                "active_adversarial": round(active_share(a_adv), 4),
                "flipped": round(flipped_share(a_clean, a_adv), 4),
            })
        return ActivationView(info, stats, maps)

    # ------------------------------------------------------------ audit

    def _audit_models(self, arch: str, names: Sequence[str], images: torch.Tensor,
                      labels: dict[str, torch.Tensor], attack: str, preset: str,
                      params: dict[str, Any], seed: int) -> AuditOutcome:

        relu = f"{arch}-relu"
        audits, errors = [], {}
        start = time.monotonic()
        twin = None
        try:
            twin = self.cache.get(relu)
        except CheckpointError:
            pass
        with deadline(self.limits.time_limit_s):
            models, failed = self._loaded(names)
            errors.update(failed)
            for name, model in models.items():
                self._check_time(start, f"auditing {name}")
                device = self.cache.device
                x, y = images.to(device), labels[name].to(device)
                with torch.no_grad():
                    keep = model(x).argmax(1) == y  # an image it gets wrong proves nothing
                if not bool(keep.any()):
                    errors[name] = ("misclassifies the image already: nothing to audit"
                                    if len(y) == 1 else "misclassifies every image: nothing to audit")
                    continue
                audits.append(audit(
                    model, x[keep], y[keep], attack=attack,
                    preset=preset, eps=params.get("eps"), seed=seed, name=name,
                    params={k: v for k, v in params.items() if k not in ("eps", "seed")},
                    twin=None if name == relu else twin, twin_name=relu))
        return AuditOutcome(audits, errors, int(images.shape[0]), time.monotonic() - start)

    def audit_last(self, state: dict[str, Any] | None) -> AuditOutcome:
        """The gradient-masking audit of the session's last attack, on its image, for each
        of its models (the ReLU model of the architecture is the transfer twin)."""
        if not state or not state.get("adversarial"):
            raise ValueError("run an attack first: the audit checks its result")
        if _spec(state["attack"]).targeted == "required":
            raise ValueError(f"{state['attack']} is targeted; the audit checks untargeted "
                             "attacks (run PGD, APGD, DeepFool, ...)")
        names = list(state["adversarial"])
        labels = {n: torch.tensor([state["labels"][n]]) for n in names}
        params = dict(state["params"])
        return self._audit_models(state["arch"], names, state["clean"].unsqueeze(0), labels,
                                  state["attack"], state["preset"], params, params.get("seed", 0))

    def _untargeted_sample(self, arch: str, variants: Sequence[str], attack: str, preset: str,
                           n: Any, seed: Any, what: str) -> tuple[list[str], Any, int]:
        """Checked model names, ``n`` seeded class-balanced test images and the seed, for
        the audit and the transfer matrix (untargeted attacks only)."""

        names = model_names(arch, variants)
        if _check_attack(attack, preset).targeted == "required":
            raise ValueError(f"{attack} is targeted; {what} uses untargeted attacks")
        n = _int(n, "number of images", 1, self.limits.max_sweep_images)
        seed = _int(seed, "seed", 0, 2**31 - 1)
        try:
            split = self._test_split()
        except Exception as e:  # noqa: BLE001 - the reason goes to the user
            raise ValueError(f"{what} needs CIFAR-10 test images ({e})") from None
        sample, _ = evaluation_sample(split, min(n, len(split.labels)), seed)
        return names, sample, seed

    def audit_images(self, *, arch: str, variants: Sequence[str], attack: str, preset: str,
                     eps_255: float, n: int, seed: int = 0) -> AuditOutcome:
        """The audit on ``n`` seeded class-balanced test images (each model's correctly
        classified ones), attack and preset as chosen."""
        names, sample, seed = self._untargeted_sample(arch, variants, attack, preset, n, seed,
                                                      "the audit")
        images = sample.images.float() / 255
        labels = {name: sample.labels for name in names}
        return self._audit_models(_arch(arch), names, images, labels, attack, preset,
                                  {"eps": _eps(eps_255)}, seed)

    # ------------------------------------------------------------ winner-flip atlas

    def atlas(self, state: dict[str, Any] | None) -> dict[str, Any]:
        """Layers x attack steps: the share of the clean image's k-WTA winners (ReLU: active
        units) switched off at each iterate of the last attack, under its true-class
        probability. The attack is run again with the click's settings and seed (the same
        result), recording its iterates; attacks from other libraries give their start
        and end only."""

        if not state or not state.get("adversarial"):
            raise ValueError("run an attack first: the atlas follows its steps")
        layers = [info.name for info in comparable_layers(state["arch"])]
        device = self.cache.device
        x = state["clean"].unsqueeze(0).to(device)
        params = dict(state["params"])
        eps, seed = params.pop("eps"), params.pop("seed", 0)
        out: dict[str, Any] = {}
        with deadline(self.limits.time_limit_s):
            for name, model in self._loaded(state["adversarial"])[0].items():
                y = torch.tensor([state["labels"][name]], device=device)
                kwargs = dict(eps=eps, preset=state["preset"], seed=seed, **params)
                if state.get("target") is not None:
                    kwargs["target"] = torch.tensor([state["target"]], device=device)
                with recording_iterates() as iterates:
                    result = run_attack(state["attack"], model, x, y, **kwargs)
                path = torch.cat(iterates) if iterates else torch.cat([x, result.adversarial])
                acts = capture_activations(model, torch.cat([x, path]), layers)
                shares = [[flipped_share(acts[l][0], acts[l][1 + t]) for l in layers]
                          for t in range(len(path))]
                probs = result.true_prob[:, 0].tolist() if iterates else \
                    [float(v) for v in result.true_prob[[0, -1], 0]]
                out[name] = {"layers": layers, "shares": shares, "true_prob": probs,
                             "per_step": bool(iterates)}
        if not out:
            raise ValueError("none of the attacked models can be loaded now")
        return out

    # ------------------------------------------------------------ landscape

    def landscape(self, state: dict[str, Any] | None, *, radius_255: float | None = None,
                  points: int = 41, plane_points: int = 21) -> LandscapeOutcome:
        """Loss-landscape slices around the last attack's image, for each of its models:
        lines along the gradient sign, a random and the attack's direction (``points``
        each), and the gradient sign x random plane (``plane_points`` squared); the
        radius defaults to twice the attack's eps."""

        if not state or not state.get("adversarial"):
            raise ValueError("run an attack first: the slices pass through its image")
        eps = float(state["params"]["eps"])
        radius = _finite(radius_255, "radius") / 255 if radius_255 else 2 * eps
        if not 0 < radius <= 1:
            raise ValueError(f"radius must lie in (0, 255] (1/255 units), got {radius_255!r}")
        points = _int(points, "points", 3, 201)
        plane_points = _int(plane_points, "plane points", 3, 61)
        device = self.cache.device
        image = state["clean"].to(device)
        lines, planes = {}, {}
        with deadline(self.limits.time_limit_s):
            for name, model in self._loaded(state["adversarial"])[0].items():
                adv = state["adversarial"][name]
                label = int(state["labels"][name])
                dirs = directions(model, image, label, seed=int(state["params"].get("seed", 0)),
                                  adversarial=adv.to(device))
                lines[name] = {d: line_slice(model, image, label, v, radius=radius, points=points)
                               for d, v in dirs.items()}
                planes[name] = plane_slice(model, image, label, dirs["gradient sign"],
                                           dirs["random"], radius=radius, points=plane_points).cpu()
        if not lines:
            raise ValueError("none of the attacked models can be loaded now")
        return LandscapeOutcome(lines, planes, radius)

    # ------------------------------------------------------------ transfer

    def _loaded(self, names: Iterable[str]) -> tuple[dict[str, Any], dict[str, str]]:
        """The models of ``names`` that load, in order, and the message of each that does
        not: every handler of several models loads them here."""
        models, errors = {}, {}
        for name in names:
            try:
                models[name] = self.cache.get(name)
            except CheckpointError as e:
                errors[name] = str(e)
        return models, errors

    def transfer_last(self, state: dict[str, Any] | None) -> tuple[Any, dict[str, str]]:
        """The last attack's examples (and BPDA ones for its k-WTA models) tried on each of
        its models. The label is the true class when it was given, else the first model's
        own prediction on the clean image (so every model is judged against one label)."""

        if not state or not state.get("adversarial"):
            raise ValueError("run an attack first: the matrix tries its examples on every model")
        models, errors = self._loaded(list(state["adversarial"]))
        if not models:
            raise ValueError("none of the attacked models can be loaded now")
        device = self.cache.device
        first = next(iter(models))
        label = torch.tensor([state["labels"][first]], device=device)
        adversarial = {n: state["adversarial"][n].unsqueeze(0).to(device) for n in models}
        params = state["params"]
        with deadline(self.limits.time_limit_s):
            matrix = transfer_matrix(models, state["clean"].unsqueeze(0).to(device), label,
                                     attack=state["attack"], preset=state["preset"],
                                     eps=params.get("eps"), seed=params.get("seed", 0),
                                     adversarial=adversarial)
        return matrix, errors

    def transfer_images(self, *, arch: str, variants: Sequence[str], attack: str, preset: str,
                        eps_255: float, n: int, seed: int = 0) -> tuple[Any, dict[str, str]]:
        """The transfer matrix over ``n`` seeded class-balanced test images."""

        names, sample, seed = self._untargeted_sample(arch, variants, attack, preset, n, seed,
                                                      "the transfer matrix")
        models, errors = self._loaded(names)
        if not models:
            raise ValueError("none of the chosen models can be loaded: " + "; ".join(errors.values()))
        device = self.cache.device
        with deadline(self.limits.time_limit_s):
            matrix = transfer_matrix(models, (sample.images.float() / 255).to(device),
                                     sample.labels.to(device), attack=attack, preset=preset,
                                     eps=_eps(eps_255), seed=seed)
        return matrix, errors

    # ------------------------------------------------------------ sweep

    def sweep(
        self,
        *,
        arch: str,
        variants: Sequence[str],
        attack: str,
        preset: str = "interactive",
        eps_255: str | Sequence[float] = "0, 2, 4, 8",
        n: int = 20,
        seed: int = 0,
        progress: Progress = _no_progress,
    ) -> SweepOutcome:
        """Accuracy vs epsilon on ``n`` seeded class-balanced test images, for each model.

        The evaluation's own path (``evaluate.robust_accuracy`` on the images of
        ``data.evaluation_sample``, each seeded from (seed, its test index)), so the sweep
        and the evaluation tables agree image by image. Epsilon 0 is clean accuracy; an
        image is robust when it is classified correctly and the attack fails on it; a
        targeted attack (VGA) is scored over every wrong target, as the report scored it.
        """

        names = model_names(arch, variants)
        _check_attack(attack, preset)
        eps_list = parse_eps_list(eps_255, self.limits.max_sweep_points)
        n = _int(n, "number of images", 1, self.limits.max_sweep_images)
        seed = _int(seed, "seed", 0, 2**31 - 1)
        try:
            subset, index = evaluation_sample(self._test_split(), n, seed)
        except DataNotFoundError as e:
            raise ValueError(f"the sweep needs CIFAR-10 test images: {e}") from None
        device = self.cache.device
        start = time.monotonic()
        accuracy: dict[str, list[float]] = {}
        models, errors = self._loaded(names)
        units, done = len(models) * len(eps_list), 0
        with deadline(self.limits.time_limit_s):
            for name, model in models.items():
                accuracy[name] = []
                for eps in eps_list:
                    self._check_time(start, f"{name} at epsilon {eps:g}/255")
                    progress(done / units, f"{name}, epsilon {eps:g}/255")
                    if eps == 0:
                        acc = clean_accuracy(model, subset, batch_size=self.limits.sweep_batch,
                                             device=device)
                    else:
                        def tick(_done: int, _total: int, name: str = name, eps: float = eps) -> None:
                            self._check_time(start, f"{name} at epsilon {eps:g}/255")

                        acc = robust_accuracy(model, subset.images, subset.labels, attack,
                                              eps=eps / 255, preset=preset, seed=seed,
                                              batch_size=self.limits.sweep_batch, device=device,
                                              progress=tick, indices=index)["robust_acc"]
                    accuracy[name].append(acc)
                    done += 1
        progress(1.0, "done")
        seconds = time.monotonic() - start
        return SweepOutcome(eps_list, accuracy, errors, n, seed, attack, preset, seconds)
