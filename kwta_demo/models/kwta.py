"""The k-Winners-Take-All activation (Xiao, Zhong and Zheng, ICLR 2020).

For each sample, all non-batch dimensions are flattened (C*H*W for a conv activation,
F for a linear one), k = floor(gamma * N) (at least 1), and every element at or above
the k-th largest value survives; the rest become zero. Ties at the threshold keep more
than k elements, exactly as the authors' reference code does. The gradient is the
survivor mask times the upstream gradient: the threshold itself is not differentiated.

``kwta_reference`` is that definition written plainly (a per-row ``topk``) and stays the
oracle. ``KWTA`` and ``kwta`` compute the same function, bit for bit, through a faster
path chosen by device and size (``impl="auto"``): only the way the k-th largest value is
found changes, and every exact selection finds the same value, so the mask
``flat >= threshold`` and everything after it are identical. Gradients are equal in
value; where every winner is positive, the backward is ReLU's own kernel, which saves
keeping a mask for autograd (see ``kwta``).

| impl      | how the threshold is found                                  | used by auto      |
|-----------|-------------------------------------------------------------|-------------------|
| reference | ``topk(k)``, sorted, last column (the oracle)               | never             |
| kthvalue  | ``kthvalue(N - k + 1)``: a quickselect, no sort              | CUDA, no Triton,  |
|           |                                                             | N <= 2**17        |
| topk      | ``topk(k, sorted=False)``, then the smallest of those       | CUDA, no Triton,  |
|           |                                                             | larger N          |
| numpy     | ``numpy.partition`` of each row's bits as integers (CPU     | CPU               |
|           | only): a vectorised introselect, ~10x faster than          |                   |
|           | ``kthvalue`` there                                          |                   |
| triton    | an exact radix select in Triton kernels (kwta_triton.py),   | CUDA              |
|           | checked against the reference once per shape before use     |                   |
"""

from __future__ import annotations

import contextlib
import math
import threading
from typing import Callable, Iterator

import torch
from torch import nn

__all__ = [
    "IMPLS",
    "KWTA",
    "check_gamma",
    "get_kwta_impl",
    "kwta",
    "kwta_impl",
    "kwta_mask",
    "kwta_reference",
    "kwta_threshold",
    "num_winners",
    "relu_to_kwta",
    "kwta_to_relu",
    "resolve_impl",
    "set_kwta_impl",
    "threshold",
]

IMPLS: tuple[str, ...] = ("auto", "reference", "kthvalue", "topk", "numpy", "triton")

_default_impl = "auto"


def check_gamma(gamma: float) -> float:
    """Return gamma as a float, or raise ValueError unless 0 < gamma <= 1."""
    try:
        value = float(gamma)
    except (TypeError, ValueError):
        raise ValueError(f"k-WTA gamma must be a number in (0, 1], got {gamma!r}") from None
    if not 0.0 < value <= 1.0:  # also rejects NaN
        raise ValueError(f"k-WTA gamma must lie in (0, 1], got {gamma!r}")
    return value


def check_impl(impl: str) -> str:
    """Return ``impl`` if it names a k-WTA implementation, else raise ValueError."""
    if impl not in IMPLS:
        raise ValueError(f"unknown k-WTA impl {impl!r}; choose one of {', '.join(IMPLS)}")
    return impl


def set_kwta_impl(impl: str) -> None:
    """Set the implementation used by every ``KWTA`` built without an explicit ``impl``."""
    global _default_impl
    _default_impl = check_impl(impl)


def get_kwta_impl() -> str:
    """The implementation ``KWTA`` modules without an explicit ``impl`` use now."""
    return _default_impl


@contextlib.contextmanager
def kwta_impl(impl: str) -> Iterator[None]:
    """Use ``impl`` as the default implementation inside a ``with`` block."""
    previous = get_kwta_impl()
    set_kwta_impl(impl)
    try:
        yield
    finally:
        set_kwta_impl(previous)


def num_winners(gamma: float, n: int) -> int:
    """k = floor(gamma * n), at least 1."""
    return max(1, int(gamma * n))


