"""What the evaluation rows say, as numbers: the best row per model and attack, the worst
case per image over every attack, the images each attack leaves standing."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..attacks import get_attack
from ..evaluation.results import wilson_interval
from ..models.architectures import arch_of
from .cells import ARCHS, COLUMNS, VARIANTS, pct

__all__ = ["best_rows", "short_label", "WorstCase", "worst_case", "survivors", "square_left",
           "twin_value", "triple", "missing_rows"]


def best_rows(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Per (model, attack, preset): the row measured on the most images."""
    best: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in rows:
        key = (Path(str(r.get("model", ""))).name, r.get("attack", ""), r.get("preset", ""))
        if key not in best or int(r.get("n", 0)) > int(best[key].get("n", 0)):
            best[key] = r
    return best


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


def survivors(best: dict[tuple[str, str, str], dict[str, Any]], model: str,
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


def square_left(best: dict[tuple[str, str, str], dict[str, Any]], model: str,
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


def twin_value(row: dict[str, Any], twin: dict[str, Any] | None) -> float | None:
    """The ReLU twin's robust accuracy (percent) where it was measured like ``row``: the
    same eps, images (n, seed, sample) and preset parameters."""
    same = ("eps", "n", "seed", "sample", "preset_params")
    if twin is None or twin.get("robust_acc") is None or any(
            twin.get(key) != row.get(key) for key in same):
        return None
    return 100 * twin["robust_acc"]


def triple(best: dict[tuple[str, str, str], dict[str, Any]], arch: str, attack: str,
            preset: str) -> str:
    """'64.7% / 67.8% / 74.7%': ReLU / k-WTA-0.2 / k-WTA-0.1 of ``arch``, '–' where not
    measured."""
    cells = []
    for variant, _ in VARIANTS:
        row = best.get((f"{arch}-{variant}", attack, preset))
        cells.append("–" if row is None or row.get("robust_acc") is None
                     else pct(row["robust_acc"]))
    return " / ".join(cells)


def missing_rows(best: dict[tuple[str, str, str], dict[str, Any]]) -> int:
    """How many cells of ours in Tables 1-2 are not measured (clean accuracy aside)."""
    return sum((f"{arch}-{variant}", attack, preset) not in best
               for arch in ARCHS for variant, _ in VARIANTS
               for attack, preset, _, _ in COLUMNS if attack != "none")
