"""The Reproduction tab: the report's Tables 1-3 beside our own measurements, as markdown.

Ours come from ``results/reproduction.json`` (rows of model, attack, preset, eps, n, seed,
device, clean_acc, robust_acc), ``results/bench-*.json`` (rows of workload, impl, ms,
ratio_vs_relu) and each checkpoint's ``metrics.json``. The report's figures come only from
``kwta_demo.published`` (read from its notebook, each with its source, cited under its
table); what the report did not measure says so. Where a measurement of ours does not exist
yet, the table says so instead of showing a number.

``format_published``, ``report_figure``, ``published_cell`` and ``table3_figures`` are shared
with ``scripts/reproduction_report.py``, which renders the same figures for the docs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from . import published as P
from .checkpoints import MODEL_NAMES
from .settings import PROJECT_ROOT

__all__ = [
    "REPORT", "REPORT_ATTACKS", "SNAPSHOT", "format_published", "published_cell", "read_rows",
    "report_figure", "reproduction_markdown", "table3_figures",
]

REPORT = "Golod & Usluel (2020), a reproduction of Xiao, Zhong & Zheng (ICLR 2020)"
SNAPSHOT = "B"
"""The notebook snapshot whose figures fill the report's columns (B looks later than A)."""
_COMMITS = {"A": P.NB_A, "B": P.NB_B}
_OTHER = "A" if SNAPSHOT == "B" else "B"  # its clean accuracies are shown in a note
NOT_RUN = "not run by the report"
NOT_FOUND = "not found in the report's notebook"
NOT_MEASURED = "not measured yet"
REPORT_ATTACKS: dict[tuple[str, str], tuple[str, str]] = {
    ("pgd", "corrected"): ("pgd", "robust_acc"),
    ("deepfool", "paper"): ("deepfool", "robust_acc"),
    ("vga", "paper"): ("vga", "vga_true_label_kept"),
}
"""Our (attack, preset) -> the (attack, quantity) of the report's figure it stands beside.
VGA's is the share of pairs still classified as the true label (the notebook's "Robustness
Accuracy"), not our 1 - (target reached): the nearest the report has, with a caveat."""


# -- the published figures (shared with scripts/reproduction_report.py) -------------------

def format_published(value: float) -> str:
    """A published percentage as printed, trimmed to 4 decimals: 87.7%, 0.9375%, 0.0%."""
    text = f"{value:.4f}".rstrip("0")
    return f"{text}0%" if text.endswith(".") else f"{text}%"


def report_figure(
    model: str, quantity: str, attack: str | None = None, snapshot: str = SNAPSHOT
) -> P.Figure | None:
    """The report's figure for ``model`` in the notebook ``snapshot``, or None if it has none."""
    found = P.find_figures(model=model, quantity=quantity, attack=attack, snapshot=snapshot)
    return found[0] if found else None


def published_cell(model: str, quantity: str, attack: str | None, snapshot: str) -> str:
    """``report_figure`` as a table cell: the percentage, or "-" when there is none."""
    fig = report_figure(model, quantity, attack, snapshot)
    return format_published(fig.value) if fig else "-"


def table3_figures() -> dict[str, P.Figure]:
    """The report's Table 3 (seconds per training epoch) by activation: "relu", "kwta"."""
    return {f.key.rsplit(".", 1)[1]: f for f in P.find_figures(table=3)}


def _cites(figures: list[P.Figure]) -> str:
    """The distinct sources of ``figures``, cited and linked."""
    cited = {f.source.cite(): f.source.url for f in figures}
    return "; ".join(f"[{cite}]({url})" if url else cite for cite, url in cited.items())


