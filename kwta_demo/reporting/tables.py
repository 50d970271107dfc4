"""The reproduction tables: the report's Tables 1-3 beside ours, as markdown.

One renderer for the app's Reproduction tab and for docs/reproduction.md
(``scripts/reproduction_report.py``). The report's figures come from
``kwta_demo.reporting.published`` (its text, by section and table); ours from the evaluation rows
in ``results/reproduction.json`` (written by ``pipeline run`` or ``evaluate``), from each
checkpoint's ``metrics.json`` and from ``results/bench-train-*.json``. A cell of ours
that was not measured says so; nothing is filled in.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..attacks import get_attack
from ..evaluation.audit import beats, load_rows
from ..evaluation.evaluate import load_result as read_result
from ..evaluation.evaluate import wilson_interval
from ..models.architectures import arch_of
from ..settings import PROJECT_ROOT, get_settings
from ..training.timing import typical_epoch_seconds
from . import published as P

__all__ = ["COLUMNS", "NOT_MEASURED", "NOT_RUN", "ADAPTIVE_NOTE", "Claim", "WorstCase",
           "RESULTS_DIR", "RESULTS_FILES", "best_rows", "claims", "reproduction_markdown",
           "format_cell", "results_files", "short_label", "status_markdown", "worst_case"]

NOT_RUN = "not run by the report"
NOT_MEASURED = "not measured yet"
ARCHS = {"resnet18": (1, "ResNet18"), "alexnet": (2, "AlexNet")}
VARIANTS = (("relu", "ReLU"), ("kwta-0.2", "k-WTA-0.2"), ("kwta-0.1", "k-WTA-0.1"))
# Our (attack, preset) per row of Tables 1-2, its label, and the report's attack it stands
# beside (None: the report did not run it).
COLUMNS: tuple[tuple[str, str, str, str | None], ...] = (
    ("none", "", "A_std (clean accuracy)", "clean"),
    ("vga", "report", "VGA, the report's (raw logit, L2 step 10 at 224 px, no eps-ball)", "vga"),
    ("pgd", "report", "PGD as the report ran it (40 x 0.003 eps relative: reach 0.12 eps)", "pgd"),
    ("pgd", "corrected", "PGD, 40 x 0.003 absolute (reach 3.9 eps)", None),
    ("pgd", "paper", "PGD, the paper's (20 x 0.007, reach 4.5 eps)", None),
    ("deepfool", "paper", "DeepFool (20 steps, 10 candidates)", "deepfool"),
    ("bpda", "paper", "BPDA through a sigmoid k-WTA (100 x 0.003)", None),
    ("apgd-ce", "paper", "APGD-CE (AutoAttack, 100 iterations)", None),
    ("apgd-dlr", "paper", "APGD-DLR (AutoAttack, 100 iterations)", None),
    ("square", "cpu", "Square, gradient-free (1,000 queries)", None),
    ("gradient-estimation", "cpu", "Gradient estimation (Tramèr et al., CPU budget)", None),
    ("cw", "paper", "C&W, the paper's (5 x 10 steps, c 0.01)", None),
)

RESULTS_DIR = PROJECT_ROOT / "results"
# what the Reproduction tab offers for download: every row with its settings and outcomes
RESULTS_FILES = ("reproduction.json", "audit.json")

ADAPTIVE_NOTE = (
    "**Why the adaptive attacks matter.** k-WTA makes the network's gradient jump whenever "
    "the set of winners changes (gradient masking), which stalls attacks that follow the "
    "local gradient. It does not remove adversarial examples: attacks that do not trust the "
    "local gradient (gradient estimation, which never differentiates the model, or BPDA "
    "through a smooth stand-in for k-WTA, as in Tramèr et al., NeurIPS 2020) find them "
    "again. Robust accuracy under PGD alone overstates the defence."
)


def best_rows(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Per (model, attack, preset): the row measured on the most images."""
    best: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in rows:
        key = (Path(str(r.get("model", ""))).name, r.get("attack", ""), r.get("preset", ""))
        if key not in best or int(r.get("n", 0)) > int(best[key].get("n", 0)):
            best[key] = r
    return best


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def format_cell(row: dict[str, Any] | None) -> str:
    """'7.2% [4.9–10.4], n=320' (95% Wilson interval), or 'not measured yet'."""
    if row is None:
        return NOT_MEASURED
    value = row.get("robust_acc")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NOT_MEASURED
    ci = row.get("robust_ci95")
    interval = f" [{100 * ci[0]:.1f}–{100 * ci[1]:.1f}]" if ci else ""
    n = row.get("n_pairs") or row.get("n")
    what = "pairs" if row.get("n_pairs") else "n"
    return f"{_pct(value)}{interval}, {what}={n}"


def _report_cell(arch: str, variant: str, attack: str | None) -> str:
    if attack is None:
        return NOT_RUN
    table = ARCHS[arch][0]
    found = P.find_figures(publication="report", table=table, model=f"{arch}-{variant}",
                           attack=None if attack == "clean" else attack)
    found = [f for f in found if (f.quantity == "clean_acc") == (attack == "clean")]
    if not found:
        return NOT_RUN
    f = found[0]
    n = f" ({'pairs' if f.attack == 'vga' else 'n'}={f.n})" if f.n else ""
    return f"{f.value:g}%{n}"


def _clean_from_card(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    """A clean-accuracy row from a checkpoint's metrics.json (whole test split), if any."""
    if not metrics or metrics.get("clean_accuracy") is None:
        return None
    acc, n = float(metrics["clean_accuracy"]), int(metrics.get("test_images") or 0)
    return {"robust_acc": acc, "n": n, "robust_ci95": wilson_interval(round(acc * n), n) if n else None}


def _attack_table(arch: str, best: dict[tuple[str, str, str], dict[str, Any]],
                  metrics: dict[str, dict[str, Any]]) -> list[str]:
    table, title = ARCHS[arch]
    head = "| attack | " + " | ".join(f"{label}: report | {label}: ours" for _, label in VARIANTS) + " |"
    lines = [f"### Table {table}: {title} (report vs ours)", "", head,
             "|---|" + "---|---|" * len(VARIANTS)]
    for attack, preset, label, report_attack in COLUMNS:
        cells = []
        for variant, _ in VARIANTS:
            model = f"{arch}-{variant}"
            cells.append(_report_cell(arch, variant, report_attack))
            row = best.get((model, attack, preset))
            if row is None and attack == "none":
                row = _clean_from_card(metrics.get(model))
            cells.append(format_cell(row))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", f"Report: Golod and Usluel (2020), §3.3, Table {table}: {title} Experiment "
              "Results; its attacks on the first 320 test images (VGA: each against its 9 wrong "
              "targets, 2,880 pairs), its A_std on the test set. Ours: all 10,000 JPEG test "
              "images for A_std; attacks on the same seeded class-balanced images for every "
              "model (`data.evaluation_sample`), eps = 0.031 (L-inf) unless the row says "
              "otherwise, 95% Wilson intervals in brackets."]
    return lines


