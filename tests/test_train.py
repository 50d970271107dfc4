"""Training: the loss goes down, the incremental recipe, atomic resumable state, sparsity."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import kwta_demo
from kwta_demo import training as T
from kwta_demo.data.cifar10 import CifarSplit
from kwta_demo.models.activations import activation_sparsity
from kwta_demo.reporting.cards import write_card
from kwta_demo.training import loop
from kwta_demo.training import state as TS

TESTS = Path(__file__).resolve().parent


def synthetic(n: int, seed: int) -> CifarSplit:
    """``n`` noisy 32x32 images whose class is their mean colour: learnable in a few steps.

    A colour survives the crops and flips of the augmentation, so the pattern does too.
    """
    gen = torch.Generator().manual_seed(seed)
    palette = torch.tensor([[i * 25 % 256, (i * 97 + 40) % 256, (i * 173 + 90) % 256]
                            for i in range(10)], dtype=torch.float32)
    labels = torch.arange(n) % 10
    noise = torch.randn(n, 3, 32, 32, generator=gen) * 30
    images = (palette[labels][:, :, None, None] + noise).clamp(0, 255).to(torch.uint8)
    return CifarSplit(images, labels.to(torch.int64))


TRAIN, TEST = synthetic(32, 0), synthetic(10, 1)


def part(split: CifarSplit, where: slice) -> CifarSplit:
    return CifarSplit(split.images[where], split.labels[where])


def small(**overrides) -> T.TrainConfig:
    base = dict(arch="alexnet", epochs=3, lr=0.05, batch_size=16, schedule="cosine",
                warmup_epochs=0.0, seed=3)
    return T.TrainConfig(**{**base, **overrides})


def weights(folder_or_model) -> dict[str, torch.Tensor]:
    model = folder_or_model
    if not isinstance(model, torch.nn.Module):
        model = kwta_demo.load_model(folder_or_model, device="cpu")
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# bit-identity holds for one thread count: the runs compared here, in this process and in
# the child processes, all use one thread, whatever the machine's default
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def threads_reset(no_checkpoints):
    yield
    torch.set_num_threads(1)  # the tests of --threads change it


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted 3-epoch run, for the resume tests to match bit for bit."""
    root = tmp_path_factory.mktemp("reference")
    result = T.train_model(small(), TRAIN, TEST, "cpu", out=root / "ckpt" / "alexnet-relu",
                           state_dir=root / "runs", progress=False)
    return result, weights(root / "ckpt" / "alexnet-relu")


# ------------------------------------------------------------------ pure functions


def test_lr_schedules():
    steps = 10
    onecycle = small(epochs=4, schedule="onecycle", warmup_epochs=1.0, lr=0.4)
    lrs = [T.lr_at(onecycle, s, steps) for s in range(40)]
    assert lrs[0] == pytest.approx(0.04) and lrs[9] == pytest.approx(0.4)  # linear warm-up
    assert lrs[10] == pytest.approx(0.4) and all(a > b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] < 0.02
    cosine = small(epochs=2, schedule="cosine", lr=1.0)
    assert T.lr_at(cosine, 0, steps) == 1.0 and T.lr_at(cosine, 10, steps) == pytest.approx(0.5)
    step = small(epochs=4, schedule="step", lr=1.0)
    assert [T.lr_at(step, s, steps) for s in (0, 19, 20, 30)] == pytest.approx([1, 1, 0.1, 0.01])


