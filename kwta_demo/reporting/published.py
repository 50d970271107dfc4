"""Published figures of the k-WTA paper, its reproduction report and RobustBench, with sources.

The data live in ``published.json`` beside this module: every figure with the quantity
it measures, its setting and n, and the source it was read from (the report's text, by
section and table, or a repository file at a commit), quoted verbatim; and the facts
about the published code that decide whether two numbers can be compared at all. This
module only loads and queries them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..attacks import ATTACKS
from ..attacks.gradient import step_size_of

__all__ = [
    "Source", "Figure", "CodeFact", "PgdReach", "REPORT", "REPORT_EPS",
    "figures", "code_facts", "code_fact", "find_figures", "figure_rows", "pgd_reach",
]

DATA = Path(__file__).with_name("published.json")
REPORT_EPS = 0.031
"""The L-inf radius of every report attack (§3.3: 'a perturbation ε = 0.031')."""


@dataclass(frozen=True)
class Source:
    """Where a figure or fact was read, and the text read there (verbatim, whitespace
    collapsed). ``repo`` is None for the report's own text."""

    repo: str | None
    path: str
    commit: str | None
    where: str
    quote: str

    def cite(self) -> str:
        """'the report, §3.3, Table 1 ...' or 'repo@commit:path, where'."""
        if self.repo is None:
            return f"Golod and Usluel (2020), {self.where}"
        at = f"@{self.commit[:8]}" if self.commit else ""
        return f"{self.repo}{at}:{self.path}, {self.where}"

    @property
    def url(self) -> str | None:
        """A GitHub link to the file at its commit, when there is one."""
        if not self.repo or not self.commit:
            return None
        return f"https://github.com/{self.repo}/blob/{self.commit}/{self.path}"


@dataclass(frozen=True)
class Figure:
    """One published number, in ``unit`` as printed; ``n`` counts what it averages over
    (images, or (image, target) pairs for VGA), None where the source does not say."""

    key: str
    publication: str  # "report" or "robustbench"
    table: int | None  # the report's table number
    model: str | None  # our checkpoint name it stands beside
    quantity: str  # clean_acc, robust_acc, epoch_seconds, test_seconds, ...
    attack: str | None
    setting: str
    value: float
    unit: str
    n: int | None
    source: Source
    note: str = ""

    @property
    def fraction(self) -> float | None:
        """The value as a fraction for percentages (our rows' unit), else None."""
        return self.value / 100.0 if self.unit == "%" else None


@dataclass(frozen=True)
class CodeFact:
    """What a published method did, read from its text or code, and what follows from it."""

    key: str
    finding: str
    consequence: str
    source: Source
    before: Source | None = None  # the earlier version, where the fact is a change


@lru_cache(maxsize=1)
def _load() -> dict[str, Any]:
    data = json.loads(DATA.read_text(encoding="utf-8"))
    if data.get("format") != 1:
        raise ValueError(f"{DATA}: unknown format {data.get('format')!r}")
    return data


def figures() -> tuple[Figure, ...]:
    """Every published figure."""
    return tuple(Figure(**{**f, "source": Source(**f["source"])}) for f in _load()["figures"])


def code_facts() -> tuple[CodeFact, ...]:
    """Every fact about the published methods."""
    out = []
    for f in _load()["code_facts"]:
        before = Source(**f["before"]) if f.get("before") else None
        out.append(CodeFact(**{**f, "source": Source(**f["source"]), "before": before}))
    return tuple(out)


def code_fact(key: str) -> CodeFact:
    """The fact ``key`` (KeyError naming the known keys if there is none)."""
    for fact in code_facts():
        if fact.key == key:
            return fact
    raise KeyError(f"no code fact {key!r}; known: {', '.join(f.key for f in code_facts())}")


REPORT: dict[str, str] = dict(_load()["report"])
"""Title, authors, venue, code repository and what the report reproduces."""


def find_figures(
    *, publication: str | None = None, table: int | None = None, model: str | None = None,
    attack: str | None = None, quantity: str | None = None,
) -> list[Figure]:
    """Figures matching every given filter."""
    wanted = {"publication": publication, "table": table, "model": model, "attack": attack,
              "quantity": quantity}
    return [f for f in figures()
            if all(v is None or getattr(f, k) == v for k, v in wanted.items())]


def figure_rows(**filters: Any) -> list[dict[str, Any]]:
    """``find_figures`` as flat dicts (source as a citation string, url, quote)."""
    rows = []
    for f in find_figures(**filters):
        row = {k: v for k, v in asdict(f).items() if k != "source"}
        row.update(fraction=f.fraction, source=f.source.cite(), url=f.source.url,
                   quote=f.source.quote)
        rows.append(row)
    return rows


@dataclass(frozen=True)
class PgdReach:
    """How far a PGD preset can move from its starting point: steps x step, against eps."""

    preset: str
    steps: int
    step: float
    eps: float

    @property
    def reach(self) -> float:
        """The most L-inf distance all steps together can cover."""
        return self.steps * self.step

    @property
    def ratio(self) -> float:
        """reach / eps: below 1 the attack cannot cross the eps-ball from its start."""
        return self.reach / self.eps


def pgd_reach(preset: str, eps: float | None = None) -> PgdReach:
    """The reach of our PGD ``preset`` at ``eps`` (default: its published eps, else 0.031)."""
    spec = ATTACKS["pgd"]
    if preset not in spec.presets:
        raise ValueError(f"no PGD preset {preset!r}; choose one of {', '.join(spec.presets)}")
    params = spec.presets[preset]
    eps = float(eps if eps is not None else spec.preset_eps.get(preset, REPORT_EPS))
    return PgdReach(preset, int(params["steps"]), step_size_of(dict(params), eps), eps)
