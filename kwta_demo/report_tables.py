"""The Reproduction tab: the report's Tables 1-3 beside our own measurements, as markdown.

Ours come from ``results/reproduction.json`` (rows of model, attack, preset, eps, n, seed,
device, clean_acc, robust_acc), ``results/bench-*.json`` (rows of workload, impl, ms,
ratio_vs_relu) and each checkpoint's ``metrics.json``. The report's figures are quoted
only where we know them for certain; every other cell says "not available here". Where
a measurement of ours does not exist yet, the table says so instead of showing a number.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .checkpoints import MODEL_NAMES
from .settings import PROJECT_ROOT

__all__ = ["REPORT", "read_rows", "reproduction_markdown"]

REPORT = "Golod & Usluel (2020), a reproduction of Xiao, Zhong & Zheng (ICLR 2020)"
NOT_HERE = "not available here"
# The report's Table 3, as published (measured on its Colab GPU).
REPORT_TABLE3 = {"epoch_relu_s": 381, "epoch_kwta_s": 735, "inference_ratio": "about 4x"}


def read_rows(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]] | None:
    """(rows, meta) from a results file shaped ``{"meta", "rows"}`` or a bare list; None if absent."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not readable JSON ({e})") from None
    if isinstance(data, list):
        return [r for r in data if isinstance(r, dict)], {}
    if isinstance(data, dict) and isinstance(data.get("rows"), list):
        return [r for r in data["rows"] if isinstance(r, dict)], data.get("meta") or {}
    raise ValueError(f"{path}: expected a list of rows or an object with 'rows'")


def _shown(path: Path) -> str:
    """A path relative to the project when it lies inside it."""
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def _pct(x: Any) -> str:
    try:
        return f"{100 * float(x):.2f}%"
    except (TypeError, ValueError):
        return "?"