def test_stages_and_configs(tmp_path):
    assert T.parse_stage("relu") == T.Stage("relu", None, True)
    assert T.parse_stage("kwta-0.1") == T.Stage("kwta", 0.1, False)
    assert T.parse_stage("kwta-0.2:scratch") == T.Stage("kwta", 0.2, True)
    assert T.parse_stage("at-relu") == T.Stage("relu", None, True, adversarial=True)
    assert T.parse_stage("at-kwta-0.1") == T.Stage("kwta", 0.1, False, adversarial=True)
    for bad in ("kwta", "kwta-x", "kwta-1.5", "tanh", "relu:warm", "at-", "at-tanh", "atrelu"):
        with pytest.raises(ValueError):
            T.parse_stage(bad)
    # adversarial stages: their own names, their own chain, the recipe's method and check
    assert T.stage_name("alexnet", "at-kwta-0.1") == "alexnet-at-kwta-0.1"
    assert T.predecessor("at-kwta-0.1") == "at-kwta-0.2"
    assert T.predecessor("at-kwta-0.2") == "at-relu"
    at = T.stage_config("alexnet", "at-kwta-0.2", batch_size=128, init_from="c/alexnet-at-relu")
    assert (at.adversarial, at.adv_eps, at.holdout, at.name) == (
        "n-fgsm", 8 / 255, 500, "alexnet-at-kwta-0.2")
    assert T.stage_config("alexnet", "relu", adversarial="fgsm-rs").adversarial is None
    with pytest.raises(FileNotFoundError, match=r"alexnet-at-kwta-0\.2, which is not a checkpoint"):
        T.train_schedule("alexnet", ["at-kwta-0.1"], TRAIN, TEST, "cpu", out_root=tmp_path,
                         state_dir=tmp_path)
    scratch = T.stage_config("resnet18", "relu", batch_size=512)
    assert (scratch.schedule, scratch.lr, scratch.epochs) == ("onecycle", 0.4, 30)
    tune = T.stage_config("alexnet", "kwta-0.2", batch_size=256, init_from="ckpt/alexnet-relu")
    assert (tune.schedule, tune.lr, tune.gamma, tune.init_from) == ("cosine", 0.02, 0.2, "ckpt/alexnet-relu")
    with pytest.raises(ValueError, match="init_from"):
        T.stage_config("alexnet", "kwta-0.1")
    with pytest.raises(FileNotFoundError, match=r"alexnet-kwta-0\.2, which is not a checkpoint yet"):
        T.train_schedule("alexnet", ["kwta-0.1"], TRAIN, TEST, "cpu", out_root=tmp_path, state_dir=tmp_path)
    for bad in (dict(epochs=-1), dict(lr=0), dict(schedule="linear"), dict(amp="fp16"),
                dict(warmup_epochs=5.0), dict(clip_grad_norm=0.0), dict(activation="kwta"),
                dict(adversarial="pgd"), dict(holdout=10), dict(adversarial="n-fgsm", adv_eps=0),
                dict(arch="resnet18", adversarial="n-fgsm", image_sizes=((16, 1), (32, 2)))):
        with pytest.raises(ValueError):
            small(**bad)


def test_sparsity_of_kwta_layers_is_gamma():
    torch.manual_seed(0)
    images = torch.rand(8, 3, 32, 32)
    for gamma in (0.2, 0.1):
        fractions = activation_sparsity(kwta_demo.build_model("resnet18", "kwta", gamma), images)
        kwta = {k: v for k, v in fractions.items() if k != "stem_act"}
        assert len(kwta) == 16
        assert all(abs(v - gamma) < 0.005 for v in kwta.values()), kwta
    relu = activation_sparsity(kwta_demo.build_model("alexnet"), images)
    assert len(relu) == 7 and all(0.2 < v < 0.8 for v in relu.values())


# ------------------------------------------------------------------ training runs


def test_short_run_loss_goes_down_and_writes_a_loadable_checkpoint(tmp_path, reference):
    result, _ = reference
    hist = result["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"] * 0.8, hist
    assert all(0 <= h["test_acc"] <= 1 and h["train_seconds"] > 0 for h in hist)
    folder = Path(result["checkpoint"])
    model = kwta_demo.load_model(folder, device="cpu")
    assert model.config.name == "alexnet-relu"
    metrics = json.loads((folder / "metrics.json").read_text())
    # the reported accuracy is the one of the weights as stored, loaded back
    assert metrics["clean_accuracy"] == pytest.approx(T.evaluate_accuracy(model, TEST, "cpu"))
    assert metrics["test_images"] == 10 and metrics["recipe"]["epochs"] == 3
    assert not (folder / "README.md").exists()  # the card is the shipping command's
    card = write_card(folder).read_text()
    assert card.startswith("---\n") and "model-index" in card and "JPEG" in card


