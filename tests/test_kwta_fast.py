"""The fast k-WTA paths equal the reference bit for bit forward, and in value backward.

Bits, not values: ``torch.equal`` says -0.0 == 0.0, and the reference's ``x * mask``
turns a losing negative value into -0.0, so the comparisons are made on the raw bits.
Gradients are compared on the bits of ``g + 0.0``: where every winner is positive the
fast path's backward is ReLU's kernel, which gives a loser +0.0 where the reference's
``g * 0.0`` gives -0.0 for a negative ``g``; every other bit must match.
Speed is never asserted here; ``python -m kwta_demo bench`` measures it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from kwta_demo.models import kwta as K
from kwta_demo.models.architectures import build_model
from kwta_demo.models.kwta import (
    IMPLS,
    KWTA,
    get_kwta_impl,
    kwta,
    kwta_impl,
    kwta_reference,
    kwta_threshold,
    relu_to_kwta,
    resolve_impl,
    set_kwta_impl,
    threshold,
)

TORCH_IMPLS = ["kthvalue", "topk", "numpy", "auto"]
# The shapes the models feed k-WTA: CIFAR ResNet18 blocks, AlexNet's FC layers, and
# torchvision ResNet18's first map at 224x224 (rows kept few to stay fast).
SHAPES = [(3, 64, 32, 32), (4, 128, 16, 16), (5, 256, 8, 8), (8, 512, 4, 4), (6, 512), (2, 64, 56, 56)]


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def assert_same_bits(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype
    assert torch.equal(bits(a), bits(b)), f"{(bits(a) != bits(b)).sum().item()} elements differ"


def assert_same_gradient(a: torch.Tensor, b: torch.Tensor) -> None:
    """Equal bits once the sign of zero is dropped (-0.0 + 0.0 is +0.0; NaN stays NaN)."""
    assert_same_bits(a + 0.0, b + 0.0)


def make(shape, kind: str, dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    if kind == "ties":  # many values repeat, ties at the threshold included
        x = (x * 3).round() / 3
    elif kind == "few":  # a handful of distinct values: ties hold most of each row
        x = torch.randint(-2, 3, shape, generator=g).float()
    elif kind == "special":  # NaN, +-inf, -0.0 and a constant row
        flat = x.view(shape[0], -1)
        flat[0, ::7] = float("nan")
        flat[0, 1::11] = float("inf")
        flat[-1, ::5] = float("-inf")
        flat[-1, 2::3] = -0.0
        if shape[0] > 2:
            flat[1] = 0.5
    elif kind == "relu":  # non-negative, half zeros: the threshold is often 0
        x = torch.relu(x)
    return x.to(dtype)


def forward_backward(fn, x: torch.Tensor, seed: int = 1):
    x = x.clone().requires_grad_(True)
    out = fn(x)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).to(
        device=out.device, dtype=out.dtype)
    (grad,) = torch.autograd.grad(out, x, upstream)
    return out.detach(), grad


@pytest.mark.parametrize("impl", TORCH_IMPLS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("kind", ["randn", "ties", "few", "special", "relu"])
def test_fast_equals_reference_forward_and_backward(impl, shape, kind):
    gamma = 0.2 if SHAPES.index(shape) % 2 else 0.1  # both gammas, half the test time
    x = make(shape, kind, seed=sum(shape) + len(kind))
    out_ref, grad_ref = forward_backward(lambda t: kwta_reference(t, gamma), x)
    out, grad = forward_backward(lambda t: kwta(t, gamma, impl=impl), x)
    assert_same_bits(out, out_ref)
    assert_same_gradient(grad, grad_ref)


@pytest.mark.parametrize("impl", TORCH_IMPLS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("kind", ["randn", "special"])
def test_other_dtypes(impl, dtype, kind):
    x = make((4, 64, 16, 16), kind, dtype)
    out_ref, grad_ref = forward_backward(lambda t: kwta_reference(t, 0.2), x)
    out, grad = forward_backward(lambda t: kwta(t, 0.2, impl=impl), x)
    assert_same_bits(out, out_ref)
    assert_same_gradient(grad, grad_ref)


@pytest.mark.parametrize("impl", TORCH_IMPLS)
def test_cpu_autocast_bfloat16(impl):
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32))
    x = torch.rand(4, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = model(x)
        out_ref, grad_ref = forward_backward(lambda t: kwta_reference(t, 0.1), h.detach())
        out, grad = forward_backward(lambda t: KWTA(0.1, impl=impl)(t), h.detach())
    assert out.dtype == h.dtype
    assert_same_bits(out, out_ref)
    assert_same_gradient(grad, grad_ref)


@pytest.mark.parametrize("k", [1, 2, 409, 4095, 4096])
@pytest.mark.parametrize("impl", ["reference", "kthvalue", "topk", "numpy"])
def test_threshold_every_k(impl, k):
    flat = make((3, 4096), "ties", seed=k)
    expected = kwta_threshold(flat, k)
    got = threshold(flat, k, impl)
    assert torch.equal(flat >= got, flat >= expected)
    assert torch.equal(got, expected)  # values too (-0.0 == 0.0 here)


@pytest.mark.parametrize("impl", TORCH_IMPLS)
def test_channels_last_keeps_layout_and_values(impl):
    x = make((4, 64, 16, 16), "ties").to(memory_format=torch.channels_last)
    out_ref, grad_ref = forward_backward(lambda t: kwta_reference(t, 0.2), x)
    out, grad = forward_backward(lambda t: kwta(t, 0.2, impl=impl), x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert_same_bits(out, out_ref)
    assert_same_gradient(grad, grad_ref)


@pytest.mark.parametrize("impl", TORCH_IMPLS)
def test_non_contiguous_input(impl):
    x = make((4, 16, 32, 32), "randn").transpose(2, 3)
    assert_same_bits(kwta(x, 0.2, impl=impl), kwta_reference(x, 0.2))


@pytest.mark.parametrize("impl", TORCH_IMPLS + ["reference"])
def test_inplace_matches_reference_inplace(impl):
    base = make((4, 64, 16, 16), "ties")
    layer = nn.BatchNorm2d(64)
    x_ref = base.clone().requires_grad_(True)
    x = base.clone().requires_grad_(True)
    ref = KWTA(0.2, inplace=True, impl="reference")(layer(x_ref))
    out = KWTA(0.2, inplace=True, impl=impl)(layer(x))
    assert_same_bits(out.detach(), ref.detach())
    upstream = torch.randn_like(ref)
    (g_ref,) = torch.autograd.grad(ref, x_ref, upstream)
    (g,) = torch.autograd.grad(out, x, upstream)
    assert_same_gradient(g, g_ref)
    with torch.no_grad():
        y = base.clone()
        out = KWTA(0.2, inplace=True, impl=impl)(y)
        assert out.data_ptr() == y.data_ptr()
        assert_same_bits(out, kwta_reference(base, 0.2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_numpy_select_on_the_bits_falls_back_row_by_row(dtype):
    # Rows the integer order cannot settle: fewer than k positive values, a NaN (which
    # topk ranks first), a constant 0; the others are settled on the bits.
    x = make((6, 300), "randn", dtype=dtype)
    x[1] = -x[1].abs()  # no positive value
    x[2, ::17] = float("nan")
    x[3] = 0.0
    x[4, :5] = float("-inf")
    for k in (1, 30, 60, 299, 300):
        thr, positive = K._numpy_select(x, k)
        ref = kwta_threshold(x, k)
        assert torch.equal(thr.isnan(), ref.isnan())  # a NaN threshold: any NaN's bits
        assert_same_bits(thr.nan_to_num(0.0), ref.nan_to_num(0.0))
        assert positive is False
    good = make((4, 300), "randn", dtype=dtype)
    thr, positive = K._numpy_select(good, 60)
    assert_same_bits(thr, kwta_threshold(good, 60)) and positive is True
    good[0, 7] = float("-inf")  # a loser that is -inf: -inf * 0 is NaN, not a ReLU zero
    assert K._numpy_select(good, 60)[1] is False


def _saved(fn, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``fn(x)`` and the tensors autograd saved while computing it."""
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        out = fn(x)
    return out, saved