def _is_old(fig: P.Figure) -> bool:
    return "#OLD" in fig.source.quote


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
             f"| model | report (notebook {SNAPSHOT}) | ours (results/reproduction.json) "
             "| ours (checkpoint metrics) |",
             "|---|---|---|---|"]
    clean = {r["model"]: r for r in rows or [] if r.get("attack") == "none" and "model" in r}
    shown, other = [], []
    for name in MODEL_NAMES:
        fig = report_figure(name, "clean_acc")
        shown += [fig] if fig else []
        other += P.find_figures(model=name, quantity="clean_acc", snapshot=_OTHER)
        report = format_published(fig.value) if fig else NOT_FOUND
        r = clean.get(name)
        ours = f"{_pct(r.get('clean_acc'))} (n={r.get('n', '?')}, {r.get('device', '?')})" if r else NOT_MEASURED
        m = metrics.get(name)
        card = (f"{_pct(m['clean_accuracy'])} (n={m.get('test_images', '?')})"
                if m and m.get("clean_accuracy") is not None else "no checkpoint metrics yet")
        lines.append(f"| {name} | {report} | {ours} | {card} |")
    if shown:
        lines += ["", f"Report: {_cites(shown)}: {shown[0].setting}; ImageNet-pretrained "
                  "torchvision models fine-tuned for a few epochs (ours: trained on 32x32 "
                  "inputs), so the two compare only loosely."]
    if other:
        lines += ["", f"The notebook's snapshot {_OTHER} ({_cites(other)}), with shorter training "
                  "(so probably earlier; neither is dated), records other figures: " + ", ".join(
                      f"{f.model} {format_published(f.value)}" for f in other) + "."]
    return lines


def _report_attack_text(fig: P.Figure) -> str:
    """One robust-accuracy figure of the report with its sample and caveat."""
    old = " #OLD" if _is_old(fig) else ""
    if fig.quantity == "vga_true_label_kept":
        return (f"{format_published(fig.value)} true label kept (n={fig.n} pairs, "
                f"no eps-ball, 224x224){old}")
    return f"{format_published(fig.value)} (n={fig.n} first test images, 224x224){old}"


def _report_cell(row: dict[str, Any]) -> str:
    """The report's figure beside one of our attack rows, or why there is none."""
    attack, preset = row.get("attack"), row.get("preset")
    match = REPORT_ATTACKS.get((attack, preset))
    if match is None:
        return NOT_RUN + (" (see the PGD note)" if (attack, preset) == ("pgd", "report") else "")
    eps = row.get("eps")
    if attack != "vga" and not (isinstance(eps, (int, float))
                                and math.isclose(float(eps), P.REPORT_EPS, abs_tol=1e-9)):
        return f"{NOT_RUN} at this eps (only {P.REPORT_EPS:g})"
    fig = report_figure(str(row.get("model")), match[1], match[0])
    return _report_attack_text(fig) if fig else NOT_FOUND


def _report_table2() -> list[str]:
    """The report's robust accuracies (one snapshot), with the caveats they need."""
    nb = P.NOTEBOOK_PGD
    head = {"pgd": f"PGD, {nb['steps']} x {nb['abs_stepsize']:g} absolute", "deepfool": "DeepFool",
            "vga": "VGA, true label kept"}
    lines = [f"The report's robust accuracies (notebook {SNAPSHOT}, eps = {P.REPORT_EPS:g}):", "",
             "| model | " + " | ".join(f"{head[attack]} (our `{ours}:{preset}`)"
                                      for (ours, preset), (attack, _) in REPORT_ATTACKS.items())
             + " |",
             "|---|" + "---|" * len(REPORT_ATTACKS)]
    shown = []
    for name in MODEL_NAMES:
        cells = []
        for attack, quantity in REPORT_ATTACKS.values():
            fig = report_figure(name, quantity, attack)
            shown += [fig] if fig else []
            cells.append(_report_attack_text(fig) if fig else NOT_FOUND)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if not shown:
        return lines
    foolbox = next((f for f in shown if f.attack != "vga"), None)
    vga = next((f for f in shown if f.attack == "vga"), None)
    old = next((f for f in shown if _is_old(f)), None)
    notes = [f"Report: {_cites(shown)}."]
    if foolbox is not None:
        notes.append(f"PGD and DeepFool ran in foolbox on the first {foolbox.n} test images, "
                     "resized from 32x32 to 224x224, so eps bounds far more pixel values than "
                     "ours on 32x32: a different threat model.")
    if vga is not None:
        notes.append(f"VGA: {vga.setting}; the report counts pairs still classified as the "
                     "true label, our `vga` counts pairs whose target was not reached, within "
                     "the eps-ball.")
    if old is not None:
        notes.append(f"#OLD: {old.note}.")
    return lines + ["", " ".join(notes), "",
                    "The report ran no C&W, BPDA or gradient estimation, and no PGD preset "
                    f"other than `corrected`: those rows of ours are \"{NOT_RUN}\"."]


