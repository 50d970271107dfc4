"""The pipeline: one resumable command for the remaining training and evaluation.

A tiny plan on tiny data, run through the real command line in a child process: killed
at a random moment and run again, it ends with the same files as an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from kwta_demo.pipeline import plan as PL
from kwta_demo.pipeline import runner as P
from kwta_demo.pipeline import status as S
from kwta_demo.testing import write_image_folder
from kwta_demo.training import timing

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def tiny_plan(tmp: Path, image_data: Path) -> dict:
    return {
        "train": [{"arch": "alexnet", "stage": "relu", "epochs": 2, "batch_size": 10},
                  {"arch": "alexnet", "stage": "kwta-0.2", "epochs": 1, "batch_size": 10}],
        "evaluate": [{"models": ["alexnet-relu", "alexnet-kwta-0.2"],
                      "attacks": ["fgsm:paper@0.03"], "n": 10, "batch_size": 5}],
        "audit_results": str(tmp / "results" / "audit.json"),
        "data": str(image_data), "checkpoints": str(tmp / "ckpt"), "runs": str(tmp / "runs"),
        "results": str(tmp / "results" / "eval.json"), "save_every_minutes": 0,
        "eval_every": 1, "threads": 1,
    }


@pytest.fixture(scope="module")
def image_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_image_folder(root, 4, splits=("train",))
    return write_image_folder(root, 2, splits=("test",), seed=1)


def _cli(plan_file: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "KWTA_CHECKPOINTS": str(plan_file.parent / "no-such-default")}
    return subprocess.run([sys.executable, "-m", "kwta_demo", "pipeline", *args,
                           "--plan", str(plan_file)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=600, **kw)


def _outputs(tmp: Path) -> dict:
    """What a finished run leaves: the weights bit for bit, metrics and rows without timings."""
    out = {}
    for name in ("alexnet-relu", "alexnet-kwta-0.2"):
        folder = tmp / "ckpt" / name
        out[name] = {k: v.numpy().tobytes() for k, v in load_file(folder / "model.safetensors").items()}
        metrics = json.loads((folder / "metrics.json").read_text())
        out[name + ".acc"] = metrics["clean_accuracy"]
        out[name + ".history"] = [{k: v for k, v in h.items() if "seconds" not in k}
                                  for h in metrics["history"]]
    rows = json.loads((tmp / "results" / "eval.json").read_text())["rows"]
    out["rows"] = sorted((r["model"], r["attack"], r["robust_acc"], r["clean_acc"]) for r in rows)
    return out


def test_killed_at_a_random_moment_and_resumed_ends_like_an_uninterrupted_run(tmp_path, image_data):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    for d in (whole, broken):
        d.mkdir()
        (d / "plan.json").write_text(json.dumps(tiny_plan(d, image_data)))
    t0 = time.monotonic()
    done = _cli(whole / "plan.json", "run", "--foreground")
    duration = time.monotonic() - t0
    assert done.returncode == 0, done.stderr
    assert "everything in the plan is done" in done.stderr
    status = _cli(whole / "plan.json", "status").stdout
    assert "not running" in status and "train alexnet-kwta-0.2: done" in status
    assert "evaluate: 4/4 rows" in status and "time left: 0 min" in status
    assert re.search(r"last row: alexnet-kwta-0\.2 fgsm:paper, \d+\.\d% of 10, finished 20\d\d-", status)

    # the same plan, SIGKILLed at a random moment (after start-up, before the end), then rerun
    moment = random.Random().uniform(0.3, 0.9) * duration
    env = {**os.environ, "KWTA_CHECKPOINTS": str(broken / "no-such-default")}
    proc = subprocess.Popen([sys.executable, "-m", "kwta_demo", "pipeline", "run", "--foreground",
                             "--plan", str(broken / "plan.json")], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(moment)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    again = _cli(broken / "plan.json", "run", "--foreground")
    assert again.returncode == 0, again.stderr
    assert _outputs(broken) == _outputs(whole), f"killed after {moment:.1f} s of {duration:.1f} s"


def test_the_evaluation_over_two_processes_gives_the_same_rows(tmp_path, image_data):
    import shutil

    one, two = tmp_path / "one", tmp_path / "two"
    for d, processes in ((one, 1), (two, 2)):
        d.mkdir()
        plan = tiny_plan(d, image_data)
        plan["train"] = plan["train"][:1]
        plan["train"][0]["epochs"] = 1
        plan["evaluate"][0]["models"] = ["alexnet-relu"]
        plan["eval_processes"] = processes
        (d / "plan.json").write_text(json.dumps(plan))
    done = _cli(one / "plan.json", "run", "--foreground")
    assert done.returncode == 0, done.stderr
    for folder in ("ckpt", "runs"):  # the trained stage, so that only the evaluation runs
        shutil.copytree(one / folder, two / folder, ignore=shutil.ignore_patterns("pipeline"))
    ranks = _cli(two / "plan.json", "run", "--foreground")
    assert ranks.returncode == 0, ranks.stderr
    assert "evaluation over 2 processes" in ranks.stderr
    # the log has a line per finished row, written once (by the leading process), and
    # no progress bars
    assert ranks.stderr.count("INFO kwta_demo.evaluation.evaluate: alexnet-relu none: ") == 1
    assert "\r" not in ranks.stderr and "it/s]" not in ranks.stderr

    def rows(d):
        result = json.loads((d / "results" / "eval.json").read_text())
        return [(r["model"], r["attack"], r["robust_acc"], r.get("robust_per_image"))
                for r in result["rows"]], result["meta"]["processes"]

    (rows_one, p1), (rows_two, p2) = rows(one), rows(two)
    assert rows_one == rows_two and (p1, p2) == (1, 2)


def test_stop_then_status_then_resume(tmp_path, image_data):
    plan_file = tmp_path / "plan.json"
    plan = tiny_plan(tmp_path, image_data)
    plan["train"][0]["epochs"] = 30  # long enough to be caught running
    plan_file.write_text(json.dumps(plan))
    started = _cli(plan_file, "run")  # detaches
    assert started.returncode == 0 and "pipeline started" in started.stdout
    files = P.pipeline_files(PL.load_plan(plan_file))
    deadline = time.monotonic() + 120
    while not (tmp_path / "runs" / "alexnet-relu.state.safetensors").exists():
        assert time.monotonic() < deadline, files.log.read_text()
        time.sleep(0.1)
    assert "running (pid" in _cli(plan_file, "status").stdout
    assert "already running" in _cli(plan_file, "run").stdout
    # the lock, not the pid file, keeps a second run out (two starting at once)
    with pytest.raises(RuntimeError, match="already running"):
        P.run_pipeline(PL.load_plan(plan_file))
    assert files.pid.exists()
    stopped = _cli(plan_file, "stop", "--wait")
    assert "stop requested" in stopped.stdout
    assert "not running" in _cli(plan_file, "status").stdout
    log = files.log.read_text()
    assert "the state is saved" in log or "everything in the plan is done" in log
    assert not files.pid.exists()
    finished = _cli(plan_file, "run", "--foreground")
    assert finished.returncode == 0, finished.stderr
    assert "evaluate: 4/4 rows" in finished.stdout


def test_plans_and_estimates(tmp_path):
    assert PL.load_plan(None) is PL.DEFAULT_PLAN
    assert [s.name for s in PL.DEFAULT_PLAN.train] == [
        "resnet18-relu", "resnet18-kwta-0.2", "resnet18-kwta-0.1",
        "alexnet-at-relu", "alexnet-at-kwta-0.2", "alexnet-at-kwta-0.1"]
    # each adversarially trained chain is one train_schedule call: k-WTA from the AT ReLU;
    # ResNet18's comes after AlexNet's is evaluated
    groups = P.train_groups(PL.DEFAULT_PLAN.train) + P.train_groups(PL.DEFAULT_PLAN.after)
    chains = [[s.stage for s in g] for g in groups if g[0].stage.startswith("at-")]
    assert chains == [["at-relu", "at-kwta-0.2", "at-kwta-0.1"], ["at-relu", "at-kwta-0.1"]]
    assert [g[0].arch for g in groups if g[0].stage.startswith("at-")] == ["alexnet", "resnet18"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"train": [], "colour": "red"}))
    with pytest.raises(ValueError, match="unknown fields: colour"):
        PL.load_plan(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a pipeline plan"):
        PL.load_plan(bad)
    history = [{"epoch": 1, "train_seconds": 60.0, "image_size": 16},
               {"epoch": 2, "train_seconds": 80.0, "image_size": 16},
               {"epoch": 3, "train_seconds": 200.0, "image_size": 16},  # the CPU was shared
               {"epoch": 4, "train_seconds": 70.0, "image_size": 16}]
    assert timing.epoch_seconds(history, 16) == 70.0  # the lower quartile of what was measured
    assert timing.epoch_seconds(history, 32) == pytest.approx(70.0 * 2 ** timing.SIZE_EXPONENT)
    step = PL.TrainStep("resnet18", "relu", 4, sizes="16x2+32x2")
    state = {"epoch": 1, "partial": {"step": 3, "seconds": 20.0}, "history": history[:1]}
    left = S.stage_remaining(step, state, None)
    assert left == pytest.approx((60 - 20) + 2 * 60 * 2 ** timing.SIZE_EXPONENT)
    assert S.stage_remaining(step, None, None) is None  # nothing measured yet
    # no finished epoch: the epoch under way gives the rate (30 s for 100 of 1,000 images
    # at 16 px: 300 s per 16 px epoch); a state without the epoch's size gives none
    early = {"epoch": 0, "partial": {"step": 1, "seen": 100, "seconds": 30.0, "images": 1000},
             "history": []}
    assert S.partial_epoch32(step, early) == pytest.approx(300 * 2 ** timing.SIZE_EXPONENT)
    assert S.partial_epoch32(step, {**early, "partial": {"seen": 100, "seconds": 30.0}}) is None
    assert S.partial_epoch32(step, None) is None
    assert S.stage_remaining(step, None, 100.0) == pytest.approx(
        2 * 100 * 0.5 ** timing.SIZE_EXPONENT + 2 * 100)


def test_the_time_left_of_a_first_epoch_comes_from_its_own_rate(tmp_path, monkeypatch):
    # A fresh machine: no epoch finished yet, and no checkpoint to take a rate from. The
    # epoch under way (30 s for 100 of its 1,000 images, at 16 px) times this stage and the
    # next one of the same architecture.
    plan = PL.Plan(train=(PL.TrainStep("resnet18", "relu", 2, sizes="16x1+32x1"),
                         PL.TrainStep("resnet18", "kwta-0.2", 1)),
                  checkpoints=str(tmp_path / "ckpt"), runs=str(tmp_path / "runs"),
                  results=str(tmp_path / "eval.json"),
                  audit_results=str(tmp_path / "audit.json"))
    early = {"epoch": 0, "partial": {"step": 1, "seen": 100, "seconds": 30.0, "images": 1000},
             "history": []}
    monkeypatch.setattr(S, "state_summary",
                        lambda plan, step: early if step.stage == "relu" else None)
    relu, kwta = S.pipeline_status(plan)["stages"][:2]
    epoch32 = 300 * 2 ** timing.SIZE_EXPONENT
    assert relu["remaining_seconds"] == pytest.approx((300 - 30) + epoch32)
    assert kwta["remaining_seconds"] == pytest.approx(epoch32)


def test_stages_of_one_name_in_their_own_roots_train_apart(tmp_path, image_data):
    # Recipe probes: the same stage (alexnet-relu) trained twice, in two roots, one with
    # label smoothing, without autocast and with its own seed. Each keeps its own state file
    # and checkpoint; neither is mistaken for the other's, and a second run finds both done.
    plan_dict = tiny_plan(tmp_path, image_data)
    plan_dict.update(train=[], evaluate=[], after=[
        {"arch": "alexnet", "stage": "relu", "epochs": 1, "batch_size": 10,
         "out": str(tmp_path / "probes" / "plain")},
        {"arch": "alexnet", "stage": "relu", "epochs": 1, "batch_size": 10,
         "out": str(tmp_path / "probes" / "ls"), "label_smoothing": 0.1, "amp": "off",
         "seed": 1}])
    plan = PL.Plan.from_dict(plan_dict)
    assert len(P.train_groups(plan.after)) == 2
    P.run_pipeline(plan)
    for root, smoothing, amp, seed in (("plain", 0.0, "auto", plan.seed), ("ls", 0.1, "off", 1)):
        folder = tmp_path / "probes" / root
        assert (folder / "alexnet-relu.state.safetensors").is_file()
        metrics = json.loads((folder / "alexnet-relu" / "metrics.json").read_text())
        assert metrics["recipe"]["label_smoothing"] == smoothing
        assert metrics["recipe"]["amp"] == amp
        assert metrics["recipe"]["seed"] == seed
    assert not (tmp_path / "runs" / "alexnet-relu.state.safetensors").exists()
    assert all(P.stage_done(plan, s) for s in plan.after)


def test_time_left_comes_from_each_attacks_cost(tmp_path):
    # Attacks differ by 20x per image: the estimate takes each missing row's own measured
    # cost (this evaluation's rows, else the attack-cost file), its new images only (a
    # larger row reuses a smaller one's), and the clean pass the checkpoint timed.
    results = tmp_path / "results"
    results.mkdir()
    (results / "attack-cost-cpu.json").write_text(json.dumps({"rows": [
        {"model": "resnet18-relu", "attack": "square:cpu", "seconds_per_image": 2.0},
        {"model": "resnet18-kwta-0.1", "attack": "square:cpu", "seconds_per_image": 0.5},
        {"model": "alexnet-relu", "attack": "square:cpu", "seconds_per_image": 1.0},
        {"model": "resnet18-relu", "attack": "pgd:report", "seconds_per_image": 0.9}]}))
    (tmp_path / "ckpt" / "resnet18-relu").mkdir(parents=True)
    (tmp_path / "ckpt" / "resnet18-relu" / "metrics.json").write_text('{"eval_seconds": 40.0}')
    plan = PL.Plan(evaluate=(PL.EvalStep(("alexnet-relu", "resnet18-relu"),
                                       ("pgd:report", "square:cpu"), n=10),
                            PL.EvalStep(("alexnet-relu",), ("pgd:report",), n=30)),
                  audits=tuple(PL.AuditStep(a, attacks=("pgd:report", "pgd:corrected"))
                               for a in ("alexnet", "resnet18")),
                  results=str(results / "eval.json"), checkpoints=str(tmp_path / "ckpt"))
    rows = [{"model": "alexnet-relu", "attack": "none", "preset": "", "eps": 0.0, "n": 100,
             "seconds": 2.0},
            {"model": "alexnet-relu", "attack": "pgd", "preset": "report", "eps": 0.031, "n": 10,
             "seconds": 5.0}]
    done, total, left = S.evaluation_estimate(plan, rows)
    assert (done, total) == (2, 7)
    # resnet18 clean 40 s; alexnet square 10 x 1.0; resnet18 pgd 10 x 0.9 and square 10 x 2.0
    # (the slower of its models); alexnet pgd on 30 images, 20 of them new, x 0.5 measured
    assert left == pytest.approx(40 + 10 + 9 + 20 + 10)
    audit_rows = [{"kind": "audit", "model": "alexnet-relu", "seconds": 100.0},
                  {"kind": "audit", "model": "alexnet-kwta-0.2", "seconds": 140.0}]
    done, total, left = S.audit_estimate(plan, audit_rows, rows)
    assert (done, total) == (2, 14)
    # alexnet: 5 rows at its own 120 s; resnet18: 7 rows at 120 s x (0.9 / 0.5), its PGD's cost
    assert left == pytest.approx(5 * 120 + 7 * 120 * 0.9 / 0.5)


def test_recorded_model_paths_are_relative_inside_the_working_directory(tmp_path, monkeypatch):
    inside = tmp_path / "work" / "checkpoints" / "alexnet-relu"
    inside.mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work")
    assert P.shown_path(inside) == str(Path("checkpoints") / "alexnet-relu")
    outside = tmp_path / "elsewhere"
    assert P.shown_path(outside) == str(outside.resolve())


def test_a_stopped_rows_kept_batches_count_as_done(tmp_path):
    # A row stopped part-way keeps its finished batches in the parts folder beside the
    # results: the status lists it, and the estimate counts only the batches left.
    from kwta_demo.evaluation.results import RobustColumn, parts_folder, robust_row_key
    from kwta_demo.models.checkpoints import weights_sha256

    results = tmp_path / "results"
    results.mkdir()
    (results / "attack-cost-cpu.json").write_text(json.dumps({"rows": [
        {"model": "resnet18-relu", "attack": "square:cpu", "seconds_per_image": 2.0}]}))
    folder = tmp_path / "ckpt" / "resnet18-relu"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "metrics.json").write_text('{"eval_seconds": 40.0}')
    plan = PL.Plan(evaluate=(PL.EvalStep(("resnet18-relu",), ("square:cpu",), n=10, batch_size=4),),
                  results=str(results / "eval.json"), checkpoints=str(tmp_path / "ckpt"),
                  runs=str(tmp_path / "runs"), audit_results=str(results / "audit.json"))
    rows = [{"model": "resnet18-relu", "attack": "none", "preset": "", "eps": 0.0, "n": 100,
             "seconds": 2.0}]
    assert S.evaluation_estimate(plan, rows)[2] == pytest.approx(10 * 2.0)
    assert S.rows_in_progress(plan, rows) == []
    key = robust_row_key("resnet18-relu", weights_sha256(folder),
                         RobustColumn.parse("square:cpu", 0.031), 10, 0)
    parts = parts_folder(results / "eval.parts", key, 4)
    parts.mkdir(parents=True)
    for name in ("seeds-a", "seeds-b"):  # two of its three batches
        (parts / f"{name}.json").write_text("{}")
    assert S.evaluation_estimate(plan, rows)[2] == pytest.approx(2 * 2.0)
    assert S.rows_in_progress(plan, rows) == [
        {"model": "resnet18-relu", "attack": "square:cpu", "eps": 0.031, "n": 10,
         "batches_done": 2, "batches": 3, "images_done": 8}]
    # another batch size is another row's folder
    other = PL.Plan(evaluate=(PL.EvalStep(("resnet18-relu",), ("square:cpu",), n=10, batch_size=5),),
                   results=plan.results, checkpoints=plan.checkpoints, runs=plan.runs)
    assert S.rows_in_progress(other, rows) == []
    assert "in progress: resnet18-relu square:cpu, 2 of 3 batches kept" in S.format_status(
        S.pipeline_status(plan))


def test_models_the_plan_has_not_trained_yet_wait(tmp_path):
    """An evaluation or audit naming a stage of the plan that has no checkpoint yet waits
    for the pass after the `after` stages; a step whose rows are all there is skipped."""
    plan = PL.Plan(train=(PL.TrainStep("alexnet", "at-relu", 1),),
                   after=(PL.TrainStep("resnet18", "at-relu", 1),),
                   checkpoints=str(tmp_path / "ckpt"), runs=str(tmp_path / "runs"))
    assert P.not_trained_yet(plan, "alexnet-at-relu") and P.not_trained_yet(plan, "resnet18-at-relu")
    assert not P.not_trained_yet(plan, "alexnet-relu")  # not the plan's: taken as it is
    (tmp_path / "ckpt" / "alexnet-at-relu").mkdir(parents=True)
    (tmp_path / "ckpt" / "alexnet-at-relu" / "metrics.json").write_text("{}")
    assert not P.not_trained_yet(plan, "alexnet-at-relu")
    assert PL.AuditStep("alexnet", adversarial=True).models == (
        "alexnet-at-relu", "alexnet-at-kwta-0.2", "alexnet-at-kwta-0.1")

    step = PL.EvalStep(models=("alexnet-at-relu",), attacks=("pgd:paper@8/255",), n=4)
    clean = {"model": "ckpt/alexnet-at-relu", "attack": "none", "n": 10}
    row = {"model": "alexnet-at-relu", "attack": "pgd", "preset": "paper", "eps": 8 / 255, "n": 4}
    assert P.eval_step_done(step, [clean, row])
    assert not P.eval_step_done(step, [clean, {**row, "eps": 0.031}])
    assert not P.eval_step_done(step, [row])


def test_an_adversarial_stage_is_timed_by_its_own_kind(tmp_path, monkeypatch):
    """An adversarially trained stage takes its estimate from adversarial epochs, or from
    standard ones times the measured step cost; it never lends its slower epochs to a
    standard stage of the same architecture."""
    plan = PL.Plan(train=(PL.TrainStep("alexnet", "relu", 2), PL.TrainStep("alexnet", "at-relu", 2)),
                   checkpoints=str(tmp_path / "ckpt"), runs=str(tmp_path / "runs"),
                   results=str(tmp_path / "eval.json"), audit_results=str(tmp_path / "audit.json"))
    states = {"relu": {"epoch": 1, "partial": None, "history": [
        {"epoch": 1, "train_seconds": 100.0, "image_size": 32}]}}
    monkeypatch.setattr(S, "state_summary", lambda plan, step: states.get(step.stage))
    relu, at = S.pipeline_status(plan)["stages"][:2]
    assert relu["remaining_seconds"] == pytest.approx(100.0)
    assert at["remaining_seconds"] == pytest.approx(2 * 100.0 * S.ADVERSARIAL_EPOCH_COST)
    states["at-relu"] = {"epoch": 1, "partial": None, "history": [
        {"epoch": 1, "train_seconds": 250.0, "image_size": 32}]}
    relu, at = S.pipeline_status(plan)["stages"][:2]
    assert (relu["remaining_seconds"], at["remaining_seconds"]) == (100.0, 250.0)
