"""The Gradio app: ``create_demo(...) -> gr.Blocks``, a layout over ``Explorer``'s handlers.

Handlers here only translate between components and ``kwta_demo.app.explorer`` (which does
the validating and the work, and is tested without Gradio). Images go out as PNG: the
default WebP would destroy an adversarial perturbation. The real tensors stay on the
server (``gr.State``); the browser only ever gets pictures of them.

The API endpoints take their inputs unprocessed (``preprocess=False``): the HTTP API can
be called without the UI, so every value is checked once, in ``explorer``, with a message
that names the input, and an upload is opened only by ``uploads`` (which caps its pixel
count before decoding) rather than first by Gradio's image component.

API endpoints (stable names, documented in docs/api.md): ``/prepare_image``, ``/attack``,
``/activations``, ``/sweep``, ``/attack_controls``, ``/model_status``, ``/reproduction``.
"""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import gradio as gr

from ..models.architectures import CIFAR10_CLASSES
from ..reporting.cells import RESULTS_DIR
from ..reporting.claims import claims
from ..reporting.tables import reproduction_markdown, results_files
from . import viz
from .explorer import Explorer
from .inputs import ARCH_LABELS, UNKNOWN_LABEL, VARIANTS, attack_controls, attack_names
from .model_cache import ModelStatus
from .outcomes import ActivationView, AttackOutcome
from .replay import parse_replay, replay_query

__all__ = ["create_demo", "model_status_markdown", "CSS", "LAUNCH_KWARGS", "ABOUT"]

# 32x32 pictures: scale them up to their box, without smoothing, so pixels stay visible.
CSS = """
.pixelated img, #input-image img {
  width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated;
}
#gallery img { image-rendering: pixelated; }
.slot-title h3 { margin: 0; }
"""
# Passed to launch() by app.py and the tests (Gradio 6 takes css there, not in Blocks).
# The results folder holds only the published results files, which the Reproduction tab
# offers for download.
LAUNCH_KWARGS: dict[str, Any] = {"css": CSS, "max_file_size": "25mb", "show_error": True,
                                 "allowed_paths": [str(RESULTS_DIR)]}
QUEUE_SIZE = 64  # requests that may wait; beyond it Gradio answers at once that it is busy
# Uploads (up to 25 MB each) and result PNGs pile up in Gradio's cache, and every API
# session keeps its last attack's tensors: both expire, so a public app's disk and memory
# stay bounded. Cache: checked every 10 minutes, files older than an hour deleted.
DELETE_CACHE = (600, 3600)
STATE_TTL_S = 3600

UNKNOWN = "unknown"  # the true-class value for "not known"; shown as UNKNOWN_LABEL
NO_TARGET = "none"
USER_ERRORS = (ValueError, TimeoutError)
SLOT_LABELS = {suffix: label for label, suffix in VARIANTS.items()}  # one column per variant

ABOUT = """
## k-Winners-Take-All, in a few paragraphs

**The method.** Xiao, Zhong and Zheng (ICLR 2020) replace every ReLU of a network with
*k-Winners-Take-All*: for each sample, a layer keeps its k = γ·N largest activations
and sets all others to zero. γ is the share of winners (here 0.2 and 0.1). The function
is discontinuous: a small change of the input can change *which* units win, and with it
the network's gradient. The authors argue that these dense discontinuities make
gradient-based attacks fail, while training, done with a gradual γ schedule, still works.

**What the demo shows.** The *Attack* tab runs the same attack on ReLU and k-WTA versions
of one architecture. Against ReLU the true-class probability falls smoothly along the
attack; against k-WTA it jumps about: after a few steps the attacker's gradient points
somewhere useless. This is *gradient masking*. It makes attacks that trust the local
gradient look weak, but the adversarial examples are still there: attacks that estimate
the gradient from samples, or differentiate through a smooth stand-in for k-WTA (BPDA),
find them again (Tramèr et al., NeurIPS 2020). The activation maps show how few units
are active under k-WTA and how many of the winners an attack flips.

**The reproduction.** Golod & Usluel (2020) reproduced the paper's CIFAR-10 results for
ResNet18 and AlexNet. The *Reproduction* tab sets their tables beside ours. Its key
finding: the report ran PGD with a *relative* step of 0.003 (§3.3), 40 steps that together
move at most 0.12 ε; its own notebook, with the absolute step 0.003 a commit earlier,
recorded 0–0.94% robust accuracy for every model. The robustness in the report's tables
came with that step change, not with k-WTA.

**The data.** Our models were trained and are evaluated on a JPEG re-encoding of CIFAR-10
(quality 75, chroma subsampling), the only copy available where they were built: expect
clean accuracy a point or two below figures on the canonical data. An uploaded image is
shown as the 32×32 RGB picture the models see, with a note on how it was resized.

### Papers and code
- C. Xiao, P. Zhong, C. Zheng. *Enhancing Adversarial Defense by k-Winners-Take-All*. ICLR 2020.
  [arXiv:1905.10510](https://arxiv.org/abs/1905.10510),
  [the authors' code](https://github.com/a554b554/kWTA-Activation)
- F. Tramèr, N. Carlini, W. Brendel, A. Madry. *On Adaptive Attacks to Adversarial Example
  Defenses*. NeurIPS 2020. [arXiv:2002.08347](https://arxiv.org/abs/2002.08347)
- A. Athalye, N. Carlini, D. Wagner. *Obfuscated Gradients Give a False Sense of Security*.
  ICML 2018. [arXiv:1802.00420](https://arxiv.org/abs/1802.00420)
- Golod & Usluel (2020), the reproduction report of the k-WTA paper.
"""