def kwta_threshold(flat: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th largest value of each row of a 2-D tensor, shape (rows, 1).

    Reference formulation (a per-row ``topk``), kept as the oracle for faster paths.
    """
    return flat.topk(k, dim=1).values[:, -1:]


def kwta_mask(x: torch.Tensor, gamma: float, threshold_fn=None) -> torch.Tensor:
    """Boolean mask of the k-WTA winners of ``x`` (batch first), no gradient."""
    if x.dim() < 2:
        raise ValueError(f"k-WTA needs a batch dimension, got shape {tuple(x.shape)}")
    flat = x.detach().reshape(x.shape[0], -1)
    k = num_winners(gamma, flat.shape[1])
    with torch.no_grad():
        threshold = (threshold_fn or kwta_threshold)(flat, k)
        return (flat >= threshold).view_as(x)


def kwta_reference(x: torch.Tensor, gamma: float) -> torch.Tensor:
    """k-WTA of ``x`` (batch first) with the reference semantics; out of place."""
    return x * kwta_mask(x, check_gamma(gamma))


# --- exact selections of the k-th largest value per row ----------------------------------
# Every function below returns exactly the value kwta_threshold returns, up to the sign of
# a zero (-0.0 == 0.0, so the mask is the same). NaN ranks above +inf, as in topk.


def _kthvalue_threshold(flat: torch.Tensor, k: int) -> torch.Tensor:
    return flat.kthvalue(flat.shape[1] - k + 1, dim=1, keepdim=True).values


def _topk_threshold(flat: torch.Tensor, k: int) -> torch.Tensor:
    values = flat.topk(k, dim=1, sorted=False).values
    if k == 1:
        return values
    # amin would return NaN as soon as one of the k winners is NaN; the reference
    # threshold is NaN only when all of them are.
    nan = values.isnan()
    smallest = values.masked_fill(nan, math.inf).amin(dim=1, keepdim=True)
    return torch.where(nan.all(dim=1, keepdim=True), values[:, :1], smallest)


_NUMPY_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
# Per-thread scratch memory for values that do not outlive a call (the copy numpy
# partitions, a mask applied in place without autograd): a fresh multi-megabyte tensor
# costs the CPU more in page faults than comparing into it does.
_scratch = threading.local()


def _scratch_tensor(name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised CPU tensor of ``shape``, reused by later calls from this thread."""
    numel = math.prod(shape)
    held = getattr(_scratch, name, None)
    if held is None or held.dtype != dtype or held.numel() < numel:
        held = torch.empty(numel, dtype=dtype)
        setattr(_scratch, name, held)
    return held[:numel].view(shape)


def _numpy_float_threshold(flat: torch.Tensor, k: int) -> torch.Tensor:
    """``numpy.partition`` of each row's values: NaN sorts last, as topk ranks it; 16-bit
    floats are widened to float32 (exactly) first. Right for every input."""
    n = flat.shape[1]
    dtype = flat.dtype if flat.dtype in (torch.float32, torch.float64) else torch.float32
    work = _scratch_tensor("partition", tuple(flat.shape), dtype)
    work.copy_(flat.detach())
    array = work.numpy()
    position = n - k  # the k-th largest is the (n - k + 1)-th smallest
    array.partition(position, axis=1)
    return torch.from_numpy(array[:, position : position + 1].copy()).to(flat.dtype)


_SAME_WIDTH_INT = {torch.float16: torch.int16, torch.bfloat16: torch.int16,
                   torch.float32: torch.int32, torch.float64: torch.int64}


def _numpy_select(flat: torch.Tensor, k: int) -> tuple[torch.Tensor, bool]:
    """The k-th largest value of each row by ``numpy.partition``, and whether every row's
    threshold is > 0 with no NaN or -inf in ``flat`` (then the winners are exactly the
    positive outputs, and ``kwta`` may use ReLU's backward).

    The floats are partitioned as the signed integers of their bits: twice as fast for
    16-bit floats (half the bytes, no widening to float32), a little faster for float32
    (docs/performance.md). Those integers
    order every float with the sign bit clear as the floats do and put every float with it
    set below them; so wherever a row's k-th largest integer is > 0, its k largest
    integers are positive floats in float order, and that integer is the row's threshold.
    The other rows (fewer than k positive values, or a NaN, which topk ranks first) take
    the partition of the values themselves.
    """
    if flat.device.type != "cpu":
        raise ValueError("the numpy k-WTA path needs a CPU tensor")
    itype = _SAME_WIDTH_INT[flat.dtype]
    position = flat.shape[1] - k  # the k-th largest is the (n - k + 1)-th smallest
    work = _scratch_tensor("partition_bits", tuple(flat.shape), itype)
    work.copy_(flat.detach().view(itype))
    array = work.numpy()
    # One thread: on these 2-vCPU machines a second thread partitioning half of the rows
    # measured no faster.
    array.partition(position, axis=1)
    bits = torch.from_numpy(array[:, position : position + 1].copy())
    # One pass over the whole tensor (NaN propagates), rows only if it finds a NaN: a
    # per-row aminmax measured 30x slower here, a per-row amax 2x.
    low, high = torch.aminmax(flat.detach())
    redo = bits <= 0
    if bool(high.isnan()):
        redo |= flat.detach().amax(dim=1, keepdim=True).isnan()
    thr = bits.view(flat.dtype)
    if bool(redo.any()):
        rows = redo.squeeze(1).nonzero().squeeze(1)
        thr[rows] = _numpy_float_threshold(flat[rows], k)
        return thr, False
    return thr, bool(low > -math.inf)


# CUDA without Triton: kthvalue is faster for rows of a 32x32 network, topk for larger.
_CUDA_KTHVALUE_MAX_N = 1 << 17


def resolve_impl(impl: str, flat: torch.Tensor, k: int) -> str:
    """The concrete implementation ``impl`` (perhaps ``"auto"``) means for this input."""
    impl = check_impl(impl)
    if impl != "auto":
        return impl
    n = flat.shape[1]
    if flat.device.type == "cuda":
        from . import kwta_triton

        if kwta_triton.usable(flat, k):
            return "triton"
        return "kthvalue" if n <= _CUDA_KTHVALUE_MAX_N else "topk"
    if flat.device.type == "cpu" and flat.dtype in _NUMPY_DTYPES:
        return "numpy"
    return "kthvalue"


def _triton_threshold(flat: torch.Tensor, k: int) -> torch.Tensor:
    from . import kwta_triton

    return kwta_triton.checked_threshold(flat, k, kwta_threshold)


# The selections other than numpy's (``_numpy_select``, which also says whether every
# winner is positive).
_THRESHOLDS: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
    "reference": kwta_threshold,
    "kthvalue": _kthvalue_threshold,
    "topk": _topk_threshold,
    "triton": _triton_threshold,
}


