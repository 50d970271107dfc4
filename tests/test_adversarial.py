"""Adversarial training: the single-step examples, the held-out PGD-10 check, the epoch kept."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from test_train import assert_same_weights, synthetic, weights

import kwta_demo
from kwta_demo import training as T
from kwta_demo.cli.train import parse_eps
from kwta_demo.data.cifar10 import held_out
from kwta_demo.reporting.cards import write_card
from kwta_demo.training import adversarial as A
from kwta_demo.training import loop
from kwta_demo.training import state as TS

TRAIN, TEST = synthetic(48, 0), synthetic(10, 1)
EPS = 8 / 255


pytestmark = pytest.mark.usefixtures("one_thread", "no_checkpoints")


def adv_config(**overrides) -> T.TrainConfig:
    base = dict(arch="alexnet", epochs=3, lr=0.05, batch_size=16, schedule="cosine",
                warmup_epochs=0.0, seed=3, adversarial="n-fgsm", holdout=16)
    return T.TrainConfig(**{**base, **overrides})


@pytest.mark.parametrize("method, radius", [("fgsm-rs", 1.0), ("n-fgsm", 3.0)])
def test_training_examples_stay_where_each_method_puts_them(method, radius):
    torch.manual_seed(0)
    model = kwta_demo.build_model("alexnet").train()
    x = torch.rand(8, 3, 32, 32)
    y = torch.arange(8)
    torch.manual_seed(5)  # dropout draws from the global generator in train mode
    adv = A.training_examples(model, x, y, method=method, eps=EPS,
                              generator=torch.Generator().manual_seed(1))
    torch.manual_seed(5)
    again = A.training_examples(model, x, y, method=method, eps=EPS,
                                generator=torch.Generator().manual_seed(1))
    delta = (adv - x).abs().amax()
    assert 0 <= float(adv.min()) and float(adv.max()) <= 1
    assert float(delta) <= radius * EPS + 1e-6
    assert float(delta) > 0.9 * radius * EPS  # the step is taken, not only the noise
    assert torch.equal(adv, again) and not adv.requires_grad


def test_the_holdout_is_disjoint_and_seeded():
    rest, held = held_out(TRAIN, 10, seed=3)
    assert len(rest.labels) == 38 and len(held.labels) == 10
    again = held_out(TRAIN, 10, seed=3)[1]
    assert torch.equal(held.images, again.images)
    rows = {tuple(img.flatten()[:64].tolist()) for img in rest.images}
    assert not any(tuple(img.flatten()[:64].tolist()) in rows for img in held.images)
    with pytest.raises(ValueError, match="hold out"):
        held_out(TRAIN, 49, seed=0)


def test_holdout_check_counts_pgd_survivors():
    torch.manual_seed(0)
    model = kwta_demo.build_model("alexnet").eval()
    check = A.holdout_check(model, TEST, EPS, seed=0, batch_size=4)
    assert check.images == 10 and 0 <= check.pgd_acc <= check.clean_acc <= 1
    # zero eps: PGD changes nothing, robust and clean accuracy agree
    assert A.holdout_check(model, TEST, 1e-9, seed=0).pgd_acc == pytest.approx(check.clean_acc)
    assert model.training is False


def test_adversarial_run_records_the_check_and_resumes_bit_identically(tmp_path):
    ref = T.train_model(adv_config(), TRAIN, TEST, "cpu", out=tmp_path / "a" / "alexnet-at-relu",
                        state_dir=tmp_path / "a-runs", progress=False)
    assert all({"holdout_pgd_acc", "holdout_clean_acc"} <= set(h) for h in ref["history"])
    metrics = ref["metrics"]
    assert metrics["recipe"]["train_images"] == 32  # 48 minus the 16 held out
    assert metrics["selected_epoch"] in (1, 2, 3) and "held out" in metrics["selected_by"]
    config = json.loads((tmp_path / "a" / "alexnet-at-relu" / "config.json").read_text())
    assert config["training"] == "adversarial"
    assert kwta_demo.load_model(tmp_path / "a" / "alexnet-at-relu").config.name == "alexnet-at-relu"
    # its card says how it was trained and which epoch it ships
    card = write_card(tmp_path / "a" / "alexnet-at-relu").read_text()
    assert "adversarial-training" in card.split("---")[1]  # a tag in the front matter
    assert "N-FGSM (de Jorge et al. 2022)" in card and "eps 8/255" in card
    assert f"those of epoch {metrics['selected_epoch']}, chosen by the highest PGD-10" in card

    out, runs = tmp_path / "b" / "alexnet-at-relu", tmp_path / "b-runs"
    calls = []
    with pytest.raises(T.TrainingStopped):
        T.train_model(adv_config(), TRAIN, TEST, "cpu", out=out, state_dir=runs,
                      progress=False, save_every=None,
                      should_stop=lambda: calls.append(1) or len(calls) == 4)
    _, meta = TS.read_state(runs / f"alexnet-at-relu{TS.STATE_SUFFIX}")
    assert (meta["epoch"], meta["partial"]["step"], meta["best"]["epoch"]) == (1, 1, 1)
    resumed = T.train_model(adv_config(), TRAIN, TEST, "cpu", out=out, state_dir=runs,
                            progress=False)
    assert_same_weights(weights(out), weights(tmp_path / "a" / "alexnet-at-relu"))
    assert [h["holdout_pgd_acc"] for h in resumed["history"]] == \
        [h["holdout_pgd_acc"] for h in ref["history"]]


def test_the_epoch_with_the_best_holdout_pgd_accuracy_is_kept(tmp_path, monkeypatch):
    """A run whose robustness collapses after epoch 2 ships epoch 2's weights."""
    seen: list[dict[str, torch.Tensor]] = []
    scores = iter([0.30, 0.40, 0.0])  # epoch 3 overfits catastrophically

    def fake_check(model, split, eps, *, seed=0, batch_size=250):
        seen.append(weights(model))
        return A.HoldoutCheck(clean_acc=0.5, pgd_acc=next(scores), images=len(split.labels),
                              seconds=0.0)

    monkeypatch.setattr(loop, "holdout_check", fake_check)
    result = T.train_model(adv_config(), TRAIN, TEST, "cpu", out=tmp_path / "alexnet-at-relu",
                           state_dir=tmp_path / "runs", progress=False, half=False)
    assert result["metrics"]["selected_epoch"] == 2
    shipped = weights(tmp_path / "alexnet-at-relu")
    assert_same_weights(shipped, seen[1])
    assert any(not torch.equal(shipped[k], seen[2][k]) for k in shipped)


def test_the_command_line_trains_adversarial_stages(tmp_path):
    configs = [T.stage_config("alexnet", "at-relu", epochs=2, adversarial="fgsm-rs",
                              adv_eps=0.031, holdout=100)]
    command = T.reproduce_command("alexnet", ["at-relu"], configs, half=True)
    assert "--stages at-relu" in command
    assert "--adversarial fgsm-rs --adv-eps 0.031 --holdout 100" in command
    assert parse_eps("8/255") == pytest.approx(8 / 255) and parse_eps("0.031") == 0.031
    with pytest.raises(argparse.ArgumentTypeError):
        parse_eps("8/0")