def _user_error(e: Exception) -> gr.Error:
    return gr.Error(str(e), print_exception=False)


def _upload_path(payload: Any) -> str | None:
    """The server-side file of an unprocessed image input (Gradio has already checked that
    it lies in its upload cache), or None for no image."""
    if payload is None:
        return None
    if isinstance(payload, dict) and isinstance(payload.get("path"), str) and payload["path"]:
        return payload["path"]
    raise ValueError("image: expected an uploaded image file (with gradio_client, pass "
                     f"handle_file(path)), got a {type(payload).__name__} without a file path")


def png_caption(fooled: bool, png_fools: bool | None, kwta: bool) -> str:
    """What the caption says of the 8-bit PNG shown (the attack's image rounded to whole grey
    levels inside the ε-ball, run through the model again), beside the attack's verdict."""
    if png_fools is None:
        return "The 8-bit PNG shown was not run through the model again."
    if fooled and png_fools:
        return "The 8-bit PNG shown (rounded inside the ε-ball) fools it too."
    if fooled:
        why = " (a k-WTA model's winners can change on one grey level)" if kwta else ""
        return ("The 8-bit PNG shown (rounded inside the ε-ball) does **not** fool it: rounding "
                f"to whole grey levels undid the attack{why}.")
    if png_fools:
        return "The 8-bit PNG shown (rounded inside the ε-ball) does fool it, where the attack did not."
    return "The 8-bit PNG shown (rounded inside the ε-ball) does not fool it either."


def _slot_outputs(outcome: AttackOutcome, suffix: str) -> list[Any]:
    """Adversarial image, perturbation image, bar chart and caption for one variant slot."""
    name = f"{outcome.arch}-{suffix}"
    model = next((m for m in outcome.models if m.name == name), None)
    if model is None:
        return [None, None, None, "_not selected_"]
    if model.error is not None:
        return [None, None, viz.message_figure("not available"), f"**Not available.** {model.error}"]
    pert, scale = viz.perturbation_array(model.adversarial - outcome.image.tensor)
    s = model.summary()
    verdict = "**fooled**" if s["success"] else "**not fooled**"
    if int(model.result.clean_pred[0]) != model.label:
        verdict += " (already wrong on the clean image)"
    amp = (f"x{0.5 / scale:.1f} (gray = 0, white/black = ±{scale * 255:.2f}/255)" if scale
           else "not at all: the perturbation is zero")
    text = (
        f"{verdict}: {s['clean_pred']} ({s['clean_prob']:.0%}) → {s['adv_pred']} "
        f"({s['adv_prob']:.0%}); label attacked: {s['label']}.  \n"
        f"L∞ = {s['linf_255']:.2f}/255, L2 = {s['l2']:.3f}.  \nPerturbation amplified {amp}.  \n"
        + png_caption(bool(s["success"]), model.fools_8bit, "kwta" in suffix)
    )
    bars = viz.prediction_bars(model.clean_probs, model.adv_probs, true_label=outcome.label,
                               target=outcome.target, title=name)
    return [viz.image_array(model.adv_8bit), pert, bars, text]


def _summary(outcome: AttackOutcome) -> tuple[str, dict[str, Any]]:
    eps_255 = outcome.params["eps"] * 255
    label = (CIFAR10_CLASSES[outcome.label] if outcome.label is not None
             else "unknown (each model's own clean prediction)")
    target = f", target {CIFAR10_CLASSES[outcome.target]}" if outcome.target is not None else ""
    text = (f"**{outcome.attack}** (preset `{outcome.preset}`), ε = {eps_255:.2f}/255{target}; "
            f"label: {label}; {len(outcome.models)} model(s) in {outcome.seconds:.1f} s.  \n"
            f"Input: {outcome.image.description}")
    data = {
        "attack": outcome.attack, "preset": outcome.preset, "eps_255": round(eps_255, 4),
        "true_class": None if outcome.label is None else CIFAR10_CLASSES[outcome.label],
        "target_class": None if outcome.target is None else CIFAR10_CLASSES[outcome.target],
        "input": outcome.image.description, "seconds": round(outcome.seconds, 3),
        "seed": outcome.params["seed"], "steps": outcome.params.get("steps"),
        "models": [m.summary() for m in outcome.models],
    }
    return text, data


def _traces(outcome: AttackOutcome):
    ok = outcome.ok()
    if not ok:
        return viz.message_figure("No model could run")
    per_step = all(m.result.params.get("per_step", True) for m in ok)
    title = "Along the attack" + ("" if per_step else " (this attack reports its start and end only)")
    return viz.attack_traces({m.name: m.result.true_prob[:, 0] for m in ok},
                             {m.name: m.result.losses[:, 0] for m in ok}, title=title)