def short_label(attack: str, preset: str) -> str:
    """'PGD (corrected)', 'BPDA', 'Square': the attack of a Tables 1-2 row, in a few words
    (its registry title without the parenthesis; PGD, which has three rows, with its preset)."""
    name = get_attack(attack).title.split(" (")[0]
    return f"{name} ({preset})" if attack == "pgd" else name


@dataclass(frozen=True)
class WorstCase:
    """A model's robust accuracy when every attack run on the same images counts: an image
    is robust only if all of them failed on it."""

    attacks: tuple[tuple[str, str], ...]  # (attack, preset), in the order of Tables 1-2
    strongest: dict[str, Any]  # the row with the lowest robust accuracy alone
    acc: float
    ci95: list[float]
    n: int
    eps: float
    kept: tuple[int, ...] = ()  # positions in the sample of the images no attack fooled


def worst_case(best: dict[tuple[str, str, str], dict[str, Any]], model: str,
               eps: float = 0.031, n: int | None = None,
               attacks: Sequence[tuple[str, str]] | None = None) -> WorstCase | None:
    """``model``'s worst case over its Tables 1-2 rows at ``eps`` on the first ``n`` images
    of the sample (None: its largest common set of images), counting every row on at least
    ``n`` images (None: no such row has per-image outcomes); only the (attack, preset)
    pairs of ``attacks`` where given."""
    rows = [(attack, preset, best[(model, attack, preset)]) for attack, preset, _, _ in COLUMNS
            if attack != "none" and (model, attack, preset) in best
            and (attacks is None or (attack, preset) in attacks)]
    rows = [(a, p, r) for a, p, r in rows if math.isclose(float(r.get("eps", 0)), eps)
            and r.get("robust_per_image") and r.get("robust_acc") is not None
            and len(r["robust_per_image"]) == int(r["n"])]
    if n is None:
        n = max((int(r["n"]) for _, _, r in rows), default=0)
    rows = [(a, p, r) for a, p, r in rows if n and int(r["n"]) >= n]
    if not rows:
        return None
    # each row on the first n images: the sample's first n are the n-image sample
    alone = []
    for _, _, r in rows:
        k = sum(bool(v) for v in r["robust_per_image"][:n])
        alone.append(r if int(r["n"]) == n else
                     {**r, "n": n, "robust_acc": k / n, "robust_ci95": wilson_interval(k, n)})
    kept = tuple(i for i in range(n) if all(bool(r["robust_per_image"][i]) for _, _, r in rows))
    return WorstCase(tuple((a, p) for a, p, _ in rows),
                     min(alone, key=lambda r: r["robust_acc"]),
                     len(kept) / n, wilson_interval(len(kept), n), n, eps, kept)


def _worst_case_line(label: str, w: WorstCase) -> str:
    strongest = short_label(w.strongest["attack"], w.strongest["preset"])
    return (f"| {label} | {len(w.attacks)}: {', '.join(short_label(a, p) for a, p in w.attacks)} "
            f"| {strongest}: {format_cell(w.strongest)} "
            f"| {format_cell({'robust_acc': w.acc, 'robust_ci95': w.ci95, 'n': w.n})} |")


def _worst_case(best: dict[tuple[str, str, str], dict[str, Any]], eps: float = 0.031,
                test_indices: Sequence[int] = ()) -> list[str]:
    """Per model: the strongest single attack, and the worst case per image over every
    attack run on the same images at ``eps``; again on fewer images where attacks run on
    fewer images join in. ``test_indices``: the sample's test-split indices
    (``meta.robust_test_indices``), to name the few images no attack fooled."""
    lines = ["### Every attack at once: the worst case per image", "",
             "| model | attacks on the same images | the strongest alone | all of them, per image |",
             "|---|---|---|---|"]
    worst: dict[str, WorstCase] = {}
    fewer = False
    for arch in ARCHS:
        for variant, _ in VARIANTS:
            model = f"{arch}-{variant}"
            w = worst_case(best, model, eps)
            if w is None:
                lines.append(f"| {model} | {NOT_MEASURED} | | |")
                continue
            worst[model] = w
            lines.append(_worst_case_line(model, w))
            sizes = sorted({int(r["n"]) for (m, _, _), r in best.items()
                            if m == model and r.get("robust_per_image")
                            and math.isclose(float(r.get("eps", 0)), eps)}, reverse=True)
            for n in sizes[1:]:
                more = worst_case(best, model, eps, n)
                if more is not None and len(more.attacks) > len(w.attacks):
                    fewer = True
                    lines.append(_worst_case_line(f"{model}, first {n} images", more))
    lines += ["", f"All at eps = {eps:g} (L-inf) on the models' largest common set of images; "
              "the report's VGA, which has no eps-ball, is left out. "
              + ("Attacks run on fewer images join in on a line of their own, over those "
                 "images (the first n of the sample, where every attack listed ran). "
                 if fewer else "Attacks run on fewer images are left out (their rows are in "
                 "Tables 1-2). ")
              + "An image counts as robust in the last column only if every attack listed "
              "failed on it, as AutoAttack scores its ensemble."]
    named = _unbroken_images(worst, test_indices)
    return lines + _worst_case_in_words(worst) + (["", named] if named else [])


def _unbroken_images(worst: dict[str, WorstCase], test_indices: Sequence[int],
                     most: int = 12) -> str:
    """The test images no attack fooled, by model, where there are at most ``most`` of
    them: each can be set up on the Attack tab by its replay link."""
    named = [(model, [test_indices[i] for i in w.kept]) for model, w in worst.items()
             if 0 < len(w.kept) <= most and max(w.kept) < len(test_indices)]
    if not named:
        return ""
    return ("The images no attack fooled, by test-split index (`?test=N&arch=ARCH` after the "
            "app's address sets one up on the Attack tab): "
            + "; ".join(f"{model}: " + ", ".join(f"#{i}" for i in found) for model, found in named)
            + ".")