@pytest.mark.parametrize("inplace", [False, True])
def test_positive_winners_train_with_relus_backward_and_keep_no_mask(inplace):
    # Every threshold > 0: autograd keeps only the output (which the next layer keeps
    # anyway) and ReLU's kernel computes the gradient; the reference keeps a mask.
    base = make((4, 64, 16, 16), "randn")
    layer = nn.BatchNorm2d(64)
    x = base.clone().requires_grad_(True)
    h = layer(x)
    out, saved = _saved(KWTA(0.2, inplace=inplace, impl="numpy"), h)
    assert "ReluBackward" in type(out.grad_fn).__name__
    assert [t.data_ptr() for t in saved] == [out.data_ptr()]
    x_ref = base.clone().requires_grad_(True)
    h_ref = layer(x_ref)
    ref, saved_ref = _saved(lambda t: kwta_reference(t, 0.2), h_ref)
    assert len(saved_ref) == 1 and saved_ref[0].data_ptr() != ref.data_ptr()  # its mask
    assert_same_bits(out.detach(), ref.detach())
    upstream = torch.randn_like(out)
    (g,) = torch.autograd.grad(out, x, upstream)
    (g_ref,) = torch.autograd.grad(ref, x_ref, upstream)
    assert_same_gradient(g, g_ref)