def model_status_markdown(device: Any, statuses: list[ModelStatus]) -> str:
    """Which of the six models are loaded, available, missing or broken, in plain words."""
    lines = [f"**Models** (device: `{device}`)", ""]
    icon = {"loaded": "loaded", "local": "found, loads on first use",
            "remote": "missing locally", "failed": "FAILED"}
    for s in statuses:
        lines.append(f"- `{s.name}`: {icon[s.state]} ({s.detail})")
    missing = [s.name for s in statuses if s.state in ("remote", "failed")]
    if missing:
        lines += ["", f"Not available here yet: {', '.join(missing)}. "
                  "Models that are present keep working."]
    return "\n".join(lines)


def default_arch(statuses: list[ModelStatus]) -> str:
    """The architecture the page starts on: the first whose three models are all here
    (found locally or loaded), else the first."""
    present = {s.name for s in statuses if s.state in ("loaded", "local")}
    for arch in ARCH_LABELS.values():
        if all(f"{arch}-{v}" in present for v in VARIANTS.values()):
            return arch
    return next(iter(ARCH_LABELS.values()))


def _stats_markdown(view: ActivationView) -> str:
    lines = [f"Layer `{view.layer.label}`. Active = non-zero units (for k-WTA: the winners).", "",
             "| model | active, clean | active, adversarial | clean winners the attack switched off |",
             "|---|---|---|---|"]
    for s in view.stats:
        flipped = "n/a" if s["flipped"] != s["flipped"] else f"{s['flipped']:.1%}"
        lines.append(f"| {s['model']} | {s['active_clean']:.1%} | {s['active_adversarial']:.1%} | {flipped} |")
    return "\n".join(lines)


def _audit_markdown(out: Any) -> str:
    lines = [f"**Gradient-masking audit** ({out.images} image(s), each model audited on "
             f"those it classifies correctly; {out.seconds:.1f} s). The checks of Carlini et "
             "al. 2019: an unbounded PGD must succeed; more steps must not change the result; a "
             "gradient-free attack (Square) and examples from the ReLU twin must not beat the "
             "audited attack.", ""]
    for a in out.audits:
        lines.append(f"- **{a.model}** ({a.n} image(s), eps {a.eps:g}, seed {a.seed}): {a.verdict}")
    for name, why in out.errors.items():
        lines.append(f"- **{name}**: not audited ({why})")
    return "\n".join(lines)


AUDIT_HEADERS = ["model", "check", "flags a problem", "evidence"]
AUDIT_WIDTHS = ["15%", "27%", "10%", "48%"]
TRANSFER_HEADERS = ["examples crafted on", "tried on", "fooled share", "images", "95% interval"]


def _user_facing(handler: Callable[..., Any]) -> Callable[..., Any]:
    """A handler whose expected failures (bad input, a request past its time limit) reach
    the page as a clear message, not a traceback. Gradio reads the wrapped signature."""
    @functools.wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except USER_ERRORS as e:
            raise _user_error(e) from None

    return wrapper


