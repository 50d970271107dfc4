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
from pathlib import Path
from typing import Any

from ..evaluation.results import load_result as read_result
from ..evaluation.results import wilson_interval
from ..settings import get_settings
from ..training.timing import typical_epoch_seconds
from . import published as P
from .analysis import (
    best_rows,
    missing_rows,
    short_label,
    survivors,
    triple,
    worst_case,
)
from .cells import (
    ADAPTIVE_NOTE,
    ARCHS,
    COLUMNS,
    NOT_MEASURED,
    RESULTS_DIR,
    RESULTS_FILES,
    VARIANTS,
    format_cell,
    pct,
    report_cell,
)
from .findings import (
    adaptive_in_words,
    audit_in_words,
    audit_section,
    pgd_finding_in_words,
    square_left_in_brief,
    worst_case_in_words,
    worst_case_section,
)

__all__ = ["status_markdown", "results_files", "reproduction_markdown"]


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
            cells.append(report_cell(arch, variant, report_attack))
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
            lines.append(f"| {name} | {report_cell(arch, variant, 'pgd')} | "
                         f"{format_cell(best.get((name, 'pgd', 'report')))} | "
                         f"{format_cell(best.get((name, 'pgd', 'corrected')))} |")
    return lines + pgd_finding_in_words(best)


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
    report = {arch: " / ".join(report_cell(arch, v, "pgd").split(" ")[0] for v, _ in VARIANTS)
              for arch in ARCHS}
    lines.append("- **The report's PGD cannot cross its eps-ball** (40 steps of 0.003 × eps "
                 "reach 0.12 eps). It leaves "
                 + " and ".join(f"{triple(best, a, 'pgd', 'report')} of the {t} images "
                                f"standing (the report: {report[a]})"
                                for a, (_, t) in ARCHS.items())
                 + "; the same PGD with the absolute step "
                 + " and ".join(triple(best, a, "pgd", "corrected") for a in ARCHS)
                 + ", BPDA " + " and ".join(triple(best, a, "bpda", "paper") for a in ARCHS)
                 + ".")
    adaptive = []
    for arch, (_, title) in ARCHS.items():
        for variant, label in VARIANTS[1:]:
            for s in survivors(best, f"{arch}-{variant}", (("bpda", "paper"),)):
                adaptive.append(
                    f"{short_label(s.gradient['attack'], s.gradient['preset'])} leaves "
                    f"{pct(s.gradient['robust_acc'])} of {title} {label}'s images standing"
                    + (f" (ReLU: {pct(s.twin['robust_acc'])})" if s.twin else "")
                    + f", BPDA fools {s.broken} of those {s.stood}")
    if adaptive:
        lines.append("- **Where k-WTA looks strongest, an adaptive attack takes it back**: "
                     + "; ".join(adaptive) + ".")
    lines.append("- **AutoAttack's attacks**: "
                 + "; ".join(f"{t} APGD-CE {triple(best, a, 'apgd-ce', 'paper')}, APGD-DLR "
                             f"{triple(best, a, 'apgd-dlr', 'paper')}, Square (no gradients, "
                             f"1,000 queries) {triple(best, a, 'square', 'cpu')}"
                             for a, (_, t) in ARCHS.items()) + "."
                 + square_left_in_brief(best))
    worst = {f"{a}-{v}": w for a in ARCHS for v, _ in VARIANTS
             if (w := worst_case(best, f"{a}-{v}")) is not None}
    in_words = worst_case_in_words(worst, lead="the")
    if in_words:
        lines.append(f"- **Every attack at once**, per image: {in_words[-1]}")
    audit = audit_in_words(results)
    if audit:
        lines.append(audit)
    missing = missing_rows(best)
    if missing:
        lines += ["", f"{missing} cells of Tables 1-2 (–) are not measured yet; the CPU "
                  "pipeline is measuring them (`python -m kwta_demo pipeline status`)."]
    return "\n".join(lines)


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
        parts += (worst_case_section(best, test_indices=result.get("meta", {}).get(
            "robust_test_indices", ())) + [""] + _time_table(result["rows"]) + [""])
    adaptive = adaptive_in_words(best)
    if adaptive:
        parts += adaptive + [""]
    parts += _table3(metrics, bench) + [""] + audit_section(results) + [""] + _outside()
    if not adaptive:
        parts += ["", ADAPTIVE_NOTE]
    if problems:
        parts += ["", "**Unreadable results files:** " + "; ".join(problems)]
    return "\n".join(parts)