def _worst_case_in_words(worst: dict[str, WorstCase],
                         lead: str = "Under every attack at once, the") -> list[str]:
    """Each k-WTA model's worst case beside its ReLU twin's, in words, from the rows; the
    sentence opens with ``lead`` and ' k-WTA models keep ...'."""
    kwta, relu, within, above = [], [], [], []
    for arch in ARCHS:
        twin = worst.get(f"{arch}-relu")
        if twin is None:
            continue
        relu.append(f"{_pct(twin.acc)} ({arch}-relu)")
        for variant, _ in VARIANTS[1:]:
            model = f"{arch}-{variant}"
            if model not in worst:
                continue
            w = worst[model]
            kwta.append(f"{_pct(w.acc)} ({model})")
            (within if w.ci95[0] <= twin.ci95[1] else above).append(model)
    if not kwta:
        return []
    sizes = sorted({w.n for w in worst.values()})
    images = " or ".join(f"{n:,}" for n in sizes)
    said = (f"{lead} k-WTA models keep {_and(kwta)} of their images, "
            f"the ReLU models {_and(relu)}.")
    if within:
        whose = "its 95% interval overlaps" if len(within) == 1 else "their 95% intervals overlap"
        said += (f" {_and(within)}: {whose} the ReLU twin's, so no robustness beyond the "
                 f"ReLU model's is measurable on {images} images.")
    if above:
        said += (f" {_and(above)}: above the ReLU twin's 95% interval; these attacks leave "
                 "more standing there than on the ReLU model.")
    return ["", said]


# The gradient attacks whose survivors the adaptive attacks are set against (the report's
# PGD, which cannot cross the eps-ball, has its own section), and the adaptive attacks.
_GRADIENT_ATTACKS = (("pgd", "corrected"), ("pgd", "paper"), ("deepfool", "paper"),
                     ("apgd-ce", "paper"), ("apgd-dlr", "paper"), ("cw", "paper"))
_ADAPTIVE_ATTACKS = (("bpda", "paper"), ("gradient-estimation", "cpu"))


@dataclass(frozen=True)
class _Survivors:
    """What an adaptive attack does to the images a model's best gradient attack left
    standing, per image, on the first ``n`` images (those both ran on)."""

    gradient: dict[str, Any]  # the gradient attack's row that leaves the most standing
    twin: dict[str, Any] | None  # the same attack's row on the ReLU twin
    adaptive: dict[str, Any]  # the adaptive attack's row
    n: int
    stood: int  # images the gradient attack left standing, of the first n
    broken: int  # of those, the images the adaptive attack fools


def _survivors(best: dict[tuple[str, str, str], dict[str, Any]], model: str,
               adaptive: tuple[tuple[str, str], ...] = _ADAPTIVE_ATTACKS) -> list[_Survivors]:
    """One ``_Survivors`` per adaptive attack run on ``model`` (none without per-image
    outcomes or a gradient attack)."""
    def rows(specs):
        return [best[(model, a, p)] for a, p in specs
                if (model, a, p) in best and best[(model, a, p)].get("robust_per_image")]

    gradient = rows(_GRADIENT_ATTACKS)
    if not gradient:
        return []
    g = max(gradient, key=lambda r: r["robust_acc"])
    twin = best.get((f"{arch_of(model)}-relu", g["attack"], g["preset"]))
    out = []
    for r in rows(adaptive):
        n = min(int(r["n"]), int(g["n"]))  # rows on fewer images take the first n
        stood = [i for i in range(n) if g["robust_per_image"][i]]
        out.append(_Survivors(g, twin, r, n, len(stood),
                              sum(not r["robust_per_image"][i] for i in stood)))
    return out


def _adaptive_in_words(best: dict[tuple[str, str, str], dict[str, Any]]) -> list[str]:
    """Per k-WTA model: the gradient attack that leaves the most images standing, and what
    the adaptive attacks do to those very images (per image, on the images both ran on)."""
    said = []
    for arch in ARCHS:
        for variant, _ in VARIANTS[1:]:
            model = f"{arch}-{variant}"
            found = _survivors(best, model)
            if not found:
                continue
            g, twin = found[0].gradient, found[0].twin
            name = short_label(g["attack"], g["preset"])
            text = (f"On {model}, the gradient attack that leaves the most standing is "
                    f"{name}: {format_cell(g)}"
                    + (f" (ReLU twin: {_pct(twin['robust_acc'])})" if twin else "") + ".")
            for s in found:
                r = s.adaptive
                on = "" if s.n == int(g["n"]) else f" on the first {s.n} of those images"
                text += (f" {short_label(r['attack'], r['preset'])} leaves {format_cell(r)}"
                         f"{on}, and fools {s.broken} of the {s.stood} images {name} left "
                         "standing.")
            said.append(text)
    square = [t for arch in ARCHS for variant, _ in VARIANTS[1:]
              if (t := _square_in_words(best, f"{arch}-{variant}"))]
    if not said and not square:
        return []
    return (["### Where k-WTA looks strongest, the adaptive attacks", "", ADAPTIVE_NOTE, "",
             " ".join(said)]
            + (["", "Square reads only the model's scores, never a gradient. "
                + " ".join(square)] if square else []))


@dataclass(frozen=True)
class _SquareLeft:
    """What the other attacks do, per image, to the images Square left standing on a model."""

    square: dict[str, Any]  # the Square row
    twin: dict[str, Any] | None  # Square's row on the ReLU twin
    others: int  # attacks run at the same eps on at least as many images
    stood: int  # images Square left standing
    broken: int  # of those, the images at least one other attack fools
    top: dict[str, Any]  # the other attack that fools the most of them
    top_broken: int