class _Handlers:
    """Event handlers; their parameter names are the API's parameter names."""

    def __init__(self, explorer: Explorer) -> None:
        self.explorer = explorer

    def layer_choices(self, arch: str) -> list[tuple[str, str]]:
        return [(info.label, info.name) for info in self.explorer.layers(arch)]

    def gallery(self):
        g = self.explorer.gallery()
        note = "" if g.images else f"**No gallery images.** {g.message}"
        return list(zip(g.images, g.captions)), g.message, note

    @_user_facing
    def select_gallery(self, evt: gr.SelectData):
        image, cls = self.explorer.gallery_item(evt.index)
        test_index = self.explorer.gallery().indices[int(evt.index)]
        return image, cls, test_index

    def from_query(self, request: gr.Request):
        """A replay link (``?test=...&arch=...``) sets up the attack it describes."""
        query = dict(request.query_params) if request is not None else {}
        try:
            replay = parse_replay(query)
            if replay is None:
                return [gr.skip()] * 12 + [""]
            image, cls = self.explorer.test_image(replay["test"])
        except USER_ERRORS as e:
            return [gr.skip()] * 12 + [f"**This replay link cannot be used:** {e}"]
        return [image, replay["true_class"] or cls, replay["arch"], replay["variants"],
                replay["attack"], gr.Dropdown(value=replay["preset"]), replay["eps_255"],
                replay["steps"] or 0, replay["step_size_255"] or 0,
                replay["target_class"] or NO_TARGET, replay["seed"], replay["test"],
                f"Set up from a replay link: test image #{replay['test']}. Press **Run attack** "
                "to repeat the click."]

    @_user_facing
    def prepare_image(self, image):
        path = _upload_path(image)
        if path is None:
            return None, ""
        prepared = self.explorer.prepare(path)
        return prepared.to_uint8(), prepared.description

    @_user_facing
    def attack_controls(self, attack: str, preset: str):
        c = attack_controls(attack, preset)
        chosen = preset if preset in c.presets else c.presets[0]
        eps = gr.Slider(value=round(c.eps_255, 2)) if c.eps_255 is not None else gr.Slider()
        target = (gr.Dropdown(interactive=False, value=NO_TARGET) if c.targeted == "no"
                  else gr.Dropdown(interactive=True))
        return (gr.Dropdown(choices=c.presets, value=chosen), eps,
                gr.Number(value=0, visible=c.has_steps), gr.Number(value=0, visible=c.has_step_size),
                target, c.note)

    @_user_facing
    def sweep_presets(self, attack: str):
        c = attack_controls(attack)
        return gr.Dropdown(choices=c.presets, value=c.presets[0])

    def show_slots(self, variants: list[str]):
        return [gr.Column(visible=suffix in (variants or [])) for suffix in VARIANTS.values()]

    @_user_facing
    def attack(self, image, true_class: str, arch: str, variants: list[str], attack: str,
               preset: str, eps_255: float, steps: int, step_size_255: float,
               target_class: str, seed: int, picked: int | None = None,
               progress=gr.Progress()):
        outcome = self.explorer.attack(
            _upload_path(image), arch=arch, variants=variants, attack=attack, preset=preset,
            eps_255=eps_255, steps=steps or None, step_size_255=step_size_255 or None,
            true_class=None if true_class == UNKNOWN else true_class,
            target_class=None if target_class == NO_TARGET else target_class,
            seed=seed if seed is not None else 0,
            progress=lambda fraction, desc: progress(fraction, desc=desc),
        )
        outputs: list[Any] = []
        for suffix in VARIANTS.values():
            outputs += _slot_outputs(outcome, suffix)
        text, data = _summary(outcome)
        receipt, tensors = self.explorer.receipt(outcome)
        if picked is not None:
            receipt["image"]["test_index"] = int(picked)
            receipt["replay_query"] = replay_query(outcome, int(picked))
            text += (f"  \nReplay this click on any copy of the app: add "
                     f"`{receipt['replay_query']}` to its address.")
        folder = Path(tempfile.mkdtemp(prefix="kwta-receipt-"))
        stem = f"{outcome.arch}-{outcome.attack}-{outcome.preset}-{receipt['image']['sha256'][:12]}"
        (folder / f"{stem}.json").write_text(json.dumps(receipt, indent=1) + "\n")
        (folder / f"{stem}.safetensors").write_bytes(tensors)
        return [*outputs, _traces(outcome), text, data, outcome.state(),
                [str(folder / f"{stem}.json"), str(folder / f"{stem}.safetensors")]]

    @_user_facing
    def activations(self, state: dict | None, layer: str):
        if not state:
            return "Run an attack to compare activations.", None, None
        other_archs = [a for a in ARCH_LABELS.values() if a != state["arch"]]
        if any(layer == info.name for a in other_archs for info in self.explorer.layers(a)):
            layer = None  # the picker follows the architecture radio, changed since the attack
        view = self.explorer.activations(state, layer)
        return (_stats_markdown(view), viz.activation_heatmaps(view.maps, layer=view.layer.name),
                viz.channel_grid(view.maps, layer=view.layer.name))

    @_user_facing
    def audit(self, state: dict | None):
        out = self.explorer.audit_last(state)
        return _audit_markdown(out), out.rows()

    @_user_facing
    def audit_sweep(self, arch: str, variants: list[str], attack: str, preset: str,
                    eps_255: float, n: int, seed: int):
        out = self.explorer.audit_images(arch=arch, variants=variants, attack=attack,
                                         preset=preset, eps_255=eps_255, n=n,
                                         seed=seed if seed is not None else 0)
        return _audit_markdown(out), out.rows()

    @_user_facing
    def atlas(self, state: dict | None):
        return viz.atlas_figure(self.explorer.atlas(state))

    @_user_facing
    def landscape(self, state: dict | None):
        out = self.explorer.landscape(state)
        return viz.landscape_figure(out.lines, out.planes, out.radius)

    @_user_facing
    def transfer(self, state: dict | None):
        matrix, errors = self.explorer.transfer_last(state)
        note = ("One image: each cell is 0% or 100% (n/a where the model gets the image wrong). "
                "Rows marked BPDA attack a k-WTA model through a smooth stand-in.")
        if errors:
            note += "  \n" + "  \n".join(f"**{k} not available:** {v}" for k, v in errors.items())
        return viz.transfer_heatmap(matrix), note

    @_user_facing
    def transfer_sweep(self, arch: str, variants: list[str], attack: str, preset: str,
                       eps_255: float, n: int, seed: int):
        matrix, _errors = self.explorer.transfer_images(
            arch=arch, variants=variants, attack=attack, preset=preset, eps_255=eps_255,
            n=n, seed=seed if seed is not None else 0)
        return viz.transfer_heatmap(matrix), matrix.rows()

    @_user_facing
    def sweep(self, arch: str, variants: list[str], attack: str, preset: str, eps_255: str,
              n: int, seed: int, progress=gr.Progress()):
        out = self.explorer.sweep(
            arch=arch, variants=variants, attack=attack, preset=preset, eps_255=eps_255,
            n=n, seed=seed if seed is not None else 0,
            progress=lambda fraction, desc: progress(fraction, desc=desc),
        )
        note = f"{out.n} images (seed {out.seed}), {out.attack} `{out.preset}`, {out.seconds:.1f} s."
        if out.errors:
            note += "  \n" + "  \n".join(f"**{k} not available:** {v}" for k, v in out.errors.items())
        figure = viz.robustness_curves(out.eps_255, out.accuracy, n=out.n,
                                       title=f"Accuracy under {out.attack} ({out.preset})")
        return figure, out.rows(), note

    def model_status(self) -> str:
        return model_status_markdown(self.explorer.cache.device, self.explorer.model_status())

    def reproduction(self) -> str:
        return reproduction_markdown(checkpoint_dir=self.explorer.settings.checkpoint_dir)

    def reproduction_chart(self) -> Any:
        return viz.claims_chart(claims())

    def results_files(self) -> list[str]:
        return [str(p) for p in results_files()]