def test_incremental_schedule_initialises_each_stage_from_the_previous(tmp_path):
    results = T.train_schedule(
        "alexnet", T.STAGES, TRAIN, TEST, "cpu", out_root=tmp_path / "ckpt",
        state_dir=tmp_path / "runs", epochs=[1, 1, 0], lr=0.05, batch_size=16,
        progress=False, half=True, data_hint="data.tar.gz", seed=1,
    )
    names = [r["name"] for r in results]
    assert names == ["alexnet-relu", "alexnet-kwta-0.2", "alexnet-kwta-0.1"]
    models = [kwta_demo.load_model(tmp_path / "ckpt" / n, device="cpu") for n in names]
    assert [(m.config.activation, m.config.gamma) for m in models] == [
        ("relu", None), ("kwta", 0.2), ("kwta", 0.1)]
    relu, k2, k1 = (weights(m) for m in models)
    assert_same_weights(k1, k2)  # 0 epochs: kwta-0.1 holds kwta-0.2's weights unaltered
    # one fine-tuning epoch moved kwta-0.2 a little away from the ReLU weights it started at
    fresh = weights(kwta_demo.build_model("alexnet"))
    w = "backbone.features.0.weight"
    assert 0 < (k2[w] - relu[w]).norm() < 0.5 * (fresh[w] - relu[w]).norm()
    # the accuracy of the unaltered ReLU weights under k-WTA was measured before fine-tuning
    assert results[1]["history"][0]["epoch"] == 0 and results[1]["metrics"]["initial_accuracy"] is not None
    assert results[0]["metrics"]["initial_accuracy"] is None
    sparsity = results[2]["metrics"]["sparsity"]
    assert len(sparsity) == 7 and all(abs(v - 0.1) < 0.02 for v in sparsity.values()), sparsity
    assert all(t.dtype == torch.float16 for t in _stored_tensors(tmp_path / "ckpt" / names[0])
               if t.is_floating_point())
    card = write_card(tmp_path / "ckpt" / "alexnet-kwta-0.1").read_text()
    assert "initialised from" in card and "alexnet-kwta-0.2" in card
    assert "--stages relu,kwta-0.2,kwta-0.1 --epochs 1,1,0" in card and "--half" in card
    # running the same schedule again resumes every stage: nothing is retrained
    again = T.train_schedule(
        "alexnet", T.STAGES, TRAIN, TEST, "cpu", out_root=tmp_path / "ckpt",
        state_dir=tmp_path / "runs", epochs=[1, 1, 0], lr=0.05, batch_size=16,
        progress=False, half=True, data_hint="data.tar.gz", seed=1,
    )
    assert [r["resumed_from"] for r in again] == [1, 1, 0]
    assert [r["metrics"]["run_id"] for r in again] == [r["metrics"]["run_id"] for r in results]


def _stored_tensors(folder: Path) -> list[torch.Tensor]:
    from safetensors.torch import load_file

    return [t for p in folder.glob("*.safetensors") for t in load_file(p).values()]