def test_non_positive_winners_keep_the_mask_and_the_exact_gradient():
    # A row with fewer than k positive values has winners <= 0, which ReLU's backward
    # would drop: the mask path runs, and its gradient is the reference's bit for bit.
    x = make((4, 2000), "randn")
    x[2] = -x[2].abs()
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out, ref = kwta(a, 0.2, impl="numpy"), kwta_reference(b, 0.2)
    assert type(out.grad_fn).__name__ == "MulBackward0"
    upstream = torch.randn_like(out)
    assert_same_bits(torch.autograd.grad(out, a, upstream)[0],
                     torch.autograd.grad(ref, b, upstream)[0])


def test_scratch_memory_is_not_shared_between_results():
    # Inference reuses scratch memory for the partition copy and an in-place mask; results
    # of earlier calls must not change, whatever the shapes in between.
    shapes = [(4, 64, 16, 16), (2, 512), (4, 64, 16, 16), (8, 128, 8, 8)]
    inputs = [make(s, "ties", seed=i) for i, s in enumerate(shapes)]
    with torch.no_grad():
        outs = [kwta(x, 0.2) for x in inputs]
        outs_inplace = [kwta(x.clone(), 0.1, inplace=True) for x in inputs]
    for x, out, out_inplace in zip(inputs, outs, outs_inplace):
        assert_same_bits(out, kwta_reference(x, 0.2))
        assert_same_bits(out_inplace, kwta_reference(x, 0.1))


def test_inference_output_equals_training_output():
    x = make((4, 64, 16, 16), "randn")
    with torch.no_grad():
        a = kwta(x, 0.2)
    b = kwta(x.clone().requires_grad_(True), 0.2)
    assert_same_bits(a, b.detach())
    assert_same_bits(x, make((4, 64, 16, 16), "randn"))  # the input is untouched


def test_whole_model_same_logits_and_input_gradient():
    torch.manual_seed(0)
    model = build_model("resnet18", "kwta", 0.2).eval()
    x = torch.rand(2, 3, 32, 32)
    results = {}
    for impl in ["reference", "auto"]:
        with kwta_impl(impl):
            results[impl] = forward_backward(model, x)
    assert_same_bits(results["auto"][0], results["reference"][0])
    assert_same_gradient(results["auto"][1], results["reference"][1])


def test_impl_switches():
    assert get_kwta_impl() == "auto"
    layer = KWTA(0.2)
    assert layer.impl is None and "impl" not in repr(layer)
    assert "impl='kthvalue'" in repr(KWTA(0.2, impl="kthvalue"))
    with kwta_impl("reference"):
        assert get_kwta_impl() == "reference"
    assert get_kwta_impl() == "auto"
    set_kwta_impl("topk")
    try:
        assert get_kwta_impl() == "topk"
    finally:
        set_kwta_impl("auto")
    for bad in ["fastest", ""]:
        with pytest.raises(ValueError):
            KWTA(0.2, impl=bad)
        with pytest.raises(ValueError):
            set_kwta_impl(bad)
    assert set(TORCH_IMPLS + ["reference", "triton"]) == set(IMPLS)


def test_relu_to_kwta_passes_impl_and_keeps_it():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True), nn.Linear(4, 4), nn.ReLU())
    assert relu_to_kwta(model, 0.5, impl="kthvalue") == 2
    assert [m.impl for m in model if isinstance(m, KWTA)] == ["kthvalue", "kthvalue"]
    assert model[1].inplace and not model[3].inplace
    relu_to_kwta(model, 0.25)  # a new gamma keeps the chosen impl
    assert [(m.gamma, m.impl) for m in model if isinstance(m, KWTA)] == [(0.25, "kthvalue")] * 2
    with pytest.raises(ValueError):
        relu_to_kwta(model, 0.25, impl="nope")