def _square_left(best: dict[tuple[str, str, str], dict[str, Any]], model: str,
                 square: tuple[str, str] = ("square", "cpu")) -> _SquareLeft | None:
    """Square's survivors on ``model`` against the attacks run at the same eps on at least
    as many images (None without per-image outcomes, other attacks or survivors)."""
    sq = best.get((model, *square))
    if sq is None or len(sq.get("robust_per_image") or ()) != int(sq["n"]):
        return None
    n = int(sq["n"])
    others = [best[(model, a, p)] for a, p, _, _ in COLUMNS
              if a != "none" and (a, p) != square and (model, a, p) in best]
    others = [r for r in others if math.isclose(float(r.get("eps", 0)), float(sq["eps"]))
              and int(r["n"]) >= n and len(r.get("robust_per_image") or ()) == int(r["n"])]
    stood = [i for i in range(n) if sq["robust_per_image"][i]]
    if not others or not stood:
        return None
    fooled = [sum(not r["robust_per_image"][i] for i in stood) for r in others]
    top = max(range(len(others)), key=fooled.__getitem__)
    return _SquareLeft(sq, best.get((f"{arch_of(model)}-relu", *square)), len(others),
                       len(stood), sum(any(not r["robust_per_image"][i] for r in others)
                                       for i in stood), others[top], fooled[top])


