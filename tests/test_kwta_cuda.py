"""The CUDA k-WTA paths (Triton's radix select, ``kthvalue``, ``topk``) against the CPU
reference, bit for bit forward and in value backward, on the shapes the models feed them.

Skipped without a CUDA GPU; the CPU paths are tested in test_kwta_fast.py, whose helpers
these tests share. On a GPU machine: ``python -m pytest -q tests/test_kwta_cuda.py``.
"""

from __future__ import annotations

import pytest
import torch
from test_kwta_fast import (
    SHAPES,
    assert_same_bits,
    assert_same_gradient,
    forward_backward,
    make,
)

from kwta_demo.models.kwta import (
    KWTA,
    kwta,
    kwta_reference,
    kwta_threshold,
    num_winners,
    resolve_impl,
)

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)

CUDA_IMPLS = ["kthvalue", "topk", "triton", "auto"]
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
KINDS = ["randn", "ties", "few", "special", "relu"]


def _needs(impl: str) -> None:
    if impl == "triton":
        pytest.importorskip("triton")


def _kernel_passed(x: torch.Tensor, gamma: float) -> bool | None:
    """Whether the Triton kernel passed its first-use check on ``x``'s shape (None: unchecked)."""
    from kwta_demo.models import kwta_triton

    flat = x.reshape(x.shape[0], -1)
    return kwta_triton._checked.get(kwta_triton._key(flat, num_winners(gamma, flat.shape[1])))


@pytest.mark.parametrize("impl", CUDA_IMPLS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_cuda_equals_the_cpu_reference(impl, shape, kind, dtype):
    _needs(impl)
    gamma = 0.2 if SHAPES.index(shape) % 2 else 0.1
    x = make(shape, kind, dtype, seed=sum(shape) + len(kind))
    out_ref, grad_ref = forward_backward(lambda t: kwta_reference(t, gamma), x)
    out, grad = forward_backward(lambda t: kwta(t, gamma, impl=impl), x.cuda())
    assert out.device.type == "cuda"
    assert_same_bits(out.cpu(), out_ref)
    assert_same_gradient(grad.cpu(), grad_ref)
    if impl == "triton":
        # a kernel that failed its check would have been replaced by the reference unseen
        assert _kernel_passed(x.cuda(), gamma) is True


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_the_radix_kernel_itself_is_exact(shape, kind, dtype):
    """The kernel's own threshold, without the first-use check that would hide a mistake."""
    pytest.importorskip("triton")
    from kwta_demo.models import kwta_triton

    flat = make(shape, kind, dtype, seed=len(kind)).reshape(shape[0], -1).cuda()
    n = flat.shape[1]
    for k in sorted({1, num_winners(0.1, n), num_winners(0.2, n), n // 2, n}):
        got, ref = kwta_triton.radix_threshold(flat, k), kwta_threshold(flat.cpu(), k)
        assert torch.equal((flat >= got).cpu(), flat.cpu() >= ref), (kind, str(dtype), k)


def test_auto_takes_the_kernel_once_checked():
    pytest.importorskip("triton")
    x = make((8, 64, 32, 32), "randn", seed=3).cuda()
    flat = x.view(8, -1)
    first = kwta(x, 0.1)  # the first use checks the kernel on this shape
    assert _kernel_passed(x, 0.1) is True
    assert resolve_impl("auto", flat, num_winners(0.1, flat.shape[1])) == "triton"
    assert_same_bits(kwta(x, 0.1).cpu(), first.cpu())
    assert_same_bits(first.cpu(), kwta_reference(x.cpu(), 0.1))


@pytest.mark.parametrize("impl", CUDA_IMPLS)
def test_cuda_autocast(impl):
    """Under CUDA autocast the activations arrive as float16; k-WTA keeps their dtype."""
    _needs(impl)
    layer = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1),
                                torch.nn.BatchNorm2d(32)).cuda()
    x = torch.rand(4, 3, 32, 32, device="cuda")
    with torch.autocast("cuda", dtype=torch.float16):
        h = layer(x).detach()
        out, grad = forward_backward(lambda t: KWTA(0.1, impl=impl)(t), h)
    out_ref, grad_ref = forward_backward(lambda t: kwta_reference(t, 0.1), h.cpu())
    assert out.dtype == h.dtype == torch.float16
    assert_same_bits(out.cpu(), out_ref)
    assert_same_gradient(grad.cpu(), grad_ref)