def test_auto_choice_on_cpu():
    big = torch.zeros(16, 65536)
    assert resolve_impl("auto", big, 100) == "numpy"
    assert resolve_impl("auto", torch.zeros(1, 512, dtype=torch.bfloat16), 51) == "numpy"
    assert resolve_impl("kthvalue", big, 100) == "kthvalue"
    assert resolve_impl("auto", torch.zeros(1, 512, dtype=torch.int32), 51) == "kthvalue"
    with pytest.raises(ValueError):
        threshold(big, 100, "bracket")  # no such implementation


def test_threshold_rejects_bad_arguments():
    with pytest.raises(ValueError):
        threshold(torch.zeros(3), 1)
    with pytest.raises(ValueError):
        threshold(torch.zeros(2, 5), 6)
    with pytest.raises(ValueError):
        kwta(torch.zeros(5), 0.5)


def test_triton_kernel_in_interpreter():
    """The CUDA radix-select kernel, run by Triton's CPU interpreter on the same cases."""
    pytest.importorskip("triton")
    script = textwrap.dedent(
        """
        import json, torch
        from kwta_demo.models import kwta_triton as KT
        from kwta_demo.models.kwta import kwta_threshold
        bad = []
        for dtype in (torch.float32, torch.bfloat16, torch.float16):
            g = torch.Generator().manual_seed(0)
            for kind in ("randn", "ties", "special"):
                x = torch.randn(3, 3000, generator=g)
                if kind == "ties":
                    x = (x * 2).round()
                if kind == "special":
                    x[0, ::7] = float("nan"); x[2, ::3] = float("inf"); x[2, 1::5] = -0.0
                    x[1] = -0.0
                x = x.to(dtype)
                for k in (1, 600, 3000):
                    got, ref = KT.radix_threshold(x, k), kwta_threshold(x, k)
                    if not torch.equal(x >= got, x >= ref):
                        bad.append([str(dtype), kind, k])
        # the first-use check returns the reference and then trusts the kernel
        x = torch.randn(2, 4096)
        first = KT.checked_threshold(x, 300, kwta_threshold)
        second = KT.checked_threshold(x, 300, kwta_threshold)
        print(json.dumps({"bad": bad, "checked": list(KT._checked.values()),
                          "same": bool(torch.equal(first, second))}))
        """
    )
    env = dict(os.environ, TRITON_INTERPRET="1")
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"bad": [], "checked": [True], "same": True}


def test_bench_rows_and_json(tmp_path):
    """The bench command writes one row per workload x impl with the agreed fields."""
    import argparse

    from kwta_demo.cli import bench
    from kwta_demo.evaluation.speed import markdown_table

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    out = tmp_path / "bench-test.json"
    args = parser.parse_args(
        ["--device", "cpu", "--workloads", "resnet18-32-forward-b16", "--warmup", "0",
         "--repeats", "1", "--output", str(out)]
    )
    assert bench.main(args) == 0
    data = json.loads(out.read_text())
    assert data["environment"]["device"] == "cpu" and data["command"].startswith("python -m kwta_demo bench")
    rows = data["rows"]
    assert [r["impl"] for r in rows] == ["relu", "reference", "fast"]
    for r in rows:
        assert r["workload"] == "resnet18-32-forward-b16"
        assert r["ms"] > 0 and r["ratio_vs_relu"] > 0
    assert rows[0]["ratio_vs_relu"] == 1.0
    assert rows[2]["check"]["layers_checked"] == 16 and rows[2]["check"]["mismatches"] == 0
    assert "| resnet18-32-forward-b16 | fast |" in markdown_table(rows)


def test_bench_pgd_click_stays_in_the_ball():
    from kwta_demo.evaluation import speed as bench

    torch.manual_seed(0)
    models = [build_model("resnet18", "kwta", 0.1).eval().requires_grad_(False)]
    image, label = torch.rand(1, 3, 32, 32), torch.tensor([3])
    (adv,) = bench.pgd_click(models, image, label, steps=2, eps=8 / 255)
    assert adv.shape == image.shape
    assert float((adv - image).abs().max()) <= 8 / 255 + 1e-6
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