@pytest.mark.parametrize("save_every", [None, 0.0], ids=["epoch-end-saves", "mid-epoch-saves"])
def test_killed_process_resumes_bit_identically(tmp_path, reference, save_every):
    """SIGKILL in the middle of epoch 2: with saves at epoch ends only, the run goes on
    from the end of epoch 1; with saves inside epochs, from the step it was killed at.
    Either way the finished weights are bit-identical to an uninterrupted run's."""
    ref_result, ref_weights = reference
    out, runs, marker = tmp_path / "ckpt" / "alexnet-relu", tmp_path / "runs", tmp_path / "mid-epoch-2"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(TESTS)!r})
        from pathlib import Path
        import torch
        import test_train as tt
        from kwta_demo import training as T
        torch.set_num_threads(1)

        def stall(epoch, step):
            if (epoch, step) == (2, 1):  # in the middle of epoch 2: wait to be killed
                Path({str(marker)!r}).touch()
                time.sleep(120)

        T.train_model(tt.small(), tt.TRAIN, tt.TEST, "cpu", out=Path({str(out)!r}),
                      state_dir=Path({str(runs)!r}), progress=False, on_step=stall,
                      save_every={save_every!r})
    """)
    env = {**os.environ, "KWTA_CHECKPOINTS": str(tmp_path / "none"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE)
    state = runs / f"alexnet-relu{TS.STATE_SUFFIX}"
    deadline = time.monotonic() + 120
    try:
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the child never reached epoch 2"
            if state.exists():  # whatever is at the state path is a complete state
                TS.read_state(state)
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    _, meta = TS.read_state(state)
    assert meta["epoch"] == 1
    assert meta.get("partial") == (None if save_every is None else
                                   {"step": 1, "seen": 16, "images": 32,
                                    "seconds": pytest.approx(meta["partial"]["seconds"])})
    assert not out.exists()  # no checkpoint until the run is complete
    assert [p.name for p in runs.iterdir()] == [state.name]  # and no temporary beside the state
    result = T.train_model(small(), TRAIN, TEST, "cpu", out=out, state_dir=runs, progress=False)
    assert result["resumed_from"] == 1
    assert_same_weights(weights(out), ref_weights)
    strip = lambda h: [{k: v for k, v in e.items() if "seconds" not in k} for e in h]  # noqa: E731
    assert strip(result["history"]) == strip(ref_result["history"])


def test_a_stop_request_saves_and_the_rerun_matches(tmp_path, reference):
    ref_result, ref_weights = reference
    out, runs = tmp_path / "ckpt" / "alexnet-relu", tmp_path / "runs"
    calls = []

    def stop_in_epoch_2() -> bool:
        # asked before each epoch and after each step but an epoch's last: before epoch 1,
        # after its step 0, before epoch 2, after its step 0 (the 4th call)
        calls.append(1)
        return len(calls) == 4

    with pytest.raises(T.TrainingStopped, match="epoch 2 after step 1"):
        T.train_model(small(), TRAIN, TEST, "cpu", out=out, state_dir=runs, progress=False,
                      save_every=None, should_stop=stop_in_epoch_2)
    _, meta = TS.read_state(runs / f"alexnet-relu{TS.STATE_SUFFIX}")
    assert (meta["epoch"], meta["partial"]["step"]) == (1, 1)
    result = T.train_model(small(), TRAIN, TEST, "cpu", out=out, state_dir=runs, progress=False)
    assert_same_weights(weights(out), ref_weights)
    assert [h["train_loss"] for h in result["history"]] == [h["train_loss"] for h in ref_result["history"]]


def test_progressive_resizing(tmp_path):
    assert T.parse_image_sizes("16x2+24x1+32x1", 4) == ((16, 2), (24, 1), (32, 1))
    assert T.parse_image_sizes("32", 7) == ()
    assert T.format_image_sizes(((16, 2), (32, 1))) == "16x2+32x1"
    for bad, epochs in (("16x2+32x1", 4), ("16x2", 2.5), ("7x1", 1), ("40x1", 1), ("16-2", 2)):
        with pytest.raises(ValueError):
            T.parse_image_sizes(bad, epochs)
    with pytest.raises(ValueError, match="only resnet18"):
        small(epochs=2, image_sizes=((16, 1), (32, 1)))
    cfg = small(arch="resnet18", epochs=3, batch_size=8, image_sizes=((16, 2), (32, 1)),
                eval_every=0)
    assert [cfg.image_size(e) for e in (1, 2, 3)] == [16, 16, 32]
    seen = []
    model_forward = kwta_demo.models.architectures.Classifier.forward

    def spy(self, x):
        seen.append(x.shape[-1])
        return model_forward(self, x)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kwta_demo.models.architectures.Classifier, "forward", spy)
        result = T.train_model(cfg, part(TRAIN, slice(0, 8)), TEST, "cpu",
                               out=tmp_path / "ckpt" / "resnet18-relu", state_dir=tmp_path / "runs",
                               progress=False)
    assert [h["image_size"] for h in result["history"]] == [16, 16, 32]
    assert seen[:3] == [16, 16, 32]  # one step per epoch, then evaluation at 32 px
    assert set(seen[3:]) == {32}
    assert "2 epochs at 16x16, then 1 epochs at 32x32" in write_card(tmp_path / "ckpt" / "resnet18-relu").read_text()
    # a state saved before the field existed resumes: a missing field matches its default
    path = tmp_path / "runs" / f"resnet18-relu{TS.STATE_SUFFIX}"
    tensors, meta = TS.read_state(path)
    meta["config"].pop("image_sizes")
    TS.check_state_matches(path, meta, {**meta, "config": T.TrainConfig(
        **{**cfg.to_dict(), "image_sizes": ()}).identity()}, T.CONFIG_DEFAULTS)


def test_cpu_defaults():
    assert T.default_batch_size(torch.device("cpu")) == 128
    assert T.default_batch_size(torch.device("cuda")) == 512
    assert T.set_threads(1) == 1
    T.set_threads(None)
    assert T.set_threads(None) >= 1
    auto = loop._amp_dtype(small(), torch.device("cpu"))
    assert auto == (torch.bfloat16 if T.cpu_has_native_bf16() else None)
    assert loop._amp_dtype(small(amp="off"), torch.device("cpu")) is None


def test_an_exception_mid_epoch_keeps_the_last_complete_state(tmp_path):
    out, runs = tmp_path / "ckpt" / "alexnet-relu", tmp_path / "runs"

    def crash(epoch: int, step: int) -> None:
        if (epoch, step) == (2, 0):
            raise KeyboardInterrupt

    cfg = small(epochs=2, eval_every=0)
    with pytest.raises(KeyboardInterrupt):
        T.train_model(cfg, part(TRAIN, slice(0, 16)), TEST, "cpu", out=out, state_dir=runs, progress=False,
                      on_step=crash)
    assert not out.exists() and TS.read_state(runs / f"alexnet-relu{TS.STATE_SUFFIX}")[1]["epoch"] == 1
    (runs / f".alexnet-relu{TS.STATE_SUFFIX}.999.tmp").write_bytes(b"half a file")  # a killed writer's
    assert T.train_model(cfg, part(TRAIN, slice(0, 16)), TEST, "cpu", out=out, state_dir=runs,
                         progress=False)["resumed_from"] == 1
    assert sorted(p.name for p in runs.iterdir()) == [f"alexnet-relu{TS.STATE_SUFFIX}"]


def test_resuming_with_another_config_or_data_is_a_clear_error(tmp_path):
    kw = dict(out=tmp_path / "ckpt" / "alexnet-relu", state_dir=tmp_path / "runs", progress=False)
    cfg, data = small(epochs=1), part(TRAIN, slice(0, 16))
    T.train_model(cfg, data, TEST, "cpu", **kw)
    with pytest.raises(TS.TrainStateError, match=r"lr: saved 0\.05, now 0\.1.*--fresh"):
        T.train_model(replace(cfg, lr=0.1), data, TEST, "cpu", **kw)
    with pytest.raises(TS.TrainStateError, match="training data differ"):
        T.train_model(cfg, part(TRAIN, slice(16, 32)), TEST, "cpu", **kw)
    # eval_every changes no weight, so it may differ; --fresh starts over
    assert T.train_model(replace(cfg, eval_every=0), data, TEST, "cpu", **kw)["resumed_from"] == 1
    assert T.train_model(replace(cfg, lr=0.1), data, TEST, "cpu", fresh=True, **kw)["resumed_from"] == 0


def test_command_line(tmp_path, monkeypatch, capsys):
    from kwta_demo.cli import train as cli

    monkeypatch.setattr(cli, "load_cifar10", lambda split, source=None: TRAIN if split == "train" else TEST)
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args([
        "--arch", "alexnet", "--stages", "kwta-0.2:scratch", "--epochs", "1",
        "--batch-size", "16", "--limit-train", "16", "--limit-test", "5", "--half",
        "--out", str(tmp_path / "ckpt"), "--state-dir", str(tmp_path / "runs"),
        "--no-progress", "--manifest", "--device", "cpu",
    ])
    assert cli.main(args) == 0
    table = capsys.readouterr().out
    assert "| alexnet-kwta-0.2-scratch | 1 |" in table
    scratch = tmp_path / "ckpt" / "alexnet-kwta-0.2-scratch"
    assert kwta_demo.load_model(scratch, device="cpu").config.gamma == 0.2  # manifest verified
    metrics = json.loads((scratch / "metrics.json").read_text())
    assert metrics["recipe"]["init_from"] is None and metrics["recipe"]["train_images"] == 16
    assert (tmp_path / "ckpt" / "SHA256SUMS").read_text().count("alexnet-kwta-0.2-scratch/") == 1  # fp16: one file
    # the command ships the model: its card beside the weights, from its metrics
    card = (scratch / "README.md").read_text()
    assert card.startswith("---\n") and f"{100 * metrics['clean_accuracy']:.2f}%" in card


def test_benchmark_epoch_seconds():
    seconds = T.benchmark_epoch_seconds(small(batch_size=4), 40, "cpu", steps=1, warmup=1)
    assert 0 < seconds < 60


def test_the_training_report_renders_the_checkpoints(tmp_path, script):
    tr = script("training_report")
    folder = tmp_path / "ckpt" / "resnet18-relu"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({
        "clean_accuracy": 0.9234, "eval_seconds": 30.0, "initial_accuracy": None,
        "recipe": {"epochs": 3, "image_sizes": [[16, 1], [32, 2]], "init_from": None,
                   "device_name": "CPU", "amp_used": "bfloat16 autocast", "commit": "abc",
                   "wall_seconds": 7200.0},
        "history": [{"epoch": 1, "train_seconds": 50.0, "image_size": 16},
                    {"epoch": 2, "train_seconds": 200.0, "image_size": 32, "test_acc": 0.8},
                    {"epoch": 3, "train_seconds": 220.0, "image_size": 32, "test_acc": 0.92}]}))
    doc = tmp_path / "training.md"
    doc.write_text(f"# T\n{tr.BEGIN}\n{tr.END}\n{tr.RECIPES_BEGIN}\nnot yet\n{tr.RECIPES_END}\n")
    args = ["--checkpoints", str(tmp_path / "ckpt"), "--doc", str(doc), "--png",
            str(tmp_path / "curves.png"), "--findings", str(tmp_path / "findings"),
            "--recipes", str(tmp_path / "recipes")]
    assert tr.main(args) == 0
    text = doc.read_text()
    assert "| resnet18-relu | 92.34% | scratch | 3 (1 at 16 px, 2 at 32 px) |" in text
    assert "| resnet18-relu | 200 s | 2.00 h | 30 s |" in text  # lower quartile, 32 px epochs
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert "not yet" in text  # no probes: their block is left as it is
    # a recipe probe: its own table, beside the shipped run
    probe = tmp_path / "recipes" / "10ep-32px" / "resnet18-relu"
    probe.mkdir(parents=True)
    (probe / "metrics.json").write_text(json.dumps({
        "clean_accuracy": 0.8811, "recipe": {"epochs": 10, "label_smoothing": 0.1, "seed": 1,
                                              "device_name": "CPU", "wall_seconds": 1800.0},
        "history": [{"epoch": e, "train_seconds": 180.0, "image_size": 32} for e in (1, 2)]}))
    assert tr.main(args) == 0
    block = doc.read_text().split(tr.RECIPES_BEGIN)[1].split(tr.RECIPES_END)[0]
    assert ("| shipped | 3 (1 at 16 px, 2 at 32 px) | 0 | n/a | 92.34% | 2.00 h | 200 s | "
            "bfloat16 autocast | CPU |") in block
    assert "| 10ep-32px | 10 at 32 px | 0.1 | 1 | 88.11% | 0.50 h | 180 s | n/a | CPU |" in block


def test_the_training_report_sets_the_scratch_run_beside_the_fine_tuned_one(tmp_path, script):
    tr = script("training_report")

    def run(acc, history, wall):
        return {"clean_accuracy": acc, "recipe": {"epochs": 3, "wall_seconds": wall,
                                                  "amp_used": "none (float32)",
                                                  "device_name": "CPU (2 threads)"},
                "history": [{"epoch": e, "test_acc": a} for e, a in history]}

    runs = {"alexnet-kwta-0.2": run(0.8351, [(0, 0.8117), (2, 0.8345), (3, 0.8344)], 1500.0)}
    assert tr.finding2_table(runs) is None  # no scratch run yet
    runs["alexnet-kwta-0.2-scratch"] = run(0.61, [(0, 0.1), (1, 0.42), (2, 0.55), (3, 0.61)], 1260.0)
    table = tr.finding2_table(runs)
    assert ("| alexnet-kwta-0.2 | the ReLU model's weights | 81.17% |  | 83.45% | 83.44% | "
            "83.51% | none (float32) | 25 min on CPU (2 threads) |") in table
    assert ("| alexnet-kwta-0.2-scratch | random (from scratch) | 10.00% | 42.00% | 55.00% | "
            "61.00% | 61.00% | none (float32) | 21 min on CPU (2 threads) |") in table