def _select(flat: torch.Tensor, k: int, impl: str) -> tuple[torch.Tensor, bool]:
    """The threshold of every row by ``impl``, and whether the winners are exactly the
    positive outputs (known for free on the numpy path; the other paths say False). The
    one dispatch behind ``threshold`` and ``kwta``."""
    name = resolve_impl(impl, flat, k)
    if name == "numpy":
        return _numpy_select(flat, k)
    return _THRESHOLDS[name](flat, k), False


def threshold(flat: torch.Tensor, k: int, impl: str = "auto") -> torch.Tensor:
    """The k-th largest value of each row of ``flat`` (rows, N), shape (rows, 1), by ``impl``.

    Every implementation returns the reference value (``kwta_threshold``).
    """
    if flat.dim() != 2 or not 1 <= k <= flat.shape[1]:
        raise ValueError(f"need a 2-D tensor and 1 <= k <= N, got {tuple(flat.shape)}, k={k}")
    with torch.no_grad():
        return _select(flat, k, impl)[0]


def _flatten(x: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """(batch, N) view of ``x`` and the map back to ``x``'s shape and memory layout.

    The selection does not depend on the order within a row, so a channels-last map is
    read in its own order rather than copied into NCHW order by ``reshape``.
    """
    if x.is_contiguous():
        return x.view(x.shape[0], -1), lambda flat: flat.view(x.shape)
    order = [0] + sorted(range(1, x.dim()), key=lambda d: -x.stride(d))
    permuted = x.permute(order)
    if not permuted.is_contiguous():
        return x.reshape(x.shape[0], -1), lambda flat: flat.view(x.shape)
    inverse = [order.index(d) for d in range(x.dim())]
    return permuted.view(x.shape[0], -1), lambda flat: flat.view(permuted.shape).permute(inverse)


class _WinnersWithReluBackward(torch.autograd.Function):
    """``x * mask`` whose backward is ReLU's kernel on the output: right when every winner
    is positive, for then the mask is exactly ``output > 0``. Autograd keeps the output
    (which the next layer keeps anyway) instead of a mask beside it."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, mask: torch.Tensor, inplace: bool) -> torch.Tensor:
        if inplace:
            ctx.mark_dirty(x)
            out = x.mul_(mask)
        else:
            out = x * mask
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (out,) = ctx.saved_tensors
        return torch.ops.aten.threshold_backward(grad, out, 0), None, None


def kwta(x: torch.Tensor, gamma: float, impl: str = "auto", inplace: bool = False) -> torch.Tensor:
    """k-WTA of ``x`` (batch first): ``kwta_reference``'s output bit for bit, by a faster path.

    ``impl`` picks how the threshold is found (see the module docstring); ``inplace``
    overwrites ``x`` as ``nn.ReLU(inplace=True)`` does. The gradient is the reference's in
    value; where every winner is positive (the numpy path knows), it comes from ReLU's
    backward kernel, which gives a losing unit +0.0 where the reference's ``g * 0.0``
    keeps the sign of ``g`` (and 0 where an infinite ``g`` gives the reference NaN).
    """
    if x.dim() < 2:
        raise ValueError(f"k-WTA needs a batch dimension, got shape {tuple(x.shape)}")
    if impl == "reference":
        mask = kwta_mask(x, check_gamma(gamma))
        return x.mul_(mask) if inplace else x * mask
    flat, unflatten = _flatten(x.detach())
    k = num_winners(gamma, flat.shape[1])
    recorded = torch.is_grad_enabled() and x.requires_grad
    with torch.no_grad():
        thr, positive = _select(flat, k, check_impl(impl))
        relu_backward = recorded and positive  # then autograd keeps no mask
        if flat.device.type == "cpu":
            # A mask in x's dtype: the CPU compares into float and multiplies by float
            # several times faster than it does with bool. x * 1.0 and x * 0.0 are what
            # the reference's x * bool_mask computes, so the result has the same bits.
            # A mask that nothing keeps after this call lives in scratch memory.
            if (inplace and not recorded) or relu_backward:
                mask = _scratch_tensor("mask", tuple(flat.shape), x.dtype)
            else:
                mask = torch.empty(flat.shape, dtype=x.dtype, device=x.device)
            torch.ge(flat, thr, out=mask)
        else:
            mask = flat >= thr  # CUDA casts inside the multiply kernel
        mask = unflatten(mask)
    if relu_backward:
        return _WinnersWithReluBackward.apply(x, mask, inplace)
    if inplace:
        return x.mul_(mask)
    if mask.dtype == x.dtype and not recorded:
        return mask.mul_(x)  # reuse the mask's memory; x * m == m * x exactly
    return x * mask


class KWTA(nn.Module):
    """k-WTA activation: keeps the top ``gamma`` fraction of each sample's units.

    A drop-in replacement for ``nn.ReLU`` (``inplace`` is accepted for that reason).
    Note that, unlike ReLU, a surviving unit may be negative when fewer than k units
    are positive: this is the reference behaviour. ``impl`` fixes how the threshold is
    found; left as None, the module follows ``set_kwta_impl`` (``"auto"`` by default).
    Every implementation gives the same outputs and gradients.
    """

    def __init__(self, gamma: float, inplace: bool = False, impl: str | None = None) -> None:
        super().__init__()
        self.gamma = check_gamma(gamma)
        self.inplace = inplace
        self.impl = None if impl is None else check_impl(impl)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kwta(x, self.gamma, self.impl or _default_impl, self.inplace)

    def extra_repr(self) -> str:
        return (
            f"gamma={self.gamma}"
            + (", inplace=True" if self.inplace else "")
            + (f", impl={self.impl!r}" if self.impl else "")
        )


def _replace_modules(
    model: nn.Module, match: Callable[[nn.Module], bool], make: Callable[[nn.Module], nn.Module]
) -> int:
    """Replace every submodule for which ``match`` holds by ``make(old)``; return the count."""
    count = 0
    for name, child in list(model.named_children()):
        if match(child):
            setattr(model, name, make(child))
            count += 1
        else:
            count += _replace_modules(child, match, make)
    return count


def relu_to_kwta(model: nn.Module, gamma: float, impl: str | None = None) -> int:
    """Swap every ``nn.ReLU`` of ``model`` (in place) for ``KWTA(gamma)``; return how many.

    Works on any model whose ReLUs are modules, torchvision's ResNet18 and AlexNet
    included. A module used twice (torchvision's BasicBlock reuses ``self.relu``) is
    swapped once and stays shared. ReLUs called functionally cannot be seen, so check
    the returned count. An existing ``KWTA`` is given the new gamma. ``impl`` is passed
    to every new module (None: follow ``set_kwta_impl``).
    """
    gamma = check_gamma(gamma)
    if impl is not None:
        check_impl(impl)
    return _replace_modules(
        model,
        lambda m: isinstance(m, (nn.ReLU, KWTA)),
        lambda old: KWTA(
            gamma,
            inplace=getattr(old, "inplace", False),
            impl=impl if impl is not None else getattr(old, "impl", None),
        ),
    )


def kwta_to_relu(model: nn.Module) -> int:
    """Swap every ``KWTA`` of ``model`` (in place) back to ``nn.ReLU``; return how many."""
    return _replace_modules(
        model, lambda m: isinstance(m, KWTA), lambda old: nn.ReLU(inplace=old.inplace)
    )