def _table2(rows: list[dict[str, Any]] | None) -> list[str]:
    lines = ["### Table 2: robust accuracy", ""]
    attacked = [r for r in rows or [] if r.get("attack") not in (None, "none")]
    if not attacked:
        lines += ["Our robust accuracies are not measured yet (no attack rows in "
                  "`results/reproduction.json`)."]
    else:
        lines += ["| model | attack | preset | eps | n | seed | device | ours | report |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in attacked:
            eps = r.get("eps")
            eps_text = f"{float(eps):.4g} ({float(eps) * 255:.1f}/255)" if isinstance(eps, (int, float)) else "?"
            lines.append(
                f"| {r.get('model', '?')} | {r.get('attack')} | {r.get('preset', '')} | {eps_text} | "
                f"{r.get('n', '?')} | {r.get('seed', '?')} | {r.get('device', '?')} | "
                f"{_pct(r.get('robust_acc'))} | {_report_cell(r)} |"
            )
    return lines + [""] + _report_table2()


def _cost_claim() -> str:
    """The report README's words on the cost of k-WTA (it gives no numbers)."""
    fact = next(f for f in P.CODE_FACTS if f.key == "report-cost-claim")
    return f"\"{fact.source.quote}\" ({fact.source.cite()})"


def _table3(bench: list[tuple[str, list[dict[str, Any]]]]) -> list[str]:
    t3 = table3_figures()
    relu, kwta = t3["relu"], t3["kwta"]
    lines = ["### Table 3: cost of k-WTA", "",
             f"The report's figures, {relu.status} ({relu.source.cite()}; {relu.note}): "
             f"one training epoch took {relu.value:g} {relu.unit} with ReLU and "
             f"{kwta.value:g} {kwta.unit} with k-WTA ({kwta.value / relu.value:.2f}x), on Colab. "
             "No inference-time figure of the report was found; its README says only "
             f"{_cost_claim()}.", ""]
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
    """The PGD step-size note: what the report's notebook ran, with reaches from pgd_reach."""
    from .attacks import ATTACKS

    pgd = ATTACKS["pgd"]
    fact = next(f for f in P.CODE_FACTS if f.key == "pgd-absolute-step")
    nb, var = P.NOTEBOOK_PGD, P.UNATTRIBUTED_PGD
    ran, variant = P.pgd_reach("corrected"), P.pgd_reach("report")
    lines = []
    for name in ("corrected", "report", "paper", "interactive"):
        if name not in pgd.presets:
            continue
        r = P.pgd_reach(name)
        rel = pgd.presets[name].get("rel_step_size")
        how = f"step {r.step:g}" if rel is None else f"relative step {rel:g} x eps = {r.step:.2g}"
        lines.append(f"- `{name}`: {r.steps} steps, {how}: at most {r.reach:.2g} "
                     f"({r.ratio:.2f} x eps) of travel at eps = {r.eps:g}")
    return (
        f"**PGD step size.** The report's notebook ({fact.source.cite()}) ran foolbox's "
        f"`LinfPGD(steps={nb['steps']}, random_start={nb['random_start']}, "
        f"abs_stepsize={nb['abs_stepsize']:g})` at eps = {nb['eps']:g}: an *absolute* step, "
        f"our `corrected` preset; {ran.steps} steps reach {ran.reach:.2g} = "
        f"{ran.ratio:.2f} x eps, enough to cross the eps-ball. This project's issue described "
        f"the report's setting as a *relative* step (`rel_stepsize={var['rel_stepsize']:g}`, "
        "our `report` preset); that variant appears only in a script whose repository is "
        "unknown, so it is not attributed to the report. foolbox multiplies a relative step by "
        f"eps: {variant.step:.2g} per step, {variant.reach:.2g} = {variant.ratio:.2f} x eps for "
        f"all {variant.steps}, so such an attack barely moves inside the eps-ball and accuracy "
        "under it says little about robustness. Our PGD presets:\n" + "\n".join(lines)
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
    parts = [f"Report: {REPORT}. Its figures here are read from its notebook "
             f"(`{P.REPORT_REPO}`, `{P.NOTEBOOK}`, snapshot {SNAPSHOT} = "
             f"`{_COMMITS[SNAPSHOT][:8]}` unless said otherwise; the "
             "report's PDF could not be read), each cited under its table; "
             f"\"{NOT_RUN}\" marks what it did not measure. Sources: "
             "`kwta_demo/published.py`.", ""]
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
