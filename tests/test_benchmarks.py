"""The training benchmark's choice of variants and its paired k-WTA/ReLU ratio."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import train_speed  # noqa: E402


def test_only_keeps_the_baseline_and_each_picked_variants_relu_row():
    todo = train_speed.variants(bf16=True)
    picked = train_speed.pick(todo, ("resnet18-kwta-0.1",))
    labels = [v.label for v in picked]
    assert labels == ["resnet18-relu b128 32px NCHW fp32", "resnet18-relu b128 32px NHWC bf16",
                      "resnet18-relu b128 32px NHWC bf16 n-fgsm",
                      "resnet18-kwta-0.1 b128 32px NHWC bf16",
                      "resnet18-kwta-0.1 b128 32px NHWC bf16 n-fgsm"]
    # an adversarially trained row comes with its standard twin, to pair with
    at = train_speed.pick(todo, ("alexnet-relu b128 32px NHWC bf16 n-fgsm",))
    assert sorted(v.label for v in at[1:]) == ["alexnet-relu b128 32px NHWC bf16",
                                               "alexnet-relu b128 32px NHWC bf16 n-fgsm"]
    assert train_speed.pick(todo) == todo
    with pytest.raises(ValueError, match="resnet18-relu b128 32px NCHW fp32"):
        train_speed.pick(todo, ("vgg",))  # the error lists the labels there are


def test_the_paired_ratio_cancels_load_that_hits_both_steps_of_a_repeat():
    # repeat 2 ran under load: both steps 3x slower. Unpaired medians would mix repeats;
    # the paired ratio stays the steps' own 1.1
    relu = [1.0, 3.0, 1.0, 1.0, 3.0]
    kwta = [1.1, 3.3, 1.1, 1.1, 3.3]
    ratios = train_speed.paired_ratios(kwta, relu)
    assert ratios["median"] == pytest.approx(1.1)
    assert ratios["q1"] == pytest.approx(1.1) and ratios["q3"] == pytest.approx(1.1)
    with pytest.raises(ValueError):
        train_speed.paired_ratios(kwta, relu[:-1])  # steps of different repeats do not pair
