"""The reproduction's findings in words, each generated from the rows it is about: the
worst case, the adaptive attacks, Square, the report's PGD, the audit and transfer matrices."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from ..evaluation.audit import beats, load_rows
from ..models.architectures import arch_of
from .analysis import WorstCase, short_label, square_left, survivors, worst_case
from .cells import (
    ADAPTIVE_NOTE,
    ARCHS,
    NOT_MEASURED,
    VARIANTS,
    format_cell,
    join_and,
    pct,
    report_cell,
)

__all__ = ["worst_case_line", "worst_case_section", "unbroken_images", "worst_case_in_words",
           "adaptive_in_words", "square_in_words", "pgd_finding_in_words", "audit_section",
           "transfer_in_words", "verdicts_in_words", "audit_in_words", "square_left_in_brief"]


def worst_case_line(label: str, w: WorstCase) -> str:
    strongest = short_label(w.strongest["attack"], w.strongest["preset"])
    return (f"| {label} | {len(w.attacks)}: {', '.join(short_label(a, p) for a, p in w.attacks)} "
            f"| {strongest}: {format_cell(w.strongest)} "
            f"| {format_cell({'robust_acc': w.acc, 'robust_ci95': w.ci95, 'n': w.n})} |")


def worst_case_section(best: dict[tuple[str, str, str], dict[str, Any]], eps: float = 0.031,
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
            lines.append(worst_case_line(model, w))
            sizes = sorted({int(r["n"]) for (m, _, _), r in best.items()
                            if m == model and r.get("robust_per_image")
                            and math.isclose(float(r.get("eps", 0)), eps)}, reverse=True)
            for n in sizes[1:]:
                more = worst_case(best, model, eps, n)
                if more is not None and len(more.attacks) > len(w.attacks):
                    fewer = True
                    lines.append(worst_case_line(f"{model}, first {n} images", more))
    lines += ["", f"All at eps = {eps:g} (L-inf) on the models' largest common set of images; "
              "the report's VGA, which has no eps-ball, is left out. "
              + ("Attacks run on fewer images join in on a line of their own, over those "
                 "images (the first n of the sample, where every attack listed ran). "
                 if fewer else "Attacks run on fewer images are left out (their rows are in "
                 "Tables 1-2). ")
              + "An image counts as robust in the last column only if every attack listed "
              "failed on it, as AutoAttack scores its ensemble."]
    named = unbroken_images(worst, test_indices)
    return lines + worst_case_in_words(worst) + (["", named] if named else [])


def unbroken_images(worst: dict[str, WorstCase], test_indices: Sequence[int],
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


def worst_case_in_words(worst: dict[str, WorstCase],
                         lead: str = "Under every attack at once, the") -> list[str]:
    """Each k-WTA model's worst case beside its ReLU twin's, in words, from the rows; the
    sentence opens with ``lead`` and ' k-WTA models keep ...'."""
    kwta, relu, within, above = [], [], [], []
    for arch in ARCHS:
        twin = worst.get(f"{arch}-relu")
        if twin is None:
            continue
        relu.append(f"{pct(twin.acc)} ({arch}-relu)")
        for variant, _ in VARIANTS[1:]:
            model = f"{arch}-{variant}"
            if model not in worst:
                continue
            w = worst[model]
            kwta.append(f"{pct(w.acc)} ({model})")
            (within if w.ci95[0] <= twin.ci95[1] else above).append(model)
    if not kwta:
        return []
    sizes = sorted({w.n for w in worst.values()})
    images = " or ".join(f"{n:,}" for n in sizes)
    said = (f"{lead} k-WTA models keep {join_and(kwta)} of their images, "
            f"the ReLU models {join_and(relu)}.")
    if within:
        whose = "its 95% interval overlaps" if len(within) == 1 else "their 95% intervals overlap"
        said += (f" {join_and(within)}: {whose} the ReLU twin's, so no robustness beyond the "
                 f"ReLU model's is measurable on {images} images.")
    if above:
        said += (f" {join_and(above)}: above the ReLU twin's 95% interval; these attacks leave "
                 "more standing there than on the ReLU model.")
    return ["", said]


def adaptive_in_words(best: dict[tuple[str, str, str], dict[str, Any]]) -> list[str]:
    """Per k-WTA model: the gradient attack that leaves the most images standing, and what
    the adaptive attacks do to those very images (per image, on the images both ran on)."""
    said = []
    for arch in ARCHS:
        for variant, _ in VARIANTS[1:]:
            model = f"{arch}-{variant}"
            found = survivors(best, model)
            if not found:
                continue
            g, twin = found[0].gradient, found[0].twin
            name = short_label(g["attack"], g["preset"])
            text = (f"On {model}, the gradient attack that leaves the most standing is "
                    f"{name}: {format_cell(g)}"
                    + (f" (ReLU twin: {pct(twin['robust_acc'])})" if twin else "") + ".")
            for s in found:
                r = s.adaptive
                on = "" if s.n == int(g["n"]) else f" on the first {s.n} of those images"
                text += (f" {short_label(r['attack'], r['preset'])} leaves {format_cell(r)}"
                         f"{on}, and fools {s.broken} of the {s.stood} images {name} left "
                         "standing.")
            said.append(text)
    square = [t for arch in ARCHS for variant, _ in VARIANTS[1:]
              if (t := square_in_words(best, f"{arch}-{variant}"))]
    if not said and not square:
        return []
    return (["### Where k-WTA looks strongest, the adaptive attacks", "", ADAPTIVE_NOTE, "",
             " ".join(said)]
            + (["", "Square reads only the model's scores, never a gradient. "
                + " ".join(square)] if square else []))


def square_in_words(best: dict[tuple[str, str, str], dict[str, Any]], model: str) -> str | None:
    """'On m it leaves 25.3% [...] standing (ReLU twin: 1.9%); the 7 other attacks ...'."""
    left = square_left(best, model)
    if left is None:
        return None
    return (f"On {model} it leaves {format_cell(left.square)} standing"
            + (f" (ReLU twin: {pct(left.twin['robust_acc'])})" if left.twin else "")
            + f"; the {left.others} other attacks run on the same images fool {left.broken} of "
            f"those {left.stood} ({short_label(left.top['attack'], left.top['preset'])} "
            f"alone {left.top_broken}).")


def pgd_finding_in_words(best: dict[tuple[str, str, str], dict[str, Any]]) -> list[str]:
    """What the table says, in words, once every model has both rows (every figure
    from the rows)."""
    names = [f"{arch}-{variant}" for arch in ARCHS for variant, _ in VARIANTS]
    short = {n: best.get((n, "pgd", "report")) for n in names}
    full = {n: best.get((n, "pgd", "corrected")) for n in names}
    if not all(short.values()) or not all(full.values()):
        return []
    relu = [n for n in names if n.endswith("-relu")]
    kept = " and ".join(pct(short[n]["robust_acc"]) for n in relu)
    reported = " and ".join(report_cell(arch_of(n), "relu", "pgd").split(" ")[0] for n in relu)
    worst = max(full.values(), key=lambda r: r["robust_acc"])
    return ["", f"With the report's step, our ReLU models ({', '.join(relu)}) keep {kept} of "
            f"their images, where the report's kept {reported}: how much an attack that "
            "cannot cross the eps-ball leaves standing depends on the model (ours are 32 px "
            "networks trained from scratch, the report's ImageNet networks at 224 px), so "
            "the differences it shows are not a measure of a defence. With the absolute "
            f"step, no model keeps more than {pct(worst['robust_acc'])} ({worst['model']})."]


def audit_section(results: Path) -> list[str]:
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
    lines += ["In short: " + verdicts_in_words(audits), "",
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
        reading = transfer_in_words(r)
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


def transfer_in_words(row: dict[str, Any]) -> str | None:
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


def verdicts_in_words(audits: list[dict[str, Any]]) -> str:
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


def audit_in_words(results: Path) -> str:
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
            f"{devices}; `python -m kwta_demo audit`). " + verdicts_in_words(audits))


def square_left_in_brief(best: dict[tuple[str, str, str], dict[str, Any]]) -> str:
    """' Of the images Square leaves standing on the k-WTA models, the other attacks on the
    same images fool 225 of 225.' ('' where none is known)."""
    left = [x for arch in ARCHS for variant, _ in VARIANTS[1:]
            if (x := square_left(best, f"{arch}-{variant}")) is not None]
    if not left:
        return ""
    return (" Of the images Square leaves standing on the k-WTA models, the other attacks "
            f"on the same images fool {sum(x.broken for x in left)} of "
            f"{sum(x.stood for x in left)}.")
