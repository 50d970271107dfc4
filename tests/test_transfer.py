"""Transfer matrices: each cell checked against a direct computation."""

from __future__ import annotations

import math

import torch
from torch import nn

from kwta_demo import build_model
from kwta_demo.evaluation.transfer import transfer_matrix


class Linear(nn.Module):
    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(3 * 32 * 32, 10)

    def forward(self, x):
        return self.fc(x.flatten(1)) * 10


def test_cells_are_fooled_shares_of_each_targets_correct_images():
    torch.manual_seed(0)
    models = {"a": Linear(0), "b": Linear(1), "kwta": build_model("alexnet", "kwta", 0.1).eval()}
    x = torch.rand(8, 3, 32, 32)
    y = models["a"](x).argmax(1)
    m = transfer_matrix(models, x, y, attack="pgd", preset="interactive", eps=0.05, seed=0)
    assert m.sources == ("a", "b", "kwta", "kwta (BPDA)") and m.targets == ("a", "b", "kwta")
    from kwta_demo.attacks import run_attack

    adv_b = run_attack("pgd", models["b"], x, y, eps=0.05, preset="interactive", seed=0).adversarial
    with torch.no_grad():
        ok = models["a"](x).argmax(1) == y
        expected = float(((models["a"](adv_b).argmax(1) != y) & ok).sum()) / int(ok.sum())
    assert m.rates[1][0] == expected
    assert m.n[0] == 8  # a gets every image right: they are its own predictions
    assert m.rates[0][0] >= 0.9  # white-box on a linear model
    for row, cis in zip(m.rates, m.ci95):
        for v, (lo, hi) in zip(row, cis):
            assert math.isnan(v) or lo - 1e-9 <= v <= hi + 1e-9
    assert len(m.rows()) == 12
    given = transfer_matrix({"a": models["a"]}, x, y, adversarial={"a": x.clone()}, bpda_preset=None)
    assert given.rates == ((0.0,),)  # the clean images fool nothing