def create_demo(explorer: Explorer | None = None, *, concurrency: int = 1,
                queue_size: int = QUEUE_SIZE) -> gr.Blocks:
    """Build the app over ``explorer`` (default: settings from the environment).

    ``concurrency`` bounds the attacks and sweeps that run at once, ``queue_size`` the
    requests that may wait (beyond it, a request is refused at once: the page says "This
    application is currently busy", ``gradio_client`` raises ``QueueError("Queue is
    full! Please try again.")``). Each request is bounded by ``explorer.limits`` (steps,
    images, seconds).
    """
    if not (isinstance(concurrency, int) and concurrency >= 1):
        raise ValueError(f"concurrency must be a whole number >= 1, got {concurrency!r}")
    if not (isinstance(queue_size, int) and queue_size >= 1):
        raise ValueError(f"queue size must be a whole number >= 1, got {queue_size!r}")
    explorer = explorer or Explorer()
    h = _Handlers(explorer)
    explorer.start_loading_gallery()  # serve at once; the page fills the gallery when it is ready
    attacks = attack_names()
    default_attack = "pgd" if "pgd" in attacks else attacks[0]
    controls = attack_controls(default_attack, "interactive")
    default_preset = "interactive" if "interactive" in controls.presets else controls.presets[0]
    arch_choices = [(label, value) for label, value in ARCH_LABELS.items()]
    start_arch = default_arch(explorer.model_status())
    variant_choices = [(label, suffix) for label, suffix in VARIANTS.items()]
    all_variants = list(VARIANTS.values())
    o = SimpleNamespace(limits=explorer.limits, attacks=attacks, default_attack=default_attack,
                        controls=controls, default_preset=default_preset,
                        arch_choices=arch_choices, start_arch=start_arch,
                        variant_choices=variant_choices, all_variants=all_variants)
    statuses = explorer.cache.status()

    with gr.Blocks(title="k-WTA explorer", delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(
            "# k-Winners-Take-All: an adversarial-defence explorer\n"
            "Attack ReLU and k-WTA networks on CIFAR-10 side by side and watch gradient masking "
            "at work. Pick an image, choose the models and an attack, press **Run attack**."
        )
        with gr.Accordion("Models and data", open=not all(s.state in ("local", "loaded") for s in statuses)):
            status_md = gr.Markdown(h.model_status(), label="Model status",
                                    elem_id="model-status")
            data_status = gr.Markdown("Loading the CIFAR-10 test images...", label="Data status",
                                      elem_id="data-status")
        state = gr.State(None, time_to_live=STATE_TTL_S)
        picked = gr.State(None)  # the test-split index of the gallery image in the input, if any

        with gr.Tabs():
            with gr.Tab("Attack", id="attack"):
                t = _attack_tab(h, o)
            with gr.Tab("Robustness sweep", id="sweep", elem_id="tab-sweep"):
                sw = _sweep_tab(o)
            with gr.Tab("Reproduction", id="reproduction", elem_id="tab-reproduction"):
                r = _reproduction_tab(h)
            with gr.Tab("About", id="about", elem_id="tab-about"):
                gr.Markdown(ABOUT)
        _wire(demo, h, t, sw, r, SimpleNamespace(state=state, picked=picked, status_md=status_md,
                                                  data_status=data_status))

    demo.queue(default_concurrency_limit=concurrency, max_size=queue_size)
    return demo


def _attack_tab(h: "_Handlers", o: SimpleNamespace) -> SimpleNamespace:
    """The Attack tab's components: the input, the models and attack, one column per
    model, and the panels that explain a click (activations, audit, atlas, landscape,
    transfer)."""
    with gr.Row(elem_id="attack-inputs"):
        with gr.Column(scale=3):
            gallery = gr.Gallery(
                format="png", columns=10, height=300, allow_preview=False,
                label="CIFAR-10 test images (click one)", elem_id="gallery",
                interactive=False,
            )
            gallery_note = gr.Markdown(elem_id="gallery-note")
        with gr.Column(scale=2):
            with gr.Row():
                image_in = gr.Image(
                    type="filepath", image_mode=None, format="png",
                    sources=["upload", "clipboard"], height=200,
                    label="Input image (from the gallery, or upload any image)",
                    elem_id="input-image",
                )
                preview = gr.Image(format="png", interactive=False, height=200,
                                   label="What the models see (32x32 RGB)",
                                   elem_classes=["pixelated"], elem_id="model-input")
            preview_note = gr.Markdown(label="How the input was made", elem_id="preview-note")
            true_class = gr.Dropdown([(UNKNOWN_LABEL, UNKNOWN), *[(c, c) for c in CIFAR10_CLASSES]],
                                     value=UNKNOWN, label="True class", elem_id="true-class")
    with gr.Row(elem_id="attack-models"):
        arch = gr.Radio(o.arch_choices, value=o.start_arch, label="Architecture", elem_id="arch")
        variants = gr.CheckboxGroup(o.variant_choices, value=o.all_variants,
                                    label="Models to compare", elem_id="variants")
    with gr.Row():
        attack = gr.Dropdown(o.attacks, value=o.default_attack, label="Attack", elem_id="attack")
        # A dropdown that takes any value: its choices follow the attack, and
        # the handler checks the preset against the attack actually asked for.
        preset = gr.Dropdown(o.controls.presets, value=o.default_preset, label="Preset",
                             allow_custom_value=True, elem_id="preset")
        eps = gr.Slider(0.5, 32, value=8, step=0.1, label="ε (L∞, in 1/255)", elem_id="eps")
    with gr.Row():
        steps = gr.Number(0, precision=0, minimum=0, maximum=o.limits.max_steps,
                          label="Steps (0: the preset's)", visible=o.controls.has_steps)
        step_size = gr.Number(0, minimum=0, maximum=64,
                              label="Step size in 1/255 (0: the preset's)",
                              visible=o.controls.has_step_size)
        target = gr.Dropdown([NO_TARGET, *CIFAR10_CLASSES], value=NO_TARGET,
                             label="Target class", interactive=o.controls.targeted != "no")
        seed = gr.Number(0, precision=0, minimum=0, label="Seed")
    preset_note = gr.Markdown(o.controls.note, label="About this attack")
    run = gr.Button("Run attack", variant="primary", elem_id="run-attack")
    summary = gr.Markdown(label="Summary", elem_id="attack-summary")
    slots: list[gr.components.Component] = []
    slot_columns = []
    with gr.Row(elem_id="attack-results"):
        for suffix, title in SLOT_LABELS.items():
            with gr.Column(min_width=260, elem_id=f"slot-{suffix}") as col:
                gr.Markdown(f"### {title}", elem_classes=["slot-title"])
                with gr.Row():
                    adv_img = gr.Image(format="png", interactive=False, height=150,
                                       label=f"{title}: adversarial (32x32 PNG)",
                                       elem_classes=["pixelated"])
                    pert_img = gr.Image(format="png", interactive=False, height=150,
                                        label=f"{title}: perturbation (amplified)",
                                        elem_classes=["pixelated"])
                bars = gr.Plot(label=f"{title}: clean vs adversarial")
                caption = gr.Markdown(label=f"{title}: result")
            slots += [adv_img, pert_img, bars, caption]
            slot_columns.append(col)
    trace = gr.Plot(label="Along the attack", elem_id="trace-plot")
    with gr.Accordion("Numbers (JSON)", open=False):
        numbers = gr.JSON(label="Attack numbers")
    receipt_files = gr.File(label="Receipt: the click as JSON (image, weights SHA-256, "
                            "parameters, seed, versions, outcome) and its tensors "
                            "(safetensors)", file_count="multiple", interactive=False,
                            elem_id="receipt")
    return SimpleNamespace(gallery=gallery, gallery_note=gallery_note, image_in=image_in,
                           preview=preview, preview_note=preview_note, true_class=true_class,
                           arch=arch, variants=variants, attack=attack, preset=preset, eps=eps,
                           steps=steps, step_size=step_size, target=target, seed=seed,
                           preset_note=preset_note, run=run, summary=summary, slots=slots,
                           slot_columns=slot_columns, trace=trace, numbers=numbers,
                           receipt_files=receipt_files,
                           **vars(_click_panels(h, o)))


def _click_panels(h: "_Handlers", o: SimpleNamespace) -> SimpleNamespace:
    """The panels under a click's results that explain it: the activation maps, the
    gradient-masking audit, the winner-flip atlas, the loss landscape, the transfer
    matrix."""
    with gr.Accordion("Sparse activation maps", open=True, elem_id="activation-maps"):
        layer_choices = h.layer_choices(o.start_arch)
        # Custom values: the choices change with the architecture, and the
        # handler checks the name against the attacked architecture's layers.
        layer = gr.Dropdown(layer_choices, value=layer_choices[0][1], label="Layer",
                            allow_custom_value=True, elem_id="layer")
        act_stats = gr.Markdown("Run an attack to compare activations.",
                                label="Activation statistics", elem_id="activation-stats")
        heatmaps = gr.Plot(label="Channel-summed activation", elem_id="heatmaps")
        grid = gr.Plot(label="Channel grid", elem_id="channel-grid")
    with gr.Accordion("Is this robustness real? Gradient-masking audit", open=True,
                      elem_id="audit"):
        audit_run = gr.Button("Audit the last attack", elem_id="run-audit")
        audit_md = gr.Markdown("Run an attack, then audit it: an unbounded PGD, more "
                               "steps, a gradient-free attack and examples from the "
                               "ReLU twin are set against its result.",
                               elem_id="audit-verdict")
        audit_table = gr.Dataframe(headers=AUDIT_HEADERS, column_widths=AUDIT_WIDTHS,
                                   label="Audit checks", interactive=False, wrap=True)
    with gr.Accordion("Winner-flip atlas", open=False, elem_id="atlas"):
        atlas_run = gr.Button("Follow the winners along the attack",
                              elem_id="run-atlas")
        atlas_plot = gr.Plot(label="Winner-flip atlas", elem_id="atlas-plot")
    with gr.Accordion("Loss landscape", open=False, elem_id="landscape"):
        landscape_run = gr.Button("Slice the loss around the image",
                                  elem_id="run-landscape")
        landscape_plot = gr.Plot(label="Loss landscape", elem_id="landscape-plot")
    with gr.Accordion("Transfer matrix", open=False, elem_id="transfer"):
        transfer_run = gr.Button("Try each model's examples on every model",
                                 elem_id="run-transfer")
        transfer_plot = gr.Plot(label="Transfer matrix", elem_id="transfer-plot")
        transfer_note = gr.Markdown()

    return SimpleNamespace(layer=layer, act_stats=act_stats, heatmaps=heatmaps, grid=grid,
                           audit_run=audit_run, audit_md=audit_md, audit_table=audit_table,
                           atlas_run=atlas_run, atlas_plot=atlas_plot,
                           landscape_run=landscape_run, landscape_plot=landscape_plot,
                           transfer_run=transfer_run, transfer_plot=transfer_plot,
                           transfer_note=transfer_note)

def _sweep_tab(o: SimpleNamespace) -> SimpleNamespace:
    """The Robustness sweep tab's components: accuracy against eps on N test images,
    and the audit and transfer matrix over the same images."""
    gr.Markdown("Accuracy against ε on N seeded test images, computed live. ε = 0 is "
                "clean accuracy. On a CPU, keep N and the steps small.")
    with gr.Row():
        s_arch = gr.Radio(o.arch_choices, value=o.start_arch, label="Architecture",
                          elem_id="sweep-arch")
        s_variants = gr.CheckboxGroup(o.variant_choices, value=o.all_variants, label="Models")
        s_attack = gr.Dropdown(o.attacks, value=o.default_attack, label="Attack")
        s_preset = gr.Dropdown(o.controls.presets, value=o.default_preset, label="Preset",
                               allow_custom_value=True)
    with gr.Row():
        s_eps = gr.Textbox("0, 1, 2, 4, 8", label="ε values in 1/255 (comma-separated)",
                           elem_id="sweep-eps")
        s_n = gr.Slider(1, o.limits.max_sweep_images, value=20, step=1,
                        label="Test images (N)", elem_id="sweep-n")
        s_seed = gr.Number(0, precision=0, minimum=0, label="Seed")
    s_run = gr.Button("Run sweep", variant="primary", elem_id="run-sweep")
    s_plot = gr.Plot(label="Accuracy vs ε", elem_id="sweep-plot")
    s_table = gr.Dataframe(headers=["model", "eps (1/255)", "accuracy"],
                           label="Sweep values", interactive=False)
    s_note = gr.Markdown(label="Sweep note")
    with gr.Row():
        s_audit_eps = gr.Number(8, minimum=0, maximum=255,
                                label="ε for the audit (1/255)")
        s_audit_run = gr.Button("Audit gradient masking on these N images",
                                elem_id="run-sweep-audit")
    s_audit_md = gr.Markdown(elem_id="sweep-audit-verdict")
    s_audit_table = gr.Dataframe(headers=AUDIT_HEADERS, column_widths=AUDIT_WIDTHS,
                                 label="Audit checks", interactive=False, wrap=True)
    s_transfer_run = gr.Button("Transfer matrix on these N images (audit ε)",
                               elem_id="run-sweep-transfer")
    s_transfer_plot = gr.Plot(label="Transfer matrix", elem_id="sweep-transfer-plot")
    s_transfer_table = gr.Dataframe(headers=TRANSFER_HEADERS, label="Transfer rates",
                                    interactive=False)

    return SimpleNamespace(s_arch=s_arch, s_variants=s_variants, s_attack=s_attack,
                           s_preset=s_preset, s_eps=s_eps, s_n=s_n, s_seed=s_seed, s_run=s_run,
                           s_plot=s_plot, s_table=s_table, s_note=s_note,
                           s_audit_eps=s_audit_eps, s_audit_run=s_audit_run,
                           s_audit_md=s_audit_md, s_audit_table=s_audit_table,
                           s_transfer_run=s_transfer_run, s_transfer_plot=s_transfer_plot,
                           s_transfer_table=s_transfer_table)


def _reproduction_tab(h: "_Handlers") -> SimpleNamespace:
    """The Reproduction tab's components: the claims chart, the tables, the files."""
    repro_chart = gr.Plot(viz.claims_chart(claims()), label="Claimed vs measured",
                          elem_id="reproduction-chart")
    repro = gr.Markdown(h.reproduction(), label="Reproduction tables",
                        elem_id="reproduction")
    repro_files = gr.File(h.results_files(), file_count="multiple",
                          interactive=False, elem_id="reproduction-files",
                          label="The results files: every row with its settings, "
                                "time and per-image outcomes")
    repro_reload = gr.Button("Reload results", size="sm")

    return SimpleNamespace(repro_chart=repro_chart, repro=repro, repro_files=repro_files,
                           repro_reload=repro_reload)


def _wire(demo: gr.Blocks, h: "_Handlers", t: SimpleNamespace, sw: SimpleNamespace,
          r: SimpleNamespace, page: SimpleNamespace) -> None:
    """Every event of the page: which handler, which inputs and outputs, which queue."""
    heavy = dict(concurrency_id="compute", concurrency_limit="default")
    light = dict(concurrency_id="light", concurrency_limit=4)
    raw = dict(preprocess=False)  # the explorer checks every value (module docstring)
    state, picked, status_md = page.state, page.picked, page.status_md
    private = dict(api_visibility="private")
    controls_out = [t.preset, t.eps, t.steps, t.step_size, t.target, t.preset_note]
    click_in = [t.image_in, t.true_class, t.arch, t.variants, t.attack, t.preset, t.eps, t.steps,
                t.step_size, t.target, t.seed]
    sweep_in = [sw.s_arch, sw.s_variants, sw.s_attack, sw.s_preset]
    maps_out = [t.act_stats, t.heatmaps, t.grid]

    demo.load(h.gallery, None, [t.gallery, page.data_status, t.gallery_note], **private, **light)
    demo.load(h.from_query, None, [*click_in, picked, t.summary], **private, **light)
    t.gallery.select(h.select_gallery, None, [t.image_in, t.true_class, picked], **private,
                     **light)
    t.image_in.change(h.prepare_image, t.image_in, [t.preview, t.preview_note],
                      api_name="prepare_image", **light, **raw)
    t.image_in.upload(lambda: (UNKNOWN, None), None, [t.true_class, picked], **private, **light)
    t.attack.change(h.attack_controls, [t.attack, t.preset], controls_out,
                    api_name="attack_controls", **light, **raw)
    t.preset.input(h.attack_controls, [t.attack, t.preset], controls_out, **private, **light,
                   **raw)
    t.arch.change(lambda a: gr.Dropdown(choices=h.layer_choices(a), value=h.layer_choices(a)[0][1]),
                  t.arch, t.layer, **private, **light)
    t.variants.change(h.show_slots, t.variants, t.slot_columns, **private, **light)
    sw.s_attack.change(h.sweep_presets, sw.s_attack, sw.s_preset, **private, **light)

    t.run.click(
        h.attack, [*click_in, picked],
        [*t.slots, t.trace, t.summary, t.numbers, state, t.receipt_files], api_name="attack",
        **heavy, **raw,
    ).then(
        h.activations, [state, t.layer], maps_out, api_name="activations", **heavy, **raw,
    ).then(h.model_status, None, status_md, api_name="model_status", **light)
    t.layer.input(h.activations, [state, t.layer], maps_out, **private, **heavy, **raw)
    sw.s_run.click(h.sweep, [*sweep_in, sw.s_eps, sw.s_n, sw.s_seed],
                   [sw.s_plot, sw.s_table, sw.s_note], api_name="sweep", **heavy, **raw)
    t.audit_run.click(h.audit, state, [t.audit_md, t.audit_table], api_name="audit", **heavy,
                      **raw)
    t.transfer_run.click(h.transfer, state, [t.transfer_plot, t.transfer_note],
                         api_name="transfer", **heavy, **raw)
    t.landscape_run.click(h.landscape, state, t.landscape_plot, api_name="landscape", **heavy,
                          **raw)
    t.atlas_run.click(h.atlas, state, t.atlas_plot, api_name="atlas", **heavy, **raw)
    sw.s_transfer_run.click(h.transfer_sweep, [*sweep_in, sw.s_audit_eps, sw.s_n, sw.s_seed],
                            [sw.s_transfer_plot, sw.s_transfer_table], api_name="transfer_sweep",
                            **heavy, **raw)
    sw.s_audit_run.click(h.audit_sweep, [*sweep_in, sw.s_audit_eps, sw.s_n, sw.s_seed],
                         [sw.s_audit_md, sw.s_audit_table], api_name="audit_sweep", **heavy,
                         **raw)
    r.repro_reload.click(h.reproduction, None, r.repro, api_name="reproduction", **light)
    r.repro_reload.click(h.reproduction_chart, None, r.repro_chart,
                         api_name="reproduction_chart", **light)
    r.repro_reload.click(h.results_files, None, r.repro_files, **private, **light)
