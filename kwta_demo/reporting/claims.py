"""The claimed and measured robustness of k-WTA models, each with its source and conditions
(the paper, RobustBench, Tramèr et al., the report, ours beside the ReLU twin)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..evaluation.results import load_result as read_result
from . import published as P
from .analysis import best_rows, short_label, twin_value, worst_case
from .cells import RESULTS_DIR

__all__ = ["Claim", "claims"]


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
                             twin_value(row, twin)))
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
