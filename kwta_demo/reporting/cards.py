"""Model cards (``README.md`` beside the weights) for the trained checkpoints.

The card is a Hugging Face model card: a YAML header (library, tags, dataset, licence and
a ``model-index`` holding the measured clean accuracy) and sections for the recipe, the
results, the data caveat and the one command that reproduces the model. Every number on
it says how it was obtained: which data, how many images, which seed and device.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..data.cifar10 import DATA_CAVEAT
from ..evaluation.results import load_result
from ..models.architectures import ModelConfig
from ..models.checkpoints import atomic_write_text
from ..provenance import device_name
from ..settings import get_settings
from .analysis import best_rows, short_label, worst_case

__all__ = ["DATASET", "LICENSE", "model_card", "robust_rows_for", "worst_case_for",
           "write_card", "record_verification"]

LICENSE = "mit"  # the project's licence (README front matter)
_PAPER = "Xiao, Zhong and Zheng, *Enhancing Adversarial Defense by k-Winners-Take-All*, ICLR 2020"
_REPORT = "Golod and Usluel, reproduction report, 2020"
CIFAR10_TEST_IMAGES = 10_000


DATASET = "uoft-cs/cifar10"
ARXIV = {"paper": "1905.10510", "tramer": "2002.08347", "athalye": "1802.00420"}


def _header(config: ModelConfig, accuracy: float | None, test_images: int | None,
            robust: list[dict[str, Any]] | None = None, base_model: str | None = None) -> str:
    from huggingface_hub import EvalResult, ModelCardData

    tags = ["image-classification", "cifar10", "pytorch", "safetensors", config.arch]
    tags += [f"arxiv:{a}" for a in ARXIV.values()]
    if config.activation == "kwta":
        tags += ["k-winners-take-all", "adversarial-robustness"]
    if config.adversarial:
        tags += ["adversarial-training"] + ([] if config.activation == "kwta"
                                            else ["adversarial-robustness"])
    results = []
    dataset = dict(task_type="image-classification", dataset_type=DATASET,
                   dataset_split="test")
    if accuracy is not None:
        results.append(EvalResult(
            **dataset, dataset_name=f"CIFAR-10 (JPEG q75 copy), test split, {test_images} images",
            metric_type="accuracy", metric_name="clean accuracy",
            metric_value=round(float(accuracy), 4),
        ))
    for r in robust or []:
        results.append(EvalResult(
            **dataset, dataset_name=f"CIFAR-10 (JPEG q75 copy), {r['n']} class-balanced test "
                                    f"images, seed {r['seed']}",
            metric_type="accuracy", metric_name=f"robust accuracy, {r['attack']}:{r['preset']}",
            metric_value=round(float(r["robust_acc"]), 4),
            metric_args={k: v for k, v in (("eps", r.get("eps")), ("norm", "Linf"),
                                           ("steps", r.get("steps")), ("restarts", r.get("restarts")),
                                           ("n", r["n"]), ("seed", r["seed"])) if v is not None},
        ))
    data = ModelCardData(
        license=LICENSE,
        datasets=[DATASET],
        metrics=["accuracy"],
        pipeline_tag="image-classification",
        tags=tags,
        model_name=config.name,
        eval_results=results or None,
        # the lineage on the Hub: k-WTA 0.2 fine-tuned from ReLU, k-WTA 0.1 from k-WTA 0.2
        base_model=base_model,
        base_model_relation="finetune" if base_model else None,
    )
    return f"---\n{data.to_yaml()}\n---\n"


def robust_rows_for(result: dict[str, Any] | None, weights_sha256: str) -> list[dict[str, Any]]:
    """The robust-accuracy rows of an evaluation ``result`` measured on these weights, one
    per (attack, preset): the one with the most images, with its settings for the card."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for row in (result or {}).get("rows", []):
        if row.get("weights_sha256") != weights_sha256 or row.get("attack") == "none":
            continue
        key = (row["attack"], row["preset"])
        if key not in best or row["n"] > best[key]["n"]:
            best[key] = row
    out = []
    for (attack, preset), row in sorted(best.items()):
        params = row.get("params") or {}
        out.append({"attack": attack, "preset": preset, "eps": row.get("eps"),
                    "steps": params.get("steps"), "restarts": params.get("restarts"),
                    "n": row.get("n_pairs") or row["n"], "seed": row["seed"],
                    "robust_acc": row["robust_acc"], "ci95": row.get("robust_ci95")})
    return out


