"""The cells of the reproduction tables: percentages with their intervals, the report's
figure beside ours, and the columns both tables share."""

from __future__ import annotations

import math
from typing import Any

from ..settings import PROJECT_ROOT
from . import published as P

__all__ = ["NOT_RUN", "NOT_MEASURED", "ARCHS", "VARIANTS", "COLUMNS", "RESULTS_DIR",
           "RESULTS_FILES", "ADAPTIVE_NOTE", "pct", "format_cell", "report_cell", "join_and"]


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


def pct(x: float) -> str:
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
    return f"{pct(value)}{interval}, {what}={n}"


def report_cell(arch: str, variant: str, attack: str | None) -> str:
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


def join_and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
