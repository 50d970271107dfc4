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
import threading
import time
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from ..attacks import run_attack
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
from ..evaluation.accuracy import clean_accuracy, robust_accuracy
from ..evaluation.audit import audit
from ..evaluation.landscape import directions, line_slice, plane_slice
from ..evaluation.transfer import transfer_matrix
from ..models.activations import (
    LayerInfo,
    active_share,
    capture_activations,
    comparable_layers,
    flipped_share,
)
from ..models.architectures import CIFAR10_CLASSES
from ..models.checkpoints import CheckpointError, find_checkpoint, weights_sha256
from ..settings import Settings, get_settings
from .inputs import (
    MAX_EPS_255,
    Limits,
    Progress,
    attack_spec,
    bounded_int,
    check_arch,
    check_attack,
    class_index,
    eps_from_255,
    finite,
    model_names,
    no_progress,
    parse_eps_list,
)
from .model_cache import ModelCache, ModelStatus, deadline
from .outcomes import (
    ActivationView,
    AttackOutcome,
    AuditOutcome,
    GalleryData,
    LandscapeOutcome,
    ModelAttack,
    SweepOutcome,
    quantise_8bit,
)
from .receipts import receipt, receipt_tensors

__all__ = ["Explorer"]


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
        i = bounded_int(index, "test image index", 0, 10**6)
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
        i = bounded_int(index, "gallery index", 0, len(gallery.images) - 1)
        return gallery.images[i], CIFAR10_CLASSES[gallery.labels[i]]

    # ------------------------------------------------------------ models

    def model_status(self) -> list[ModelStatus]:
        """Where each of the six models stands (loaded, local, remote, failed), loading none."""
        return self.cache.status()

    def layers(self, arch: str) -> list[LayerInfo]:
        """The layers offered for activation maps for ``arch``."""
        return list(comparable_layers(check_arch(arch)))

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
        progress: Progress = no_progress,
    ) -> AttackOutcome:
        """Attack one image against each selected model; a model that fails to load is
        reported in its slot and the others still run."""
        names = model_names(arch, variants)
        spec = check_attack(attack, preset)
        eps = eps_from_255(eps_255)
        label = class_index(true_class, "true class")
        target = class_index(target_class, "target class")
        if target is not None and target == label:
            raise ValueError("the target class is the true class: pick another target")
        seed = bounded_int(seed, "seed", 0, 2**31 - 1)
        if target is not None and spec.targeted == "no":
            raise ValueError(f"{attack} is untargeted: leave the target class empty")
        if target is None and spec.targeted == "required":
            raise ValueError(f"{attack} is a targeted attack: pick a target class")
        overrides = self._overrides(spec.params, steps, step_size_255)
        prepared = self.prepare(image)
        outcome = AttackOutcome(prepared, check_arch(arch), attack, preset,
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
            out["steps"] = bounded_int(steps, "steps", 1, self.limits.max_steps)
        if step_size_255 not in (None, "") and "step_size" in params:
            size = finite(step_size_255, "step size")
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
        if attack_spec(state["attack"]).targeted == "required":
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
        if check_attack(attack, preset).targeted == "required":
            raise ValueError(f"{attack} is targeted; {what} uses untargeted attacks")
        n = bounded_int(n, "number of images", 1, self.limits.max_sweep_images)
        seed = bounded_int(seed, "seed", 0, 2**31 - 1)
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
        return self._audit_models(check_arch(arch), names, images, labels, attack, preset,
                                  {"eps": eps_from_255(eps_255)}, seed)

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
        radius = finite(radius_255, "radius") / 255 if radius_255 else 2 * eps
        if not 0 < radius <= 1:
            raise ValueError(f"radius must lie in (0, 255] (1/255 units), got {radius_255!r}")
        points = bounded_int(points, "points", 3, 201)
        plane_points = bounded_int(plane_points, "plane points", 3, 61)
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
                                     eps=eps_from_255(eps_255), seed=seed)
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
        progress: Progress = no_progress,
    ) -> SweepOutcome:
        """Accuracy vs epsilon on ``n`` seeded class-balanced test images, for each model.

        The evaluation's own path (``evaluate.robust_accuracy`` on the images of
        ``data.evaluation_sample``, each seeded from (seed, its test index)), so the sweep
        and the evaluation tables agree image by image. Epsilon 0 is clean accuracy; an
        image is robust when it is classified correctly and the attack fails on it; a
        targeted attack (VGA) is scored over every wrong target, as the report scored it.
        """

        names = model_names(arch, variants)
        check_attack(attack, preset)
        eps_list = parse_eps_list(eps_255, self.limits.max_sweep_points)
        n = bounded_int(n, "number of images", 1, self.limits.max_sweep_images)
        seed = bounded_int(seed, "seed", 0, 2**31 - 1)
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