def worst_case_for(result: dict[str, Any] | None, weights_sha256: str,
                   eps: float = 0.031) -> dict[str, Any] | None:
    """The robust accuracy when every attack of Tables 1-2 run on the same images counts at
    once (an image is robust only if all of them failed on it), for these weights."""
    rows = [r for r in (result or {}).get("rows", []) if r.get("weights_sha256") == weights_sha256]
    models = {Path(str(r["model"])).name for r in rows}
    if len(models) != 1:
        return None
    w = worst_case(best_rows(rows), models.pop(), eps)
    if w is None or len(w.attacks) < 2:
        return None
    return {"eps": eps, "n": w.n, "robust_acc": w.acc, "ci95": w.ci95,
            "attacks": [short_label(a, p) for a, p in w.attacks]}


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _recipe_table(recipe: dict[str, Any]) -> str:
    rows = [
        ("initialised from", recipe.get("init_from") or "scratch (random init)"),
        ("epochs", recipe.get("epochs")),
        ("optimiser", f"SGD, momentum {recipe.get('momentum')}"
                      f"{' (Nesterov)' if recipe.get('nesterov') else ''}, "
                      f"weight decay {recipe.get('weight_decay')} (not on BN or biases)"),
        ("learning rate", f"{recipe.get('lr')} peak, {recipe.get('schedule')} schedule, "
                          f"{recipe.get('warmup_epochs')} warm-up epochs"),
        ("batch size", recipe.get("batch_size")),
        ("label smoothing", recipe.get("label_smoothing")),
        ("gradient clipping (L2 norm)", recipe.get("clip_grad_norm") or "none"),
        ("mixed precision", recipe.get("amp_used")),
        ("augmentation", "random 32x32 crop of the 4-pixel zero-padded image, horizontal flip"),
        *_adversarial_rows(recipe),
        ("image size", _sizes(recipe.get("image_sizes"))),
        ("training images", recipe.get("train_images")),
        ("seed", recipe.get("seed")),
        ("device", recipe.get("device_name") or recipe.get("device")),
        ("torch", recipe.get("torch")),
        ("code", f"kwta-demo commit {recipe['commit']}" if recipe.get("commit") else "n/a"),
        ("training wall time", f"{recipe.get('wall_seconds', 0):.0f} s "
                               f"({recipe.get('seconds_per_epoch', 0):.1f} s per epoch, median)"),
    ]
    lines = ["| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


_METHOD_NAMES = {"n-fgsm": "N-FGSM (de Jorge et al. 2022): uniform noise of radius 2 eps, one "
                            "signed gradient step of eps, no projection",
                 "fgsm-rs": "FGSM with a random start (Wong et al. 2020): uniform noise of radius "
                            "eps, one signed step of 1.25 eps, projected into the eps-ball"}


def _adversarial_rows(recipe: dict[str, Any]) -> list[tuple[str, Any]]:
    """The recipe rows of adversarial training (none for a standard model)."""
    method = recipe.get("adversarial")
    if not method:
        return []
    return [("adversarial training", f"{_METHOD_NAMES.get(method, method)}; L-inf eps "
                                     f"{recipe.get('adv_eps', 0) * 255:.3g}/255, every batch"),
            ("held out", f"{recipe.get('holdout')} training images, for a PGD-10 check after "
                         "every epoch")]


def _sizes(phases: Any) -> str:
    if not phases:
        return "32x32 throughout"
    parts = [f"{n} epochs at {size}x{size}" for size, n in phases]
    return ", then ".join(parts) + " (progressive resizing: the augmented crop, downsampled)"


def _verification_lines(v: dict[str, Any], config: ModelConfig) -> str:
    lines = ["## Verification\n",
             f"Checked on {v.get('date', 'n/a')} by `{v.get('command', 'python -m kwta_demo verify')}`"
             f" on {v.get('device', 'n/a')}: weights against {v.get('manifest') or 'no manifest'}, "
             f"strict load, clean accuracy **{pct(v.get('clean_accuracy'))}** on "
             f"{v.get('test_images')} test images"]
    sp = v.get("sparsity") or {}
    if sp:
        which = "k-WTA layer" if config.activation == "kwta" else "ReLU layer (no k-WTA here)"
        lines[-1] += (f", non-zero share of every {which} {min(sp.values()):.4f} to "
                      f"{max(sp.values()):.4f} on {v.get('sparsity_images')} seeded test images")
    lines[-1] += "."
    return "\n".join(lines)


def _sparsity_lines(sparsity: dict[str, float], gamma: float | None) -> str:
    if not sparsity:
        return ""
    values = list(sparsity.values())
    lines = [
        "",
        "Fraction of non-zero activations per activation layer "
        f"({'k-WTA, γ = ' + format(gamma, 'g') if gamma else 'ReLU'}; mean over "
        "the measured images):",
        "",
        "| layer | non-zero fraction |",
        "|---|---|",
    ]
    lines += [f"| `{name}` | {v:.4f} |" for name, v in sparsity.items()]
    lines.append(f"\nMean {sum(values) / len(values):.4f}, min {min(values):.4f}, "
                 f"max {max(values):.4f}.")
    return "\n".join(lines)


def model_card(config: ModelConfig, metrics: dict[str, Any], recipe: dict[str, Any]) -> str:
    """The ``README.md`` text for a trained checkpoint.

    ``metrics`` holds what was measured after the weights were saved and loaded back
    (``clean_accuracy``, ``test_images``, ``eval_device``, optional ``sparsity`` and
    ``sparsity_images``, optional ``initial_accuracy``); ``recipe`` the training
    settings and facts (epochs, lr, batch size, seed, wall time, device, ``command``).
    """
    acc = metrics.get("clean_accuracy")
    n_test = metrics.get("test_images")
    act = ("ReLU" if config.activation == "relu"
           else f"k-Winners-Take-All with γ = {config.gamma:g} (each sample keeps the top "
                f"{100 * config.gamma:g}% of every activation layer's units)")
    robust = metrics.get("robust") or []
    init = recipe.get("init_from")
    base_model = get_settings().repo_for(Path(init).name) if init else None
    parts = [_header(config, acc, n_test, robust, base_model), f"# {config.name}\n"]
    parts.append(
        f"A CIFAR-10 {config.arch} classifier with {act}, part of the kwta-demo explorer of "
        f"the k-WTA adversarial defence ({_PAPER}; {_REPORT}). Inputs are RGB images in "
        "[0, 1] of size 32x32; the model normalises them itself.\n"
    )
    parts.append(
        "## Use\n\n```python\nimport kwta_demo\n"
        f'model = kwta_demo.load_model("{config.name}")  # float32, eval mode\n'
        "logits = model(images)  # images: (N, 3, 32, 32) in [0, 1]\n```\n"
    )
    if recipe.get("init_from"):
        how = (f"Incremental fine-tuning, as in the report: the weights of `{recipe['init_from']}` "
               "were loaded unchanged into this architecture with its activation swapped, then "
               "trained further.")
    else:
        how = "Trained from scratch."
    if config.adversarial:
        how += (" Adversarially trained: every batch is replaced by single-step adversarial "
                "examples of itself (table below).")
        if metrics.get("selected_epoch") is not None:
            how += (f" The weights are those of epoch {metrics['selected_epoch']}, chosen by "
                    f"{metrics.get('selected_by')}.")
    parts.append(f"## Training\n\n{how}\n\n{_recipe_table(recipe)}\n")
    precision = "float16 (upcast to float32 on load)" if metrics.get("stored_half") else "float32"
    whole = "the whole test split" if n_test == CIFAR10_TEST_IMAGES else "a seeded random test subset"
    result = [
        "## Results\n",
        f"Clean accuracy: **{pct(acc)}** on {whole} ({n_test} images), measured after saving "
        f"the weights as {precision} and loading them back, in float32 on "
        f"{metrics.get('eval_device', 'n/a')}.",
    ]
    if metrics.get("initial_accuracy") is not None:
        result.append(
            f"\nBefore fine-tuning (the initial weights, unaltered, with this model's activation): "
            f"{pct(metrics['initial_accuracy'])} on the same {metrics.get('initial_images', n_test)} "
            f"test images (measured during training, {recipe.get('amp_used', 'float32')})."
        )
    if metrics.get("sparsity"):
        result.append(_sparsity_lines(metrics["sparsity"], config.gamma))
        result.append(f"\nMeasured on {metrics.get('sparsity_images')} seeded random test images "
                      f"(seed {metrics.get('sparsity_seed')}).")
    if robust:
        result.append("\nRobust accuracy (L-inf; the share of class-balanced test images still "
                      "classified correctly after the attack; 95% Wilson interval):\n")
        result.append("| attack | eps | images | robust accuracy |")
        result.append("|---|---|---|---|")
        for r in robust:
            ci = r.get("ci95")
            interval = f" [{100 * ci[0]:.1f}–{100 * ci[1]:.1f}]" if ci else ""
            result.append(f"| `{r['attack']}:{r['preset']}` | {r.get('eps')} | {r['n']} "
                          f"(seed {r['seed']}) | {pct(r['robust_acc'])}{interval} |")
        if w := metrics.get("worst_case"):
            ci = w["ci95"]
            result.append(f"| **every attack at once**, per image ({len(w['attacks'])}: "
                          f"{', '.join(w['attacks'])}) | {w['eps']} | {w['n']} | "
                          f"**{pct(w['robust_acc'])}** [{100 * ci[0]:.1f}–{100 * ci[1]:.1f}] |")
        result.append("\nWhat these numbers mean, and why k-WTA's robustness under gradient "
                      "attacks is gradient masking: the explorer's Reproduction tab and "
                      "`docs/reproduction.md`.")
    parts.append("\n".join(result) + "\n")
    if metrics.get("verification"):
        parts.append(_verification_lines(metrics["verification"], config) + "\n")
    parts.append(f"## Data caveat\n\n{DATA_CAVEAT}\n")
    if recipe.get("command"):
        parts.append(
            "## Reproduce\n\nOne command (it trains the whole chain this model belongs to, "
            "since each k-WTA model starts from the previous stage):\n\n"
            f"```bash\n{recipe['command']}\n```\n"
        )
    parts.append(
        "## Citation\n\n"
        f"- {_PAPER} ([arXiv:{ARXIV['paper']}](https://arxiv.org/abs/{ARXIV['paper']})).\n"
        f"- {_REPORT}.\n"
        "- Tramèr, Carlini, Brendel and Madry, *On Adaptive Attacks to Adversarial Example "
        f"Defenses*, NeurIPS 2020 ([arXiv:{ARXIV['tramer']}](https://arxiv.org/abs/{ARXIV['tramer']})).\n"
        "- Athalye, Carlini and Wagner, *Obfuscated Gradients Give a False Sense of Security*, "
        f"ICML 2018 ([arXiv:{ARXIV['athalye']}](https://arxiv.org/abs/{ARXIV['athalye']})).\n"
    )
    return "\n".join(parts)


def record_verification(folder: str | Path, findings: dict[str, Any], *, command: str,
                        results: str | Path | None = None) -> None:
    """Store ``findings`` as ``verification`` in ``folder/metrics.json`` (and, from the
    evaluation ``results`` file, the robust accuracies measured on these very weights),
    then rewrite the card."""
    folder = Path(folder)
    metrics_path = folder / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    metrics["verification"] = {
        **{k: findings.get(k) for k in ("clean_accuracy", "test_images", "sparsity",
                                         "sparsity_images", "weights_sha256", "device")},
        "manifest": Path(findings["manifest"]).name if findings.get("manifest") else None,
        "date": time.strftime("%Y-%m-%d"), "command": command,
        "device": device_name(findings.get("device", "cpu")),
    }
    if results is not None:
        result = load_result(results)
        metrics["robust"] = robust_rows_for(result, findings["weights_sha256"])
        metrics["worst_case"] = worst_case_for(result, findings["weights_sha256"])
    atomic_write_text(metrics_path, json.dumps(metrics, indent=2) + "\n")
    write_card(folder)


def write_card(folder: str | Path) -> Path:
    """Render ``folder/README.md`` from the checkpoint's ``config.json`` and ``metrics.json``
    (what training measured, and what ``verify --record`` added); returns its path."""
    folder = Path(folder)
    config = ModelConfig.from_dict(json.loads((folder / "config.json").read_text()))
    metrics = json.loads((folder / "metrics.json").read_text())
    card = folder / "README.md"
    atomic_write_text(card, model_card(config, metrics, metrics.get("recipe", {})))
    return card