def _checkpoint_metrics(checkpoint_dir: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for name in MODEL_NAMES:
        path = checkpoint_dir / name / "metrics.json"
        if path.is_file():
            try:
                out[name] = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
    return out


def _table1(rows: list[dict[str, Any]] | None, metrics: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["### Table 1: clean accuracy", "",
             "| model | report | ours (results/reproduction.json) | ours (checkpoint metrics) |",
             "|---|---|---|---|"]
    clean = {r["model"]: r for r in rows or [] if r.get("attack") == "none" and "model" in r}
    for name in MODEL_NAMES:
        r = clean.get(name)
        ours = f"{_pct(r.get('clean_acc'))} (n={r.get('n', '?')}, {r.get('device', '?')})" if r else "not measured yet"
        m = metrics.get(name)
        card = (f"{_pct(m['clean_accuracy'])} (n={m.get('test_images', '?')})"
                if m and m.get("clean_accuracy") is not None else "no checkpoint metrics yet")
        lines.append(f"| {name} | {NOT_HERE} | {ours} | {card} |")
    return lines


def _table2(rows: list[dict[str, Any]] | None) -> list[str]:
    lines = ["### Table 2: robust accuracy", ""]
    attacked = [r for r in rows or [] if r.get("attack") not in (None, "none")]
    if not attacked:
        return lines + ["Our robust accuracies are not measured yet (no attack rows in "
                        "`results/reproduction.json`). The report's figures are "
                        f"{NOT_HERE}."]
    lines += ["| model | attack | preset | eps | n | seed | device | ours | report |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in attacked:
        eps = r.get("eps")
        eps_text = f"{float(eps):.4g} ({float(eps) * 255:.1f}/255)" if isinstance(eps, (int, float)) else "?"
        lines.append(
            f"| {r.get('model', '?')} | {r.get('attack')} | {r.get('preset', '')} | {eps_text} | "
            f"{r.get('n', '?')} | {r.get('seed', '?')} | {r.get('device', '?')} | "
            f"{_pct(r.get('robust_acc'))} | {NOT_HERE} |"
        )
    return lines


def _table3(bench: list[tuple[str, list[dict[str, Any]]]]) -> list[str]:
    lines = ["### Table 3: cost of k-WTA", "",
             "The report's figures (its Colab GPU): one training epoch took "
             f"{REPORT_TABLE3['epoch_relu_s']} s with ReLU and {REPORT_TABLE3['epoch_kwta_s']} s "
             f"with k-WTA ({REPORT_TABLE3['epoch_kwta_s'] / REPORT_TABLE3['epoch_relu_s']:.2f}x); "
             f"inference was {REPORT_TABLE3['inference_ratio']} slower.", ""]
    if not bench:
        return lines + ["Our timings are not measured yet (no `results/bench-*.json`)."]
    lines += ["| file | workload | implementation | ms | vs ReLU |", "|---|---|---|---|---|"]
    for fname, rows in bench:
        for r in rows:
            ratio = r.get("ratio_vs_relu")
            ratio_text = f"{float(ratio):.2f}x" if isinstance(ratio, (int, float)) else "-"
            ms = r.get("ms")
            ms_text = f"{float(ms):.2f}" if isinstance(ms, (int, float)) else "?"
            lines.append(f"| {fname} | {r.get('workload', '?')} | {r.get('impl', '?')} | "
                         f"{ms_text} | {ratio_text} |")
    return lines


def _pgd_note() -> str:
    """The PGD step-size note, with the numbers read from the attack presets."""
    from .attacks import ATTACKS

    pgd = ATTACKS["pgd"]
    eps = pgd.preset_eps.get("report", 0.031)
    lines = []
    for name in ("report", "corrected", "paper", "interactive"):
        p = pgd.presets.get(name)
        if p is None:
            continue
        step = p["step_size"] if p.get("step_size") is not None else p["rel_step_size"] * eps
        how = (f"step {p['step_size']:g}" if p.get("step_size") is not None
               else f"relative step {p['rel_step_size']:g} x eps = {step:.2g}")
        lines.append(f"- `{name}`: {p['steps']} steps, {how}: at most "
                     f"{p['steps'] * step / eps:.2f} x eps of travel at eps = {eps:g}")
    return (
        "**PGD step size.** The report attacked with foolbox's LinfPGD at a *relative* step size "
        "of 0.003 for 40 steps (our `report` preset). foolbox multiplies a relative step by eps, "
        "so each step moves 0.003 x eps and all 40 together at most 0.12 x eps from the "
        "starting point: the attack can barely move inside the eps-ball, and accuracy under it "
        "says little about robustness. Our PGD presets, for comparison:\n" + "\n".join(lines)
    )


ADAPTIVE_NOTE = """**The adaptive attack.** k-WTA makes the network's gradient jump as the set of winners
changes (gradient masking), which stalls attacks that follow the gradient (see the jagged
curves in the Attack tab). It does not remove adversarial examples: attacks that do not trust
the local gradient (gradient estimation, or BPDA through a smooth stand-in for k-WTA, as in
Tramèr et al., NeurIPS 2020) find them again. Robust accuracy under PGD alone overstates the
defence."""


def reproduction_markdown(
    results_dir: str | Path | None = None, checkpoint_dir: str | Path | None = None
) -> str:
    """The Reproduction tab's text: Tables 1-3 (report vs ours) and the notes."""
    from .settings import get_settings

    results = Path(results_dir) if results_dir is not None else PROJECT_ROOT / "results"
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else get_settings().checkpoint_dir
    problems: list[str] = []
    try:
        found = read_rows(results / "reproduction.json")
    except ValueError as e:
        found, problems = None, problems + [str(e)]
    rows, meta = found if found else (None, {})
    bench = []
    for path in sorted(results.glob("bench-*.json")):
        try:
            got = read_rows(path)
        except ValueError as e:
            problems.append(str(e))
            continue
        if got:
            bench.append((path.name, got[0]))
    parts = [f"Report: {REPORT}. Cells marked \"{NOT_HERE}\" are figures of the report that "
             "this app does not reproduce from memory; see the report itself.", ""]
    if rows is None:
        parts.append(f"Our reproduction results are not there yet: `{_shown(results / 'reproduction.json')}` "
                     "does not exist (run `python -m kwta_demo evaluate`).")
    elif meta:
        parts.append("")
        parts.append("Our results: " + ", ".join(
            f"{k} {meta[k]}" for k in ("data", "device", "device_name", "torch", "date") if k in meta) + ".")
    parts.append("")
    parts.append("Data caveat: our CIFAR-10 is a JPEG re-encoding (quality 75), so clean accuracy "
                 "runs a point or two below figures on the canonical data.")
    parts += [""] + _table1(rows, _checkpoint_metrics(ckpt)) + [""] + _table2(rows)
    parts += [""] + _table3(bench) + ["", "### Notes", "", _pgd_note(), "", ADAPTIVE_NOTE]
    if problems:
        parts += ["", "**Unreadable results files:** " + "; ".join(problems)]
    return "\n".join(parts)
