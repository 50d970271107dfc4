"""The evaluate command on a tiny generated image folder and tiny checkpoints."""

import json
import logging
import re

import pytest
import torch

from kwta_demo import build_model, save_checkpoint
from kwta_demo.__main__ import main as cli
from kwta_demo.data.cifar10 import load_cifar10
from kwta_demo.evaluation.accuracy import clean_accuracy
from kwta_demo.evaluation.results import RobustColumn, to_markdown


@pytest.fixture
def folder_data(image_folder):
    return image_folder


class Constant(torch.nn.Module):
    """Always predicts one class: its accuracy on a balanced set is exactly 1/10."""

    def forward(self, x):
        return torch.nn.functional.one_hot(torch.full((len(x),), 3), 10).float()


def test_clean_accuracy_counts_every_image(folder_data):
    split = load_cifar10("test", folder_data)
    assert clean_accuracy(Constant(), split, batch_size=7, device=torch.device("cpu")) == 0.1


def test_evaluate_command_writes_json_and_markdown(folder_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KWTA_CHECKPOINTS", str(tmp_path / "ckpts"))
    torch.manual_seed(0)
    model = build_model("alexnet", "kwta", 0.1).eval()
    save_checkpoint(model, tmp_path / "ckpts" / "alexnet-kwta-0.1", half=True)
    out = tmp_path / "results" / "eval-v0.1"  # dots stay in the stem
    code = cli(["evaluate", "--models", "alexnet-kwta-0.1", "--data", str(folder_data),
                "--device", "cpu", "--out", str(out)])
    assert code == 0
    result = json.loads(out.with_name("eval-v0.1.json").read_text())
    (row,) = result["rows"]
    assert row["model"] == "alexnet-kwta-0.1" and row["attack"] == "none" and row["n"] == 20
    # the same number as computing it by hand on the reloaded model
    split = load_cifar10("test", folder_data)
    reloaded = build_model("alexnet", "kwta", 0.1)
    reloaded.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    with torch.no_grad():
        expected = (reloaded.eval()(split.images.float() / 255).argmax(1) == split.labels).float().mean()
    assert row["clean_acc"] == pytest.approx(expected.item())
    table = out.with_name("eval-v0.1.md").read_text()
    assert f"| alexnet-kwta-0.1 | {100 * row['clean_acc']:.2f} |" in table
    assert "Clean: 20 test images" in table and f"{folder_data.name} (folder)" in table
    assert table in capsys.readouterr().out
    # run again with nothing left to measure: the files, meta included, stay as they are
    before = out.with_name("eval-v0.1.json").read_bytes(), table
    assert cli(["evaluate", "--models", "alexnet-kwta-0.1", "--data", str(folder_data),
                "--device", "cpu", "--out", str(out)]) == 0
    assert "nothing measured" in capsys.readouterr().err
    assert (out.with_name("eval-v0.1.json").read_bytes(), out.with_name("eval-v0.1.md")
            .read_text()) == before


def test_missing_model_and_data_are_clear_errors(folder_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KWTA_CHECKPOINTS", str(tmp_path / "none"))
    monkeypatch.setenv("KWTA_HUB_TIMEOUT", "0.2")
    assert cli(["evaluate", "--models", "resnet18-relu", "--data", str(folder_data),
                "--device", "cpu", "--out", str(tmp_path / "e")]) == 2
    assert "checkpoint 'resnet18-relu' not found" in capsys.readouterr().err
    assert cli(["evaluate", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "e")]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_attack_spec_parsing():
    assert RobustColumn.parse("pgd:report@0.031", 0.1) == RobustColumn("pgd", "report", 0.031)
    assert RobustColumn.parse("deepfool", 0.02) == RobustColumn("deepfool", "paper", 0.02)
    with pytest.raises(ValueError, match="bad epsilon"):
        RobustColumn.parse("pgd@x", 0.1)


def test_markdown_lays_out_models_by_attack():
    meta = {"n_clean": 10, "n_robust": 5, "seed": 1, "data": "d", "device": "cpu",
            "device_name": "x86", "torch": "2", "command": "c"}
    rows = [
        {"model": "m", "attack": "none", "preset": "", "eps": 0.0, "clean_acc": 0.9, "robust_acc": 0.9},
        {"model": "m", "attack": "pgd", "preset": "paper", "eps": 0.031, "clean_acc": 0.9, "robust_acc": 0.125},
    ]
    table = to_markdown({"meta": meta, "rows": rows})
    assert "| model | clean | pgd:paper@0.031 |" in table
    assert "| m | 90.00 | 12.50 |" in table
    assert "robust: 5 (seeded subset, seed 1)" in table
    # columns on other numbers of images say so
    rows += [{**rows[1], "n": 5}, {**rows[1], "attack": "cw", "n": 2}]
    table = to_markdown({"meta": meta, "rows": rows})
    assert "robust: 5 (cw:paper@0.031: 2) (seeded subset, seed 1)" in table


def test_robust_rows_come_from_real_attacks_and_are_saved_as_they_finish(folder_data, tmp_path, monkeypatch,
                                                                         caplog):
    from kwta_demo.evaluation.evaluate import evaluate

    caplog.set_level(logging.INFO, logger="kwta_demo.evaluation.evaluate")

    monkeypatch.setenv("KWTA_CHECKPOINTS", str(tmp_path / "ckpts"))
    torch.manual_seed(0)
    save_checkpoint(build_model("alexnet").eval(), tmp_path / "ckpts" / "alexnet-relu", half=True)
    updates = []
    result = evaluate(["alexnet-relu"], [RobustColumn("fgsm", "paper", 8 / 255)], data=str(folder_data),
                      n_robust=12, seed=3, device="cpu", progress=False,
                      on_update=lambda r: updates.append(len(r["rows"])))
    clean, robust = result["rows"]
    assert updates == [1, 2]
    assert robust["attack"] == "fgsm" and robust["n"] == 12 and robust["seed"] == 3
    assert 0.0 <= robust["robust_acc"] <= 1.0 and robust["clean_acc"] == clean["clean_acc"]
    assert "clean_acc_subset" in robust  # the attacked images' clean accuracy, named apart
    assert result["meta"]["n_robust"] == 12
    lo, hi = robust["robust_ci95"]
    assert lo <= robust["robust_acc"] <= hi
    # each row says when it was finished (rows of one file come from several runs), and
    # the log says what it measured
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", r["finished"]) for r in (clean, robust))
    assert f"alexnet-relu fgsm:paper: {100 * robust['robust_acc']:.1f}% of 12 (" in caplog.text

    # a second run keeps every finished row; a changed preset is measured again
    again = evaluate(["alexnet-relu"], [RobustColumn("fgsm", "paper", 8 / 255)], data=str(folder_data),
                     n_robust=12, seed=3, device="cpu", progress=False, done=result["rows"],
                     on_update=lambda r: updates.append(len(r["rows"])))
    assert again["rows"] == result["rows"] and updates == [1, 2]
    from kwta_demo.attacks import get_attack

    monkeypatch.setitem(get_attack("fgsm").presets, "paper", {"loss": "margin"})
    changed = evaluate(["alexnet-relu"], [RobustColumn("fgsm", "paper", 8 / 255)], data=str(folder_data),
                       n_robust=12, seed=3, device="cpu", progress=False, done=result["rows"])
    assert len(changed["rows"]) == 3 and changed["rows"][2]["preset_params"] == '{"loss": "margin"}'
    with pytest.raises(ValueError, match="no preset 'nope'"):
        evaluate(["alexnet-relu"], [RobustColumn("fgsm", "nope", 8 / 255)], data=str(folder_data),
                 n_robust=12, seed=3, device="cpu", progress=False)


def test_evaluation_sample_is_class_balanced_and_nested(folder_data):
    from kwta_demo.data.cifar10 import CifarSplit, evaluation_sample

    labels = torch.arange(10).repeat_interleave(50)
    split = CifarSplit(torch.zeros(500, 3, 32, 32, dtype=torch.uint8), labels)
    small, idx_small = evaluation_sample(split, 32, seed=5)
    big, idx_big = evaluation_sample(split, 100, seed=5)
    assert torch.bincount(big.labels, minlength=10).tolist() == [10] * 10
    assert small.labels[:10].tolist() == list(range(10))  # classes take turns
    assert torch.equal(idx_big[:32], idx_small)  # a smaller sample is a prefix of a larger one
    assert not torch.equal(evaluation_sample(split, 32, seed=6)[1], idx_small)
    with pytest.raises(ValueError):
        evaluation_sample(split, 501, seed=0)


def test_wilson_interval():
    from kwta_demo.evaluation.results import wilson_interval

    lo, hi = wilson_interval(0, 320)
    assert lo == 0.0 and 0.011 < hi < 0.013  # the rule of three's neighbour: ~3.7/n
    lo, hi = wilson_interval(161, 320)  # the report's 50.3% on its 320 images
    assert 0.448 < lo < 0.450 and 0.557 < hi < 0.559
    assert wilson_interval(5, 0) == [0.0, 1.0]


def _tiny_checkpoint(tmp_path, monkeypatch, name="alexnet-kwta-0.1"):
    monkeypatch.setenv("KWTA_CHECKPOINTS", str(tmp_path / "ckpts"))
    torch.manual_seed(0)
    arch, _, rest = name.partition("-")
    model = build_model(arch, "kwta", 0.1) if "kwta" in rest else build_model(arch)
    save_checkpoint(model.eval(), tmp_path / "ckpts" / name, half=True)


def _outcomes(result):
    return [(r["attack"], r["robust_acc"], r.get("robust_per_image")) for r in result["rows"]]


def test_rows_do_not_depend_on_the_batch_size(folder_data, tmp_path, monkeypatch):
    from kwta_demo.evaluation.evaluate import evaluate

    _tiny_checkpoint(tmp_path, monkeypatch)
    cols = [RobustColumn("pgd", "interactive", 8 / 255), RobustColumn("vga", "interactive", 1.0)]
    kw = dict(data=str(folder_data), n_robust=12, seed=3, device="cpu", progress=False)
    five = evaluate(["alexnet-kwta-0.1"], cols, batch_size=5, **kw)
    twelve = evaluate(["alexnet-kwta-0.1"], cols, batch_size=12, **kw)
    assert _outcomes(five) == _outcomes(twelve)
    pgd = five["rows"][1]
    assert len(pgd["robust_per_image"]) == 12 and pgd["seeding"].startswith("per image")
    assert pgd["robust_acc"] == sum(pgd["robust_per_image"]) / 12
    assert five["meta"]["robust_test_indices"] == twelve["meta"]["robust_test_indices"]


def test_a_stopped_row_goes_on_from_its_finished_batches(folder_data, tmp_path, monkeypatch):
    from kwta_demo.evaluation import accuracy
    from kwta_demo.evaluation import evaluate as ev
    from kwta_demo.evaluation.batches import EvaluationStopped

    _tiny_checkpoint(tmp_path, monkeypatch)
    cols = [RobustColumn("pgd", "interactive", 8 / 255)]
    kw = dict(data=str(folder_data), n_robust=12, seed=3, device="cpu", progress=False,
              batch_size=4)
    fresh = ev.evaluate(["alexnet-kwta-0.1"], cols, **kw)
    parts = tmp_path / "parts"
    asked = []

    def stop_at_the_second_attack_batch() -> bool:
        asked.append(1)
        return len(asked) == 5 + 2  # the clean row's 5 batches (20 images), one attack batch
    calls = []
    with pytest.raises(EvaluationStopped, match="batch 1 of 3"):
        ev.evaluate(["alexnet-kwta-0.1"], cols, parts_dir=parts,
                    should_stop=stop_at_the_second_attack_batch, **kw)
    assert len(list(parts.glob("*/seeds-*.json"))) == 1  # the finished attack batch is kept

    original = accuracy.run_attack

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(accuracy, "run_attack", counting)
    resumed = ev.evaluate(["alexnet-kwta-0.1"], cols, parts_dir=parts, **kw)
    assert len(calls) == 2  # batches 1 and 2 only; batch 0 came from its part
    assert _outcomes(resumed) == _outcomes(fresh)

    # a larger sample begins with the smaller one's images (same seeds): 3 batches are read
    calls.clear()
    larger = ev.evaluate(["alexnet-kwta-0.1"], cols, parts_dir=parts, **{**kw, "n_robust": 20})
    assert len(calls) == 2  # images 12-19 only
    alone = ev.evaluate(["alexnet-kwta-0.1"], cols, **{**kw, "n_robust": 20})
    assert _outcomes(larger) == _outcomes(alone)
    assert _outcomes(larger)[1][2][:12] == _outcomes(fresh)[1][2]

    # a later run on fewer images keeps listing the 20 images the kept row's outcomes are in
    fewer = ev.evaluate(["alexnet-kwta-0.1"], [RobustColumn("fgsm", "interactive", 8 / 255)],
                        done=larger["rows"], **{**kw, "n_robust": 8})
    assert fewer["meta"]["n_robust"] == 8
    assert fewer["meta"]["robust_test_indices"] == larger["meta"]["robust_test_indices"]
    assert len(fewer["meta"]["robust_test_indices"]) == 20
    fgsm = next(r for r in fewer["rows"] if r["attack"] == "fgsm")
    assert fgsm["n"] == 8 and len(fgsm["robust_per_image"]) == 8


def test_a_damaged_part_is_computed_again(tmp_path):
    from kwta_demo.evaluation.batches import BatchParts, map_batches

    parts = BatchParts(tmp_path / "row")
    done = []

    def compute(lo, hi):
        done.append(lo)
        return {"x": torch.arange(lo, hi, dtype=torch.float32) / 3}, {"eps": 0.1}

    first, params = map_batches(7, 3, compute, parts=parts)
    assert done == [0, 3, 6] and params == {"eps": 0.1}
    (tmp_path / "row" / "batch-000001.json").write_text("{not json")
    again, _ = map_batches(7, 3, compute, parts=parts)
    assert done == [0, 3, 6, 3] and torch.equal(first["x"], again["x"])  # exact floats


def test_an_attack_spec_takes_eps_as_a_fraction():
    assert RobustColumn.parse("pgd:paper@8/255", 0.031) == RobustColumn("pgd", "paper", 8 / 255)
    assert RobustColumn.parse("autoattack:standard", 0.031).eps == 0.031
    with pytest.raises(ValueError, match="bad epsilon"):
        RobustColumn.parse("pgd@8/0", 0.031)