def _square_in_words(best: dict[tuple[str, str, str], dict[str, Any]], model: str) -> str | None:
    """'On m it leaves 25.3% [...] standing (ReLU twin: 1.9%); the 7 other attacks ...'."""
    left = _square_left(best, model)
    if left is None:
        return None
    return (f"On {model} it leaves {format_cell(left.square)} standing"
            + (f" (ReLU twin: {_pct(left.twin['robust_acc'])})" if left.twin else "")
            + f"; the {left.others} other attacks run on the same images fool {left.broken} of "
            f"those {left.stood} ({short_label(left.top['attack'], left.top['preset'])} "
            f"alone {left.top_broken}).")


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _time_table(rows: list[dict[str, Any]]) -> list[str]:
    """Minutes each (attack, model) took, summed over its rows (a larger nested sample
    counts only its new images), and the total: the evaluation's measured cost."""
    models = [f"{arch}-{variant}" for arch in ARCHS for variant, _ in VARIANTS]
    spent: dict[tuple[str, str], float] = {}
    for r in rows:
        key = (f"{r['attack']}:{r['preset']}" if r.get("preset") else "clean",
               Path(str(r.get("model", ""))).name)
        spent[key] = spent.get(key, 0.0) + float(r.get("seconds") or 0.0)
    if not spent:
        return []
    lines = ["### What the evaluation cost", "",
             "| attack | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for attack in dict.fromkeys(a for a, _ in spent):
        cells = [f"{spent[(attack, m)] / 60:.1f}" if (attack, m) in spent else "" for m in models]
        lines.append(f"| `{attack}` | " + " | ".join(cells) + " |")
    total = sum(spent.values())
    lines += ["", "Minutes of the 2-core CPU per row, from the rows' own `seconds`: the wall "
              "time of the run that finished the row, which counts only the batches it "
              "computed. A row on more images than another of its model and attack reads the "
              "smaller row's images from it, "
              "and a row stopped and resumed counts only the time after the resumption, so a "
              f"resumed row's figure is a lower bound. In all **{total / 3600:.1f} hours** for "
              f"the {len(rows)} rows so far."]
    return lines


def _checkpoint_metrics(root: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(root.glob("*/metrics.json")) if root.is_dir() else ():
        try:
            out[path.parent.name] = json.loads(path.read_text())
        except ValueError:
            continue
    return out


def _table3(metrics: dict[str, dict[str, Any]], bench: dict[str, Any] | None) -> list[str]:
    rows = {f.key: f for f in P.find_figures(publication="report", table=3)}
    lines = ["### Table 3: time per training epoch and per test pass, ReLU vs k-WTA", "",
             "| | report: epoch | report: 10,000-image test | ours: epoch | ours: 10,000-image test |",
             "|---|---|---|---|---|"]
    for variant, label in (("relu", "ReLU"), ("kwta-0.2", "k-WTA-0.2")):
        name = f"resnet18-{variant}"
        ep = rows.get(f"report.table3.epoch_seconds.{name}")
        te = rows.get(f"report.table3.test_seconds.{name}")
        m = metrics.get(name, {})
        ours_ep = typical_epoch_seconds(m.get("history", []), 32)
        ours_te = m.get("eval_seconds")
        lines.append(f"| ResNet18 {label} | {ep.value:g} s | {te.value:g} s | "
                     f"{f'{ours_ep:.0f} s' if ours_ep else NOT_MEASURED} | "
                     f"{f'{ours_te:.0f} s' if ours_te else NOT_MEASURED} |")
    lines += ["", "Report: §3.5.2, Table 3 (average of 10 epochs of ResNet18 at 224x224 on its "
              "Colab GPU). Ours: the lower quartile of the shipped runs' 32 px epochs (epochs "
              "that shared the CPU with other work ran long) and their float32 pass over the "
              "test split, from each checkpoint's `metrics.json` (2-core CPU, bf16 autocast "
              "for training)."]
    if bench:
        by = {r["label"]: r for r in bench.get("rows", [])}
        relu = by.get("resnet18-relu b128 32px NHWC bf16")
        kwta = by.get("resnet18-kwta-0.2 b128 32px NHWC bf16")
        if relu and kwta:
            env = bench.get("environment", {})
            lines += ["", f"Step time in one interleaved run (`{env.get('command', '')}`, "
                      f"{env.get('cpu', 'CPU')}, {env.get('threads', '?')} threads): k-WTA-0.2 "
                      f"trains at {kwta['images_per_s']:.0f} img/s against ReLU's "
                      f"{relu['images_per_s']:.0f}, a ratio of "
                      f"{relu['images_per_s'] / kwta['images_per_s']:.2f}x; the report's "
                      f"epochs differ by {735 / 381:.2f}x, its test passes by {42 / 10:.1f}x."]
    return lines


def _pgd_finding(best: dict[tuple[str, str, str], dict[str, Any]]) -> list[str]:
    step = P.code_fact("pgd-relative-step")
    history = P.code_fact("pgd-notebook-history")
    lines = ["### The report's PGD could not reach the edge of its eps-ball", "",
             f"{step.finding} {step.consequence}", "",
             f"{history.finding} {history.consequence}", "",
             f"Sources: {step.source.cite()}; {history.source.cite()} and, before the change, "
             f"{history.before.cite()}."]
    lines += ["", "Ours, the same two step sizes on our six models (robust accuracy on the "
              "images of Tables 1-2, eps 0.031), beside the report's figure for its step:", "",
              "| model | report: its step | ours: the report's step | ours: the absolute step |",
              "|---|---|---|---|"]
    for arch in ARCHS:
        for variant, _ in VARIANTS:
            name = f"{arch}-{variant}"
            lines.append(f"| {name} | {_report_cell(arch, variant, 'pgd')} | "
                         f"{format_cell(best.get((name, 'pgd', 'report')))} | "
                         f"{format_cell(best.get((name, 'pgd', 'corrected')))} |")
    return lines + _pgd_finding_in_words(best)


def _pgd_finding_in_words(best: dict[tuple[str, str, str], dict[str, Any]]) -> list[str]:
    """What the table says, in words, once every model has both rows (every figure
    from the rows)."""
    names = [f"{arch}-{variant}" for arch in ARCHS for variant, _ in VARIANTS]
    short = {n: best.get((n, "pgd", "report")) for n in names}
    full = {n: best.get((n, "pgd", "corrected")) for n in names}
    if not all(short.values()) or not all(full.values()):
        return []
    relu = [n for n in names if n.endswith("-relu")]
    kept = " and ".join(_pct(short[n]["robust_acc"]) for n in relu)
    reported = " and ".join(_report_cell(arch_of(n), "relu", "pgd").split(" ")[0] for n in relu)
    worst = max(full.values(), key=lambda r: r["robust_acc"])
    return ["", f"With the report's step, our ReLU models ({', '.join(relu)}) keep {kept} of "
            f"their images, where the report's kept {reported}: how much an attack that "
            "cannot cross the eps-ball leaves standing depends on the model (ours are 32 px "
            "networks trained from scratch, the report's ImageNet networks at 224 px), so "
            "the differences it shows are not a measure of a defence. With the absolute "
            f"step, no model keeps more than {_pct(worst['robust_acc'])} ({worst['model']})."]


def _audit_section(results: Path) -> list[str]:
    """The gradient-masking audit and the transfer matrices of ``results/audit.json``."""
    lines = ["### Is the robustness real? The gradient-masking audit", ""]
    try:
        rows = load_rows(results / "audit.json")
    except ValueError as e:
        return lines + [f"**Unreadable:** {e}"]
    audits = [r for r in rows if r.get("kind") == "audit"]
    if not audits:
        return lines + [f"{NOT_MEASURED.capitalize()} (`results/audit.json`: the pipeline audits "
                        "each architecture after the evaluation; `python -m kwta_demo audit "
                        "--arch alexnet` does it by hand)."]
    lines += ["In short: " + _verdicts_in_words(audits), "",
              "| model | audited attack | images | verdict |", "|---|---|---|---|"]
    for r in _audit_order(audits):
        lines.append(f"| {r['model']} | `{r['attack']}` | {r.get('correct')} of {r['n']} "
                     f"(seed {r['seed']}) | {r['verdict']} |")
    for r in (r for r in rows if r.get("kind") == "transfer"):
        correct = r.get("correct") or [None] * len(r["targets"])
        heads = [t if c is None else f"{t} ({c} right)" for t, c in zip(r["targets"], correct)]
        bpda = f" (BPDA rows: `{r['bpda']}`)" if r.get("bpda") else ""
        lines += ["", f"Transfer matrix, {r['model']}: `{r['attack']}` examples{bpda} crafted on "
                  f"each model (rows), tried on each model (columns); a cell is the share of the "
                  f"images the column's model classifies correctly that the examples fool, "
                  f"with its 95% Wilson interval ({r['n']} test images, seed {r['seed']}):", "",
                  "| examples crafted on | " + " | ".join(heads) + " |",
                  "|---|" + "---|" * len(r["targets"])]
        cis = r.get("ci95") or [[None] * len(r["targets"]) for _ in r["sources"]]
        for source, rates, intervals in zip(r["sources"], r["rates"], cis):
            cells = ["n/a" if v is None else f"{100 * v:.0f}%"
                     + ("" if ci is None else f" [{100 * ci[0]:.0f}–{100 * ci[1]:.0f}]")
                     for v, ci in zip(rates, intervals)]
            lines.append(f"| {source} | " + " | ".join(cells) + " |")
        reading = _transfer_in_words(r)
        if reading:
            lines += ["", reading]
    lines += ["", _audit_provenance(rows)]
    lines += ["", "The checks (`kwta_demo/evaluation/audit.py`, after Carlini et al. 2019): PGD with eps = 1 "
              "from the image must succeed; five times the steps must not change the audited "
              "attack's success; Square (no gradients) and PGD examples made on the ReLU twin "
              "must not beat it. A verdict is about the audited attack's figure, not the model "
              "alone: a flag means the robustness that attack shows is not real; no flag means "
              "no check beat the attack by the margin, so its figure stands."]
    return lines


def _transfer_in_words(row: dict[str, Any]) -> str | None:
    """What a transfer matrix says of each k-WTA model's own gradients: do the examples
    they lead to fool the ReLU twin as well as those of BPDA on the same model?"""
    sources, targets = list(row["sources"]), list(row["targets"])
    twins = [t for t in targets if t.endswith("-relu")]
    if not twins:
        return None
    twin = targets.index(twins[0])
    n_twin = (row.get("correct") or [None] * len(targets))[twin]
    cis = row.get("ci95") or [[None] * len(targets) for _ in sources]

    def cell(source: int, target: int) -> str:
        v, ci = row["rates"][source][target], cis[source][target]
        return f"{100 * v:.0f}%" + ("" if ci is None else f" [{100 * ci[0]:.0f}–{100 * ci[1]:.0f}]")

    said = []
    for i, source in enumerate(sources):
        if source not in targets or f"{source} (BPDA)" not in sources:
            continue
        b = sources.index(f"{source} (BPDA)")
        own, bpda = row["rates"][i][twin], row["rates"][b][twin]
        if own is None or bpda is None or not n_twin:
            continue
        if beats(bpda, own, n_twin):
            said.append(f"examples made on {source}'s own gradients fool {twins[0]} on "
                        f"{cell(i, twin)} of its images, those of BPDA on the same model on "
                        f"{cell(b, twin)}: what its own gradients find fools it "
                        f"({cell(i, targets.index(source))}) but carries over less, a sign that "
                        f"they follow its k-WTA layers' discontinuities more than what the "
                        f"models share")
        else:
            said.append(f"{source}'s own gradients and BPDA's make examples that fool "
                        f"{twins[0]} alike ({cell(i, twin)} and {cell(b, twin)})")
    if not said:
        return None
    return "Reading it: " + "; ".join(said) + "."


def _audit_order(audits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Audit rows by architecture (Tables 1-2's order), then attack (in the order first
    audited), then model (ReLU, k-WTA-0.2, k-WTA-0.1): each attack's three verdicts together."""
    archs, models = list(ARCHS), [f"{a}-{v}" for a in ARCHS for v, _ in VARIANTS]
    attacks = list(dict.fromkeys(r["attack"] for r in audits))

    def key(r: dict[str, Any]) -> tuple[int, int, int]:
        arch = arch_of(r["model"])
        return (archs.index(arch) if arch in archs else len(archs), attacks.index(r["attack"]),
                models.index(r["model"]) if r["model"] in models else len(models))

    return sorted(audits, key=key)


def _audit_provenance(rows: list[dict[str, Any]]) -> str:
    """How the audit rows were obtained: per architecture, the command, images, seed, eps
    and device, read from the rows themselves."""
    by_arch: dict[str, dict[str, Any]] = {}
    for r in rows:
        arch = arch_of(r["model"])
        entry = by_arch.setdefault(arch, {"attacks": [], "n": set(), "seed": set(),
                                          "eps": set(), "device": set(), "data": set(),
                                          "seconds": 0.0})
        if r.get("kind") == "audit" and r["attack"] not in entry["attacks"]:
            entry["attacks"].append(r["attack"])
        if r.get("kind") == "transfer":
            entry["transfer"] = r["attack"]
        for field in ("n", "seed", "eps", "device"):
            if r.get(field) is not None:
                entry[field].add(r[field])
        entry["data"].add(r.get("data") or "data not recorded")
        entry["seconds"] += float(r.get("seconds") or 0.0)
    parts = []
    for arch, e in by_arch.items():
        join = lambda values: "/".join(str(v) for v in sorted(values))  # noqa: E731
        if e.get("transfer") in e["attacks"]:  # the command's last attack makes the matrix
            e["attacks"].remove(e["transfer"])
            e["attacks"].append(e["transfer"])
        parts.append(
            f"{arch}: `python -m kwta_demo audit --arch {arch} --n {join(e['n'])} --seed "
            f"{join(e['seed'])} --attacks {','.join(e['attacks'])}` (the pipeline runs the same), "
            f"seeded class-balanced test images of {' and '.join(sorted(e['data']))}, "
            f"L-inf eps {join(e['eps'])}, "
            f"device {join(e['device'])}, {e['seconds'] / 60:.0f} min in all")
    return "How these rows were obtained: " + "; ".join(parts) + "."


def _finished_note(rows: list[dict[str, Any]]) -> str:
    """Where to read when each row was computed: a results file keeps the rows of earlier
    runs, and only rows computed since rows were stamped carry a ``finished`` time."""
    stamped = sum("finished" in r for r in rows)
    if not rows or not stamped:
        return ""
    if stamped == len(rows):
        which = "each row says"
    else:
        which = f"{stamped} of its {len(rows)} rows {'says' if stamped == 1 else 'say'}"
    return (f"; the file keeps rows of earlier runs, and {which} when it was finished "
            "(`finished` in `results/reproduction.json`)")


def _outside() -> list[str]:
    rb = {f.key: f for f in P.find_figures(publication="robustbench")}
    claim, clean = rb["paper.claim.densenet121"], rb["paper.robustbench.clean"]
    aa, ext, tramer = (rb["paper.robustbench.autoattack"], rb["paper.robustbench.external"],
                       rb["tramer.kwta"])
    return ["### The paper's own model, evaluated by others", "",
            f"The paper's k-WTA DenseNet-121 (CIFAR-10, eps 0.031): {clean.value:g}% clean, "
            f"{claim.value:g}% robust as the paper reported it, {aa.value:.2f}% under "
            f"AutoAttack and {ext.value:.2f}% under {ext.attack}; RobustBench flags the entry "
            f"as unreliable. Tramèr et al. (2020) report {tramer.value:g}% on {tramer.setting}. "
            f"Source: {claim.source.cite()}."]


@dataclass(frozen=True)
class Claim:
    """One bar of the claims chart: a robust accuracy of a k-WTA model, who measured it, how."""

    group: str  # "the paper's model (DenseNet-121)", "ResNet18 k-WTA-0.1", ...
    label: str  # who and with what attack
    value: float  # percent
    ci95: tuple[float, float] | None  # percent
    source: str  # the citation, or our results file
    conditions: str  # n, eps, attack settings
    relu: float | None = None  # ours only: the ReLU twin's, same attack and images (percent)


_OUR_CLAIMS = (("pgd", "report", "ours, PGD as the report ran it"),
               ("pgd", "corrected", "ours, PGD with the absolute step"),
               ("bpda", "paper", "ours, BPDA"),
               ("apgd-ce", "paper", "ours, APGD-CE"),
               ("square", "cpu", "ours, Square (no gradients)"),
               ("gradient-estimation", "cpu", "ours, gradient estimation"))


def claims(results_dir: str | Path | None = None) -> list[Claim]:
    """The paper's claim, RobustBench's and Tramèr et al.'s evaluations, the report's PGD and
    ours, for k-WTA models at eps 0.031: what the chart on the Reproduction tab shows."""
    rb = {f.key: f for f in P.find_figures(publication="robustbench")}
    paper = "the paper's model (DenseNet-121)"
    out = [Claim(paper, "the paper, as reported", rb["paper.claim.densenet121"].value, None,
                 rb["paper.claim.densenet121"].source.cite(), "the paper's own attacks"),
           Claim(paper, "RobustBench, AutoAttack", rb["paper.robustbench.autoattack"].value, None,
                 rb["paper.robustbench.autoattack"].source.cite(), "standard AutoAttack, eps 0.031"),
           Claim(paper, "RobustBench, APGD-CE + Square", rb["paper.robustbench.external"].value,
                 None, rb["paper.robustbench.external"].source.cite(),
                 rb["paper.robustbench.external"].attack),
           Claim("Tramèr et al.'s k-WTA ResNet-18", "Tramèr et al. 2020, adaptive attack",
                 rb["tramer.kwta"].value, None, rb["tramer.kwta"].source.cite(),
                 rb["tramer.kwta"].setting)]
    results = Path(results_dir) if results_dir is not None else RESULTS_DIR
    try:
        result = read_result(results / "reproduction.json")
    except ValueError:
        result = None
    best = best_rows(result["rows"]) if result else {}
    for arch, title in (("resnet18", "ResNet18"), ("alexnet", "AlexNet")):
        group = f"{title} k-WTA-0.1"
        pgd = P.find_figures(publication="report", model=f"{arch}-kwta-0.1", attack="pgd")[0]
        out.append(Claim(group, "the report, PGD", pgd.value, None, pgd.source.cite(),
                         f"n={pgd.n}, {pgd.setting}"))
        for attack, preset, label in _OUR_CLAIMS:
            row = best.get((f"{arch}-kwta-0.1", attack, preset))
            if row is None or row.get("robust_acc") is None:
                continue
            ci = row.get("robust_ci95")
            twin = best.get((f"{arch}-relu", attack, preset))
            out.append(Claim(group, label, 100 * row["robust_acc"],
                             (100 * ci[0], 100 * ci[1]) if ci else None,
                             "results/reproduction.json",
                             f"n={row.get('n')}, eps {row.get('eps')}, seed {row.get('seed')}, "
                             f"{row.get('device', '')}",
                             _twin_value(row, twin)))
        w = worst_case(best, f"{arch}-kwta-0.1")
        if w is not None and len(w.attacks) > 1:
            twin_w = worst_case(best, f"{arch}-relu", eps=w.eps, n=w.n, attacks=w.attacks)
            out.append(Claim(group, "ours, every attack at once", 100 * w.acc,
                             (100 * w.ci95[0], 100 * w.ci95[1]), "results/reproduction.json",
                             f"n={w.n}, eps {w.eps:g}, robust only if all of "
                             f"{', '.join(short_label(a, p) for a, p in w.attacks)} fail, "
                             f"seed {w.strongest.get('seed')}, {w.strongest.get('device', '')}",
                             100 * twin_w.acc if twin_w and twin_w.attacks == w.attacks else None))
    return out


def _twin_value(row: dict[str, Any], twin: dict[str, Any] | None) -> float | None:
    """The ReLU twin's robust accuracy (percent) where it was measured like ``row``: the
    same eps, images (n, seed, sample) and preset parameters."""
    same = ("eps", "n", "seed", "sample", "preset_params")
    if twin is None or twin.get("robust_acc") is None or any(
            twin.get(key) != row.get(key) for key in same):
        return None
    return 100 * twin["robust_acc"]


def _triple(best: dict[tuple[str, str, str], dict[str, Any]], arch: str, attack: str,
            preset: str) -> str:
    """'64.7% / 67.8% / 74.7%': ReLU / k-WTA-0.2 / k-WTA-0.1 of ``arch``, '–' where not
    measured."""
    cells = []
    for variant, _ in VARIANTS:
        row = best.get((f"{arch}-{variant}", attack, preset))
        cells.append("–" if row is None or row.get("robust_acc") is None
                     else _pct(row["robust_acc"]))
    return " / ".join(cells)


def _missing(best: dict[tuple[str, str, str], dict[str, Any]]) -> int:
    """How many cells of ours in Tables 1-2 are not measured (clean accuracy aside)."""
    return sum((f"{arch}-{variant}", attack, preset) not in best
               for arch in ARCHS for variant, _ in VARIANTS
               for attack, preset, _, _ in COLUMNS if attack != "none")


def _verdicts_in_words(audits: list[dict[str, Any]]) -> str:
    """The audit rows' verdicts grouped by verdict, masking first ('Robustness here comes
    from gradient masking: alexnet-kwta-0.2 under `pgd:report` and `deepfool:paper`, ...')."""
    groups: dict[str, dict[str, list[str]]] = {}  # verdict's headline -> model -> attacks
    for r in _audit_order(audits):
        headline = r["verdict"].split(":")[0]  # "Robustness here comes from gradient masking"
        groups.setdefault(headline, {}).setdefault(r["model"], []).append(f"`{r['attack']}`")
    order = sorted(groups, key=lambda h: not h.startswith("Robustness here comes from"))
    return " ".join(f"{headline}: " + ", ".join(f"{model} under {' and '.join(attacks)}"
                                                for model, attacks in groups[headline].items())
                    + "." for headline in order)


def _audit_in_words(results: Path) -> str:
    """The README's line on the audit: its verdicts in a few words, with images and seed."""
    try:
        audits = [r for r in load_rows(results / "audit.json") if r.get("kind") == "audit"]
    except ValueError:
        return ""
    if not audits:
        return ""
    sizes = " or ".join(sorted({str(r["n"]) for r in audits}))
    seeds = "/".join(sorted({str(r["seed"]) for r in audits}))
    devices = "/".join(sorted({str(r.get("device", "?")) for r in audits}))
    return (f"- **The gradient-masking audit** ({sizes} test images, seed {seeds}, device "
            f"{devices}; `python -m kwta_demo audit`). " + _verdicts_in_words(audits))


def status_markdown(results_dir: str | Path | None = None) -> str:
    """The README's summary of the measured robustness, every figure from the results
    files: the report's PGD, the adaptive attacks, AutoAttack's, the worst case, the audit."""
    results = Path(results_dir) if results_dir is not None else RESULTS_DIR
    try:
        result = read_result(results / "reproduction.json")
    except ValueError as e:
        return f"The evaluation results are unreadable: {e}"
    if result is None:
        return ("Nothing is measured yet (`results/reproduction.json`: run `python -m "
                "kwta_demo pipeline run`).")
    best = best_rows(result["rows"])
    sizes = sorted({int(r["n"]) for r in best.values() if r.get("attack") != "none"})
    meta = result.get("meta", {})
    lines = [f"Measured on {' or '.join(f'{n:,}' for n in sizes)} seeded class-balanced test "
             f"images (the same for every model), L-inf eps 0.031, seed {meta.get('seed', 0)}, "
             f"device {meta.get('device', '?')}; ReLU / k-WTA-0.2 / k-WTA-0.1, robust "
             "accuracy (docs/reproduction.md has every row with its 95% interval, command and "
             "time):", ""]
    report = {arch: " / ".join(_report_cell(arch, v, "pgd").split(" ")[0] for v, _ in VARIANTS)
              for arch in ARCHS}
    lines.append("- **The report's PGD cannot cross its eps-ball** (40 steps of 0.003 × eps "
                 "reach 0.12 eps). It leaves "
                 + " and ".join(f"{_triple(best, a, 'pgd', 'report')} of the {t} images "
                                f"standing (the report: {report[a]})"
                                for a, (_, t) in ARCHS.items())
                 + "; the same PGD with the absolute step "
                 + " and ".join(_triple(best, a, "pgd", "corrected") for a in ARCHS)
                 + ", BPDA " + " and ".join(_triple(best, a, "bpda", "paper") for a in ARCHS)
                 + ".")
    adaptive = []
    for arch, (_, title) in ARCHS.items():
        for variant, label in VARIANTS[1:]:
            for s in _survivors(best, f"{arch}-{variant}", (("bpda", "paper"),)):
                adaptive.append(
                    f"{short_label(s.gradient['attack'], s.gradient['preset'])} leaves "
                    f"{_pct(s.gradient['robust_acc'])} of {title} {label}'s images standing"
                    + (f" (ReLU: {_pct(s.twin['robust_acc'])})" if s.twin else "")
                    + f", BPDA fools {s.broken} of those {s.stood}")
    if adaptive:
        lines.append("- **Where k-WTA looks strongest, an adaptive attack takes it back**: "
                     + "; ".join(adaptive) + ".")
    lines.append("- **AutoAttack's attacks**: "
                 + "; ".join(f"{t} APGD-CE {_triple(best, a, 'apgd-ce', 'paper')}, APGD-DLR "
                             f"{_triple(best, a, 'apgd-dlr', 'paper')}, Square (no gradients, "
                             f"1,000 queries) {_triple(best, a, 'square', 'cpu')}"
                             for a, (_, t) in ARCHS.items()) + "."
                 + _square_left_in_brief(best))
    worst = {f"{a}-{v}": w for a in ARCHS for v, _ in VARIANTS
             if (w := worst_case(best, f"{a}-{v}")) is not None}
    in_words = _worst_case_in_words(worst, lead="the")
    if in_words:
        lines.append(f"- **Every attack at once**, per image: {in_words[-1]}")
    audit = _audit_in_words(results)
    if audit:
        lines.append(audit)
    missing = _missing(best)
    if missing:
        lines += ["", f"{missing} cells of Tables 1-2 (–) are not measured yet; the CPU "
                  "pipeline is measuring them (`python -m kwta_demo pipeline status`)."]
    return "\n".join(lines)


def _square_left_in_brief(best: dict[tuple[str, str, str], dict[str, Any]]) -> str:
    """' Of the images Square leaves standing on the k-WTA models, the other attacks on the
    same images fool 225 of 225.' ('' where none is known)."""
    left = [x for arch in ARCHS for variant, _ in VARIANTS[1:]
            if (x := _square_left(best, f"{arch}-{variant}")) is not None]
    if not left:
        return ""
    return (" Of the images Square leaves standing on the k-WTA models, the other attacks "
            f"on the same images fool {sum(x.broken for x in left)} of "
            f"{sum(x.stood for x in left)}.")


def results_files(results_dir: str | Path | None = None) -> list[Path]:
    """The results files behind the Reproduction tab that exist (``RESULTS_FILES``)."""
    folder = Path(results_dir) if results_dir is not None else RESULTS_DIR
    return [folder / name for name in RESULTS_FILES if (folder / name).is_file()]


def reproduction_markdown(
    results_dir: str | Path | None = None, checkpoint_dir: str | Path | None = None
) -> str:
    """The Reproduction tab's text: the PGD finding, Tables 1-3 (report vs ours), notes."""
    results = Path(results_dir) if results_dir is not None else RESULTS_DIR
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else get_settings().checkpoint_dir
    problems = []
    try:
        result = read_result(results / "reproduction.json")
    except ValueError as e:
        result, problems = None, [str(e)]
    try:
        bench = read_result(results / "bench-train-cpu.json")
    except ValueError as e:
        bench, problems = None, problems + [str(e)]
    best = best_rows(result["rows"]) if result else {}
    report = P.REPORT
    parts = [f"Report: {report['authors']}, *{report['title']}*, {report['venue']}; it "
             f"reproduces {report['reproduces']}. Its figures are quoted from its text, by "
             "section and table (`kwta_demo/reporting/published.json`).", ""]
    if result is None:
        parts.append("Our evaluation results do not exist yet (`results/reproduction.json`: "
                     "run `python -m kwta_demo pipeline run`); every cell of ours says "
                     f"\"{NOT_MEASURED}\".")
    else:
        meta = result.get("meta", {})
        parts.append("Ours: " + ", ".join(f"{k} {meta[k]}" for k in
                                          ("data", "device", "device_name", "torch", "seed")
                                          if k in meta)
                     + (f"; the latest run started {meta['date']}" if "date" in meta else "")
                     + _finished_note(result["rows"]) + ".")
    parts += ["", "Data caveat: our CIFAR-10 is a JPEG re-encoding (quality 75), so clean "
              "accuracy runs a point or two below figures on the canonical data; the report "
              "fine-tuned ImageNet-pretrained models at 224x224, ours are CIFAR-sized networks "
              "trained from scratch at 32x32.", ""]
    metrics = _checkpoint_metrics(ckpt)
    parts += _pgd_finding(best) + [""]
    for arch in ARCHS:
        parts += _attack_table(arch, best, metrics) + [""]
    if result is not None:
        parts += (_worst_case(best, test_indices=result.get("meta", {}).get(
            "robust_test_indices", ())) + [""] + _time_table(result["rows"]) + [""])
    adaptive = _adaptive_in_words(best)
    if adaptive:
        parts += adaptive + [""]
    parts += _table3(metrics, bench) + [""] + _audit_section(results) + [""] + _outside()
    if not adaptive:
        parts += ["", ADAPTIVE_NOTE]
    if problems:
        parts += ["", "**Unreadable results files:** " + "; ".join(problems)]
    return "\n".join(parts)
