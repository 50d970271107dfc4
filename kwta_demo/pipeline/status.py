"""What the pipeline has done and how long the rest will take (``pipeline status``),
estimated from the seconds measured so far."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from ..evaluation.audit import load_rows
from ..evaluation.results import RobustColumn, load_result, parts_folder, robust_row_key
from ..models.architectures import arch_of
from ..models.checkpoints import weights_sha256
from ..training.config import parse_image_sizes, parse_stage
from ..training.timing import SIZE_EXPONENT, epoch_seconds
from .plan import DEFAULT_PLAN, EvalStep, Plan, TrainStep, checkpoint_root
from .runner import (
    parts_dir,
    pipeline_files,
    rows_present,
    running_pid,
    stage_done,
    state_summary,
)

ADVERSARIAL_EPOCH_COST = 1.6
"""An adversarial training epoch over a standard one of the same model: its step costs
1.57-1.76x (``benchmarks/train_speed.py --only n-fgsm``, docs/training.md)."""

__all__ = ["ADVERSARIAL_EPOCH_COST", "pipeline_status", "format_status", "evaluation_estimate",
           "audit_estimate", "rows_in_progress", "stage_remaining", "partial_epoch32"]


# ------------------------------------------------------------------ status


# Seconds per epoch grow with the image side to this power: ResNet18 on a 2-core CPU
# measured 648, 333 and 205 img/s at 16, 24 and 32 px (bf16, batch 128), i.e. 1.66-1.68.
_CostKey = tuple[str, str, str, float]  # (arch, attack, preset, eps)


def _seconds_per_image(plan: Plan, rows: list[dict[str, Any]]) -> Callable[[_CostKey], float | None]:
    """Seconds per image of an attack on an architecture: the slower of that architecture's
    models in the evaluation's own rows, else in ``attack-cost-cpu.json`` beside the
    results (``benchmarks/attack_cost.py``), else the mean of everything known."""
    measured: dict[_CostKey, list[float]] = {}
    for r in rows:
        if r.get("seconds") and r.get("n"):
            key = (arch_of(r["model"]), r["attack"], r.get("preset", ""), float(r.get("eps", 0.0)))
            measured.setdefault(key, []).append(r["seconds"] / r["n"])
    costs: dict[_CostKey, list[float]] = {}
    cost_file = Path(plan.results).parent / "attack-cost-cpu.json"
    try:
        cost_rows = json.loads(cost_file.read_text()).get("rows", []) if cost_file.is_file() else []
    except (OSError, ValueError):
        cost_rows = []
    for c in cost_rows:
        spec = RobustColumn.parse(c["attack"], 0.031)
        costs.setdefault((arch_of(c["model"]), spec.attack, spec.preset, spec.eps),
                         []).append(float(c["seconds_per_image"]))
    everything = [v for values in (*measured.values(), *costs.values()) for v in values]
    fallback = sum(everything) / len(everything) if everything else None

    def lookup(key: _CostKey) -> float | None:
        found = measured.get(key) or costs.get(key)
        return max(found) if found else fallback

    return lookup


def audit_estimate(plan: Plan, rows: list[dict[str, Any]], eval_rows: list[dict[str, Any]]
                   ) -> tuple[int, int, float | None]:
    """Audit rows done, in all, and the seconds left: an architecture's own rows' mean
    seconds, else another's scaled by how much slower its PGD is per image. A model's
    later attacks reuse the checks its first one made (Square above all), so this runs high."""
    per_image = _seconds_per_image(plan, eval_rows)
    seconds: dict[str, list[float]] = {}
    for r in rows:
        if r.get("seconds"):
            seconds.setdefault(arch_of(r["model"]), []).append(float(r["seconds"]))
    done = total = 0
    left: float | None = 0.0
    for step in plan.audits:
        n_rows = len(step.models) * len(step.attacks) + 1  # and one transfer matrix
        mine = set(step.models) | {f"{step.arch}-at" if step.adversarial else step.arch}
        have = sum(1 for r in rows if r["model"] in mine)
        done, total = done + min(have, n_rows), total + n_rows
        if have >= n_rows:
            continue
        own = seconds.get(step.arch)
        if own:
            row = sum(own) / len(own)
        else:
            other = next(iter(seconds), None)
            pgd = [per_image((a, "pgd", "report", 0.031)) for a in (step.arch, other)]
            row = (sum(seconds[other]) / len(seconds[other]) * pgd[0] / pgd[1]
                   if other and None not in pgd and pgd[1] else None)
        left = None if left is None or row is None else left + row * (n_rows - have)
    return done, total, left


def _batches_done(plan: Plan) -> Callable[[EvalStep, str, Any], int]:
    """Finished batches kept of a model's row in an evaluation step (``evaluate``'s parts
    folder beside the results; 0 where its checkpoint is not there to name it). Each
    checkpoint is hashed once."""
    parts = parts_dir(plan)
    root = checkpoint_root(plan)
    shas: dict[str, str | None] = {}

    def count(step: EvalStep, model: str, spec: Any) -> int:
        if model not in shas:
            try:
                shas[model] = weights_sha256(root / model)
            except (OSError, ValueError):
                shas[model] = None
        if shas[model] is None:
            return 0
        folder = parts_folder(parts, robust_row_key(model, shas[model], spec, step.n,
                                                        step.seed), step.batch_size)
        return len(list(folder.glob("*.json"))) if folder.is_dir() else 0

    return count


def rows_in_progress(plan: Plan, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The evaluation's rows not finished but with finished batches kept: model, attack
    (``name:preset``), eps, n, batches done and in all, and the images those batches hold."""
    have = {(Path(r["model"]).name, r["attack"], r.get("preset", ""), float(r.get("eps", 0.0)),
             int(r.get("n", 0))) for r in rows}
    count = _batches_done(plan)
    found = []
    for step in plan.evaluate:
        for model in step.models:
            for text in step.attacks:
                spec = RobustColumn.parse(text, 0.031)
                if (model, spec.attack, spec.preset, spec.eps, step.n) in have:
                    continue
                batches = -(-step.n // step.batch_size)
                done = min(count(step, model, spec), batches)
                if done:
                    found.append({"model": model, "attack": f"{spec.attack}:{spec.preset}",
                                  "eps": spec.eps, "n": step.n, "batches_done": done,
                                  "batches": batches,
                                  "images_done": min(step.n, done * step.batch_size)})
    return found


def evaluation_estimate(plan: Plan, rows: list[dict[str, Any]],
                        in_progress: list[dict[str, Any]] | None = None
                        ) -> tuple[int, int, float | None]:
    """Rows of the plan's evaluation done, rows in all, and the seconds left (None: no
    measurement to go on).

    A missing row costs its new images (the samples are nested, so a larger row reuses a
    smaller one's) times the seconds per image measured for its attack
    (name, preset, eps) on its architecture: by this evaluation's own rows, else by
    ``benchmarks/attack_cost.py`` (``attack-cost-cpu.json`` beside the results), else the
    mean of what is known. Attacks differ by 20x per image here, so the mean of the rows
    done so far is no estimate of the rest. The images a stopped run kept
    (``in_progress``, from ``rows_in_progress``, which this reads when not given) count
    as done.
    """
    per_image = _seconds_per_image(plan, rows)
    have, clean = rows_present(rows)
    clean_per_image = [r["seconds"] / r["n"] for r in rows
                       if r.get("attack") == "none" and r.get("seconds") and r.get("n")]
    done = total = 0
    left: float | None = 0.0
    for model in dict.fromkeys(m for step in plan.evaluate for m in step.models):
        total += 1
        if model in clean:
            done += 1
            continue
        # the clean row is one float32 pass over the test split, which train timed too
        metrics = checkpoint_root(plan) / model / "metrics.json"
        try:
            seconds = json.loads(metrics.read_text()).get("eval_seconds")
        except (OSError, ValueError):
            seconds = None
        if seconds is None and clean_per_image:
            seconds = max(clean_per_image) * (plan.limit_test or 10_000)
        left = None if left is None or seconds is None else left + seconds
    if in_progress is None:
        in_progress = rows_in_progress(plan, rows)
    kept = {(r["model"], r["attack"], r["eps"], r["n"]): r["images_done"] for r in in_progress}
    for step in plan.evaluate:
        for model in step.models:
            for text in step.attacks:
                spec = RobustColumn.parse(text, 0.031)
                total += 1
                if (model, spec.attack, spec.preset, spec.eps, step.n) in have:
                    done += 1
                    continue
                # the samples are nested: a larger row reuses a smaller one's images, and
                # the batches a stopped run finished (the smaller row's among them)
                reused = max([h[4] for h in have if h[:4] == (model, spec.attack, spec.preset,
                                                              spec.eps) and h[4] < step.n]
                             + [kept.get((model, f"{spec.attack}:{spec.preset}", spec.eps,
                                          step.n), 0)])
                cost = per_image((arch_of(model), spec.attack, spec.preset, spec.eps))
                left = (None if left is None or cost is None
                        else left + cost * (step.n - reused))
    return done, total, left


def stage_remaining(step: TrainStep, state: dict[str, Any] | None,
                     reference: float | None) -> float | None:
    """Seconds left for a stage: its own measured epochs, else ``reference`` s per 32 px epoch."""
    phases = parse_image_sizes(step.sizes, step.epochs) or ((32, step.epochs),)
    sizes = [s for s, n in phases for _ in range(n)]
    done = state["epoch"] if state else 0
    history = state["history"] if state else []
    total = 0.0
    for epoch in range(done + 1, step.epochs + 1):
        size = sizes[epoch - 1]
        per = epoch_seconds(history, size)
        if per is None:
            if reference is None:
                return None
            per = reference * (size / 32) ** SIZE_EXPONENT
        if epoch == done + 1 and state and state.get("partial"):
            per -= state["partial"].get("seconds", 0.0)
        total += max(per, 0.0)
    return total


def partial_epoch32(step: TrainStep, state: dict[str, Any] | None) -> float | None:
    """Seconds per 32 px epoch from the epoch under way (its seconds per image so far),
    when the state says how many images an epoch has; None otherwise."""
    partial = (state or {}).get("partial") or {}
    seen, seconds, images = partial.get("seen"), partial.get("seconds"), partial.get("images")
    if not (seen and seconds and images):
        return None
    phases = parse_image_sizes(step.sizes, step.epochs) or ((32, step.epochs),)
    sizes = [s for s, n in phases for _ in range(n)]
    size = sizes[min(int(state["epoch"]), len(sizes) - 1)]
    return seconds / seen * images * (32 / size) ** SIZE_EXPONENT


def pipeline_status(plan: Plan = DEFAULT_PLAN) -> dict[str, Any]:
    """What is done, what is running and the time left (estimated from measured epochs,
    else from the epoch under way)."""
    files = pipeline_files(plan)
    pid = running_pid(files)
    current = None
    if pid is not None and files.current.is_file():
        try:
            current = json.loads(files.current.read_text())
        except ValueError:
            current = None
    stages = []
    # per (arch, adversarial or not): seconds per 32 px epoch, from the last measured stage,
    # else from a shipped checkpoint of that kind (its recipe's median epoch); an adversarial
    # stage with neither takes the standard one's times the measured step cost
    reference: dict[tuple[str, bool], float] = {}
    root = checkpoint_root(plan)
    for metrics_file in sorted(root.glob("*/metrics.json")) if root.is_dir() else ():
        try:
            recipe = json.loads(metrics_file.read_text()).get("recipe", {})
        except ValueError:
            continue
        if recipe.get("seconds_per_epoch") and not recipe.get("image_sizes"):
            key = (recipe.get("arch"), bool(recipe.get("adversarial")))
            reference[key] = float(recipe["seconds_per_epoch"])
    measured: set[tuple[str, bool]] = set()  # whose reference is a finished epoch here
    for step in plan.train + plan.after:
        state = state_summary(plan, step)
        done = stage_done(plan, step)
        key = (step.arch, parse_stage(step.stage).adversarial)
        if state and (per32 := epoch_seconds(state["history"], 32)) is not None:
            reference[key] = per32
            measured.add(key)
        elif key not in measured and (per32 := partial_epoch32(step, state)) is not None:
            # no finished epoch here yet: the epoch under way says more of this machine
            # than a checkpoint trained elsewhere
            reference[key] = per32
        ref = reference.get(key)
        if ref is None and key[1] and (standard := reference.get((step.arch, False))):
            ref = standard * ADVERSARIAL_EPOCH_COST
        remaining = 0.0 if done else stage_remaining(step, state, ref)
        stages.append({
            "name": step.name + (f" ({step.out})" if step.out else ""), "done": done,
            "epochs": step.epochs,
            "epochs_done": state["epoch"] if state else (step.epochs if done else 0),
            "partial_step": (state.get("partial") or {}).get("step") if state else None,
            "last_test_acc": next((h["test_acc"] for h in reversed(state["history"])
                                   if "test_acc" in h), None) if state else None,
            "remaining_seconds": remaining,
        })
    result = load_result(Path(plan.results))
    eval_rows = result["rows"] if result else []
    in_progress = rows_in_progress(plan, eval_rows)
    rows_done, rows_total, eval_left = evaluation_estimate(plan, eval_rows, in_progress)
    audit_done, audit_total, audit_left = audit_estimate(plan, load_rows(plan.audit_results),
                                                         eval_rows)
    train_left = [s["remaining_seconds"] for s in stages]
    return {
        "running": pid is not None, "pid": pid, "current": current,
        "stop_requested": files.stop.exists(), "log": str(files.log),
        "stages": stages,
        "evaluation": {"rows_done": rows_done, "rows_total": rows_total,
                       "remaining_seconds": eval_left, "results": plan.results,
                       "last": _last_finished(eval_rows),
                       "in_progress": in_progress},
        "audit": {"rows_done": audit_done, "rows_total": audit_total,
                  "remaining_seconds": audit_left, "results": plan.audit_results},
        "remaining_seconds": None if None in train_left or None in (eval_left, audit_left)
        else sum(train_left) + eval_left + audit_left,
        "train_remaining_seconds": None if None in train_left else sum(train_left),
    }


def _last_finished(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row finished last (of those that say when; the later one in the file on a tie)."""
    stamped = [(r["finished"], i, r) for i, r in enumerate(rows) if r.get("finished")]
    return max(stamped, key=lambda t: t[:2])[2] if stamped else None


def _hours(seconds: float | None) -> str:
    if seconds is None:
        return "unknown yet"
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def format_status(status: dict[str, Any]) -> str:
    """``pipeline_status`` as the lines ``pipeline status`` prints."""
    lines = []
    if status["running"]:
        cur = status["current"] or {}
        what = ", ".join(cur.get("stages") or cur.get("models") or [])
        lines.append(f"running (pid {status['pid']}): {cur.get('step', '?')} {what}".rstrip())
        if status["stop_requested"]:
            lines.append("stop requested: it stops at its next step, after saving")
    else:
        lines.append("not running")
    for s in status["stages"]:
        if s["done"]:
            state = "done"
        else:
            state = f"{s['epochs_done']}/{s['epochs']} epochs"
            if s["partial_step"]:
                state += f" (+{s['partial_step']} steps)"
            state += f", {_hours(s['remaining_seconds'])} left"
        acc = f", last test acc {100 * s['last_test_acc']:.2f}%" if s["last_test_acc"] else ""
        lines.append(f"  train {s['name']}: {state}{acc}")
    ev = status["evaluation"]
    lines.append(f"  evaluate: {ev['rows_done']}/{ev['rows_total']} rows in {ev['results']}"
                 + ("" if ev["rows_done"] >= ev["rows_total"]
                    else f", {_hours(ev['remaining_seconds'])} left"))
    if last := ev.get("last"):
        attack = f"{last['attack']}:{last['preset']}" if last.get("preset") else last["attack"]
        lines.append(f"    last row: {Path(last['model']).name} {attack}, "
                     f"{100 * last['robust_acc']:.1f}% of {last.get('n_pairs', last['n'])}, "
                     f"finished {last['finished']}")
    for row in ev.get("in_progress", ()):
        lines.append(f"    in progress: {row['model']} {row['attack']}, "
                     f"{row['batches_done']} of {row['batches']} batches kept")
    au = status["audit"]
    lines.append(f"  audit: {au['rows_done']}/{au['rows_total']} rows in {au['results']}"
                 + ("" if au["rows_done"] >= au["rows_total"]
                    else f", {_hours(au['remaining_seconds'])} left"))
    lines.append(f"time left: {_hours(status['remaining_seconds'])} "
                 f"(training: {_hours(status['train_remaining_seconds'])}); log: {status['log']}")
    return "\n".join(lines)
