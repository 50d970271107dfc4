"""The gradient-masking audit on models where the right verdict is known."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from kwta_demo.evaluation.audit import audit, gradient_statistics


class Linear(nn.Module):
    """A linear classifier of 8x8 images: smooth, its gradient is the whole truth."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(3 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)) * 20


class Quantised(nn.Module):
    """The same classifier behind a rounding of the input to 4 levels: the input gradient is
    zero everywhere, yet the decision still moves with the input. Masking by construction."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * 3) / 3)


@pytest.fixture(scope="module")
def linear_batch():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(12, 3, 8, 8, generator=gen)
    with torch.no_grad():
        y = Linear()(x).argmax(1)  # labels the model gets right: every image counts
    return x, y


def test_a_smooth_model_comes_out_clean(linear_batch):
    x, y = linear_batch
    result = audit(Linear(), x, y, preset="corrected", eps=0.1, name="linear", twin=Linear(1),
                   twin_name="another linear model")
    assert not result.masked, result.verdict
    assert result.verdict.startswith("No sign of gradient masking")
    by = {c.key: c for c in result.checks}
    assert by["unbounded"].values["unbounded_success"] == 1.0
    assert by["gradient_free"].flagged is False and by["transfer"].flagged is False
    assert by["gradients"].values["zero_gradient_share"] == 0.0
    assert by["gradients"].values["successive_gradient_cosine"] > 0.99  # a linear model's gradient is constant
    assert math.isnan(by["gradients"].values["winner_change_per_step"])  # no k-WTA layer


def test_a_masked_gradient_is_caught(linear_batch):
    x, y = linear_batch
    masked = Quantised(Linear())
    with torch.no_grad():
        keep = masked(x).argmax(1) == y
    result = audit(masked, x[keep], y[keep], preset="corrected", eps=0.2, name="quantised",
                   twin=Linear(), twin_name="the unquantised model", square_preset="cpu")
    assert result.masked and result.verdict.startswith("Robustness here comes from gradient masking")
    by = {c.key: c for c in result.checks}
    assert by["unbounded"].flagged  # zero gradients: PGD cannot move even with eps = 1
    assert by["gradient_free"].flagged  # Square, reading scores only, gets through
    assert by["transfer"].flagged  # so do examples made on the smooth twin
    assert by["gradients"].values["zero_gradient_share"] == 1.0


def test_an_unconverged_attack_is_named_as_such(linear_batch):
    x, y = linear_batch
    result = audit(Linear(), x, y, preset="report", eps=0.2, name="linear")  # 40 x 0.003 eps
    by = {c.key: c for c in result.checks}
    assert by["more_steps"].flagged and by["more_steps"].kind == "unconverged"
    assert result.verdict.startswith("The robustness this attack shows is not real")


def test_gradient_statistics_count_winner_changes_on_kwta():
    from kwta_demo import build_model

    torch.manual_seed(0)
    model = build_model("alexnet", "kwta", 0.1).eval()
    x = torch.rand(4, 3, 32, 32)
    stats = gradient_statistics(model, x, model(x).argmax(1), eps=0.031, steps=3)
    assert 0 < stats["winner_change_per_step"] < 1
    assert -1 <= stats["successive_gradient_cosine"] <= 1


def test_targeted_only_attacks_are_refused(linear_batch):
    x, y = linear_batch
    with pytest.raises(ValueError, match="untargeted"):
        audit(Linear(), x, y, attack="vga", preset="paper")


def test_auditing_checkpoints_writes_rows_once(tmp_path, caplog):
    import logging

    from kwta_demo.evaluation.audit import appender, audit_checkpoints, load_rows
    from kwta_demo.testing import write_image_folder, write_random_checkpoints

    names = ["alexnet-relu", "alexnet-kwta-0.2", "alexnet-kwta-0.1"]
    write_random_checkpoints(tmp_path / "ckpt", names)
    write_image_folder(tmp_path / "data", per_class=1)
    out = tmp_path / "audit.json"
    rows = load_rows(out)
    kw = dict(attacks=("fgsm:paper",), n=4, data=str(tmp_path / "data"), device="cpu",
              square_preset="interactive", checkpoint_dir=tmp_path / "ckpt")
    with caplog.at_level(logging.INFO, logger="kwta_demo.evaluation.audit"):
        found = audit_checkpoints("alexnet", done=rows, on_row=appender(out, rows), **kw)
    # the log says what runs, and each row's verdict when it is done
    done_lines = [m for m in caplog.messages if " done in " in m]
    assert len(done_lines) == 4 and found[1]["verdict"] in done_lines[1]
    assert "transfer matrix of alexnet" in done_lines[-1]
    caplog.clear()
    assert [(r["kind"], r["model"]) for r in found] == [
        ("audit", "alexnet-relu"), ("audit", "alexnet-kwta-0.2"), ("audit", "alexnet-kwta-0.1"),
        ("transfer", "alexnet")]
    assert load_rows(out) == found
    # each row says what it was measured on and when
    from kwta_demo.data.cifar10 import describe_source

    assert {r["data"] for r in found} == {describe_source(str(tmp_path / "data"))}
    assert all(r["finished"].endswith(" UTC") and r["torch"] == torch.__version__ for r in found)
    transfer = found[-1]
    assert transfer["sources"][-2:] == ["alexnet-kwta-0.2 (BPDA)", "alexnet-kwta-0.1 (BPDA)"]
    assert transfer["bpda"] == "bpda:paper"  # the BPDA rows' preset, for the docs to name
    calls = []
    with caplog.at_level(logging.INFO, logger="kwta_demo.evaluation.audit"):
        again = audit_checkpoints("alexnet", done=load_rows(out), on_row=calls.append, **kw)
    assert again == found and calls == []  # nothing measured twice
    assert not [m for m in caplog.messages if m.startswith("audit:")]


def test_a_rerun_reads_the_attack_independent_checks_from_earlier_rows(tmp_path, monkeypatch):
    """A restarted audit (a new process: no memo in memory) auditing a further attack reads
    Square, the unbounded PGD, the transfer and the gradient statistics back from the rows
    already written for the same weights and images, and measures only the new attack."""
    import kwta_demo.evaluation.audit as A
    from kwta_demo.testing import write_image_folder, write_random_checkpoints

    names = ["alexnet-relu", "alexnet-kwta-0.2", "alexnet-kwta-0.1"]
    write_random_checkpoints(tmp_path / "ckpt", names)
    write_image_folder(tmp_path / "data", per_class=1)
    out = tmp_path / "audit.json"
    kw = dict(n=10, data=str(tmp_path / "data"), device="cpu", square_preset="interactive",
              checkpoint_dir=tmp_path / "ckpt")
    real = A.run_attack
    calls: list[str] = []

    def counting(attack, *args, **kwargs):  # and a short Square: what it finds is not the point
        calls.append(attack)
        return real(attack, *args, **({**kwargs, "queries": 10} if attack == "square" else kwargs))

    monkeypatch.setattr(A, "run_attack", counting)
    import kwta_demo.evaluation.transfer as T

    matrix = T.transfer_matrix  # the matrix's BPDA at its interactive budget, for speed
    monkeypatch.setattr(T, "transfer_matrix",
                        lambda *a, **k: matrix(*a, **{**k, "bpda_preset": "interactive"}))
    rows = A.load_rows(out)
    first = A.audit_checkpoints("alexnet", attacks=("fgsm:paper",), done=rows,
                                on_row=A.appender(out, rows), **kw)
    audited = [r for r in first if r["kind"] == "audit" and r["checks"]]
    assert audited and all(r["square"] == "interactive" for r in audited)
    assert calls.count("square") == len(audited)
    calls.clear()
    # (fgsm last: its transfer matrix is kept too)
    again = A.audit_checkpoints("alexnet", attacks=("pgd:interactive", "fgsm:paper"),
                                done=A.load_rows(out), **kw)
    assert "square" not in calls  # read back, not measured again
    new = {r["model"]: r for r in again
           if r["kind"] == "audit" and r["attack"] == "pgd:interactive"}
    for old in audited:
        before = {c["key"]: c["values"] for c in old["checks"]}
        after = {c["key"]: c["values"] for c in new[old["model"]]["checks"]}
        for key in ("unbounded", "gradient_free", "transfer", "gradients"):
            if key == "gradient_free":
                assert after[key]["square_success"] == before[key]["square_success"]
            else:
                assert after[key] == before[key], key
    # another Square budget is measured anew
    class SquareRan(Exception):
        pass

    def refusing_square(attack, *args, **kwargs):
        if attack == "square":
            raise SquareRan
        return real(attack, *args, **kwargs)

    monkeypatch.setattr(A, "run_attack", refusing_square)
    with pytest.raises(SquareRan):
        A.audit_checkpoints("alexnet", attacks=("pgd:interactive",), done=A.load_rows(out),
                            **{**kw, "square_preset": "cpu"})


def test_a_memo_shares_the_attack_independent_checks_across_audits(linear_batch, monkeypatch):
    """The unbounded PGD, Square, the transfer and the gradient statistics do not depend on
    the audited attack: with one memo per model, a second audit reads them, with the same
    evidence as computing them again."""
    import kwta_demo.evaluation.audit as A

    x, y = linear_batch
    model, twin = Quantised(Linear()), Linear()
    with torch.no_grad():
        keep = model(x).argmax(1) == y
    x, y = x[keep], y[keep]
    kw = dict(eps=0.2, name="quantised", twin=twin, square_preset="interactive")
    fresh = [audit(model, x, y, preset=p, **kw) for p in ("corrected", "report")]
    calls: list[str] = []
    real = A.run_attack

    def counting(attack, *args, **kwargs):
        calls.append(attack)
        return real(attack, *args, **kwargs)

    monkeypatch.setattr(A, "run_attack", counting)
    memo: dict = {}
    first = audit(model, x, y, preset="corrected", memo=memo, **kw)
    n_first = len(calls)
    second = audit(model, x, y, preset="report", memo=memo, **kw)
    assert calls[:n_first].count("square") == 1 and "square" not in calls[n_first:]
    assert calls[n_first:] == ["pgd", "pgd"]  # the audited attack and its longer run only
    def seen(result):  # repr: NaN (no k-WTA layer here) is not equal to itself
        return [(c.key, c.flagged, c.evidence, repr(c.values)) for c in result.checks]

    assert [seen(first), seen(second)] == [seen(fresh[0]), seen(fresh[1])]
    other = audit(model, x, y, preset="corrected", memo=memo, **{**kw, "eps": 0.1})
    assert other.eps == 0.1 and calls.count("square") == 2  # another eps: measured anew


def test_auditing_the_adversarially_trained_pair_at_its_eps(tmp_path):
    """The adversarially trained models of an architecture (ReLU and the k-WTA gammas
    trained), at their own eps; the transfer row names the AT family."""
    from kwta_demo.evaluation.audit import audit_checkpoints
    from kwta_demo.testing import write_image_folder, write_random_checkpoints

    write_random_checkpoints(tmp_path / "ckpt", ["alexnet-at-relu", "alexnet-at-kwta-0.1"])
    write_image_folder(tmp_path / "data", per_class=1)
    found = audit_checkpoints("alexnet", adversarial=True, eps=8 / 255, gammas=(0.1,),
                              attacks=("fgsm:paper",), n=4, data=str(tmp_path / "data"),
                              device="cpu", square_preset="interactive",
                              checkpoint_dir=tmp_path / "ckpt")
    assert [(r["kind"], r["model"]) for r in found] == [
        ("audit", "alexnet-at-relu"), ("audit", "alexnet-at-kwta-0.1"), ("transfer", "alexnet-at")]
    assert all(r["eps"] == pytest.approx(8 / 255) for r in found if r.get("correct"))
