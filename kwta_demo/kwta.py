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
``flat >= threshold`` and everything after it are identical.

| impl      | how the threshold is found                                  | used by auto      |
|-----------|-------------------------------------------------------------|-------------------|
| reference | ``topk(k)``, sorted, last column (the oracle)               | never             |
| kthvalue  | ``kthvalue(N - k + 1)``: a quickselect, no sort              | CUDA, no Triton,  |
|           |                                                             | N <= 2**17        |
| topk      | ``topk(k, sorted=False)``, then the smallest of those       | CUDA, no Triton,  |
|           |                                                             | larger N          |
| numpy     | ``numpy.partition`` of each row (CPU only): a vectorised    | CPU               |
|           | introselect, ~10x faster than ``kthvalue`` there            |                   |
| bracket   | torch only: a sample brackets the threshold, exact counts   | CPU without numpy |
|           | prove the bracket, only the values inside are selected from |                   |
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

try:
    import numpy
except ImportError:  # torch runs without numpy; the torch-only paths serve then
    numpy = None

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

IMPLS: tuple[str, ...] = ("auto", "reference", "kthvalue", "topk", "numpy", "bracket", "triton")

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


def _numpy_threshold(flat: torch.Tensor, k: int) -> torch.Tensor:
    """``numpy.partition`` of each row: a vectorised introselect that does not carry the
    indices along, an order of magnitude faster than ``kthvalue`` on a CPU. NaN sorts
    last, as topk ranks it; 16-bit floats are widened to float32 (exactly) first."""
    if numpy is None or flat.device.type != "cpu":
        raise ValueError("the numpy k-WTA path needs numpy and a CPU tensor")
    n = flat.shape[1]
    dtype = flat.dtype if flat.dtype in (torch.float32, torch.float64) else torch.float32
    work = _scratch_tensor("partition", tuple(flat.shape), dtype)
    work.copy_(flat.detach())
    array = work.numpy()
    position = n - k  # the k-th largest is the (n - k + 1)-th smallest
    # One thread: splitting rows over a thread pool measured slower, as torch's OpenMP
    # workers still spin on the cores after each parallel op.
    array.partition(position, axis=1)
    return torch.from_numpy(array[:, position : position + 1].copy()).to(flat.dtype)


# The bracket select. A sample of _BRACKET_SAMPLE values per row gives a first bracket
# _BRACKET_Z sample standard deviations wide on each side; exact counts then place two
# pivots around the interpolated threshold, _BRACKET_Z standard deviations (plus a share
# for the curvature of the distribution) apart. A row whose bracket misses (a bimodal
# residual sum can fool the interpolation) falls back to a wider bracket its counts still
# prove, so misses cost time, never exactness.
_BRACKET_Z = 3.0
_BRACKET_SAMPLE = 1024
_BRACKET_MIN_N = 4096
_BRACKET_REFINE = 256  # more values than this in a bracket: narrow it first
_sample_cache: dict[tuple[int, int, str], torch.Tensor] = {}


def _sample_index(n: int, size: int, device: torch.device) -> torch.Tensor:
    """Fixed random positions (sorted) in a row of n: strided positions would all fall on
    one column of an H x W map, whose border values are not typical of the row."""
    key = (n, size, str(device))
    index = _sample_cache.get(key)
    if index is None:
        generator = torch.Generator().manual_seed(n)
        index = torch.randperm(n, generator=generator)[:size].sort().values.to(device)
        _sample_cache[key] = index
    return index


def _count_at_or_above(flat: torch.Tensor, pivot: torch.Tensor, buffer: torch.Tensor) -> torch.Tensor:
    """#(x >= pivot) per row, NaN counted (it ranks above everything); buffer gets x < pivot.

    Comparisons into float are several times faster than into bool on the CPU, and a
    float32 sum of 0/1 values is exact for any row length used here (< 2**24)."""
    torch.lt(flat, pivot, out=buffer)
    return flat.shape[1] - buffer.sum(dim=1, keepdim=True).to(torch.int64)


def _count_above(flat: torch.Tensor, pivot: torch.Tensor, buffer: torch.Tensor) -> torch.Tensor:
    """#(x > pivot) per row, NaN counted; buffer gets x <= pivot."""
    torch.le(flat, pivot, out=buffer)
    return flat.shape[1] - buffer.sum(dim=1, keepdim=True).to(torch.int64)


def _select_inside(
    flat: torch.Tensor, k: int, below_lo: torch.Tensor, up_to_hi: torch.Tensor,
    at_or_above_lo: torch.Tensor, above_hi: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Thresholds of the rows whose bracket [lo, hi] holds the k-th largest, and which rows.

    ``below_lo`` and ``up_to_hi`` are the float masks x < lo and x <= hi (the first is
    overwritten), the counts #(x >= lo) and #(x > hi) come with them. The k-th largest is
    then the (k - #(x > hi))-th largest value inside [lo, hi]."""
    rows, n = flat.shape
    device, dtype = flat.device, flat.dtype
    rank = (k - above_hi).squeeze(1)  # wanted rank from the top among the values inside
    ok = (at_or_above_lo.squeeze(1) >= k) & (rank >= 1)
    inside = up_to_hi.sub_(below_lo)  # lo <= x <= hi; NaN is in neither
    ok_all = bool(ok.all())
    if not ok_all:
        inside[~ok] = 0.0  # a row whose bracket missed may have most of its values inside
    result = torch.empty((rows, 1), dtype=dtype, device=device)
    if not (ok_all or bool(ok.any())):
        return result, ok
    count = inside.sum(dim=1).to(torch.int64)
    where = inside.view(-1).to(torch.bool).nonzero().squeeze(1)  # grouped by row
    values = flat.reshape(-1)[where]
    row_of = torch.div(where, n, rounding_mode="floor")
    # Lay each row's values out after (top - rank) copies of +inf, so that one common
    # rank (top) picks every row's own rank: a single kthvalue for all rows.
    top = int(rank[ok].max())
    pad = torch.where(ok, top - rank, 0)
    start = torch.cumsum(count, 0) - count
    column = torch.arange(where.numel(), device=device) + (pad - start)[row_of]
    width = max(int((pad + count).max()), top)
    packed = torch.full((rows, width), -math.inf, dtype=dtype, device=device)
    packed.masked_fill_(torch.arange(width, device=device) < pad[:, None], math.inf)
    packed.view(-1)[row_of * width + column] = values
    return packed.kthvalue(width - top + 1, dim=1, keepdim=True).values, ok


def _bracket_threshold(flat: torch.Tensor, k: int) -> torch.Tensor:
    """k-th largest per row by bracketing: sample, count, interpolate, count, select.

    For pivots lo <= hi with #(x >= lo) >= k and #(x > hi) < k, the k-th largest lies in
    [lo, hi] and is the (k - #(x > hi))-th largest value inside: a few hundred values
    instead of the whole row. The counts are exact, so a poor guess of a pivot only makes
    a row fall back to the tightest bracket its counted pivots still prove, and a row that
    no pivot brackets (NaN-filled) to a full selection.
    """
    rows, n = flat.shape
    if n < _BRACKET_MIN_N:
        return _kthvalue_threshold(flat, k)
    device, dtype = flat.device, flat.dtype
    size = min(_BRACKET_SAMPLE, n // 4)
    sample = flat.index_select(1, _sample_index(n, size, device))
    q = k / n
    margin = math.ceil(_BRACKET_Z * math.sqrt(size * q * (1.0 - q))) + 1
    rank_hi = max(1, math.floor(q * size) - margin)  # ranks from the top, 1-based
    rank_lo = min(size, math.ceil(q * size) + margin)
    hi = sample.kthvalue(size - rank_hi + 1, dim=1, keepdim=True).values
    lo = sample.kthvalue(size - rank_lo + 1, dim=1, keepdim=True).values

    below_lo = torch.empty(flat.shape, dtype=torch.float32, device=device)
    up_to_hi = torch.empty_like(below_lo)
    at_or_above_lo = _count_at_or_above(flat, lo, below_lo)
    above_hi = _count_above(flat, hi, up_to_hi)
    inside = at_or_above_lo - above_hi
    pivots = [(lo, at_or_above_lo, None), (hi, None, above_hi)]
    if int(inside.max()) > _BRACKET_REFINE:
        # Narrow [lo, hi] around the interpolated k-th largest. The upper tail of an
        # activation map falls off roughly exponentially, so the counts are interpolated
        # in log space; the new bracket covers binomial noise plus a tenth of the old one
        # for the interpolation error (under 6% on ResNet18 activations, but a residual
        # sum can be bimodal, and then a row falls back to a wider proven bracket).
        at_lo, above = at_or_above_lo.double(), above_hi.double().clamp(min=0.5)
        inside = inside.double().clamp(min=1.0)
        where_k = torch.log(at_lo / k) / torch.log(at_lo / above)  # 0 at lo, 1 at hi
        share = where_k.clamp(0.0, 1.0)
        spread = (_BRACKET_Z * torch.sqrt(inside * share * (1.0 - share)) + inside / 10 + 2) / inside
        lo64, hi64 = lo.double(), hi.double()
        lo = (lo64 + (hi64 - lo64) * (where_k - spread).clamp(min=0.0)).to(dtype)
        hi = (lo64 + (hi64 - lo64) * (where_k + spread).clamp(max=1.0)).to(dtype)
        at_or_above_lo = _count_at_or_above(flat, lo, below_lo)
        above_hi = _count_above(flat, hi, up_to_hi)
        pivots += [(lo, at_or_above_lo, None), (hi, None, above_hi)]
    result, ok = _select_inside(flat, k, below_lo, up_to_hi, at_or_above_lo, above_hi)
    if bool(ok.all()):
        return result
    # Rows the last bracket missed: the highest counted pivot with #(x >= p) >= k and the
    # lowest with #(x > p) < k still bracket the k-th largest (#(x > p) <= #(x >= p)).
    missed = (~ok).nonzero().squeeze(1)
    low = torch.full((missed.numel(), 1), -math.inf, dtype=dtype, device=device)
    high = torch.full_like(low, math.inf)
    for pivot, at_or_above, above in pivots:
        p = pivot[missed]
        if at_or_above is not None:
            low = torch.where(at_or_above[missed] >= k, torch.maximum(low, p), low)
            high = torch.where(at_or_above[missed] < k, torch.minimum(high, p), high)
        else:
            high = torch.where(above[missed] < k, torch.minimum(high, p), high)
            low = torch.where(above[missed] >= k, torch.maximum(low, p), low)
    part = flat[missed]
    below, up_to = torch.empty(part.shape, dtype=torch.float32, device=device), torch.empty(
        part.shape, dtype=torch.float32, device=device
    )
    part_result, part_ok = _select_inside(
        part, k, below, up_to, _count_at_or_above(part, low, below), _count_above(part, high, up_to)
    )
    if not bool(part_ok.all()):  # nothing brackets it: NaN holds the top k
        lost = (~part_ok).nonzero().squeeze(1)
        part_result[lost] = _kthvalue_threshold(part[lost], k)
    result[missed] = part_result
    return result


# Below this many elements the bracket's fixed cost (some twenty small ops) exceeds a
# plain quickselect.
_BRACKET_MIN_ELEMENTS = 1 << 16
# CUDA without Triton: kthvalue is faster for rows of a 32x32 network, topk for larger.
_CUDA_KTHVALUE_MAX_N = 1 << 17


def resolve_impl(impl: str, flat: torch.Tensor, k: int) -> str:
    """The concrete implementation ``impl`` (perhaps ``"auto"``) means for this input."""
    impl = check_impl(impl)
    if impl != "auto":
        return impl
    rows, n = flat.shape
    if flat.device.type == "cuda":
        from . import kwta_triton

        if kwta_triton.usable(flat, k):
            return "triton"
        return "kthvalue" if n <= _CUDA_KTHVALUE_MAX_N else "topk"
    if flat.device.type == "cpu" and numpy is not None and flat.dtype in _NUMPY_DTYPES:
        return "numpy"
    if n >= _BRACKET_MIN_N and rows * n >= _BRACKET_MIN_ELEMENTS:
        return "bracket"
    return "kthvalue"


def _triton_threshold(flat: torch.Tensor, k: int) -> torch.Tensor:
    from . import kwta_triton

    return kwta_triton.checked_threshold(flat, k, kwta_threshold)


_THRESHOLDS: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
    "reference": kwta_threshold,
    "kthvalue": _kthvalue_threshold,
    "topk": _topk_threshold,
    "bracket": _bracket_threshold,
    "numpy": _numpy_threshold,
    "triton": _triton_threshold,
}


def threshold(flat: torch.Tensor, k: int, impl: str = "auto") -> torch.Tensor:
    """The k-th largest value of each row of ``flat`` (rows, N), shape (rows, 1), by ``impl``.

    Every implementation returns the reference value (``kwta_threshold``).
    """
    if flat.dim() != 2 or not 1 <= k <= flat.shape[1]:
        raise ValueError(f"need a 2-D tensor and 1 <= k <= N, got {tuple(flat.shape)}, k={k}")
    with torch.no_grad():
        return _THRESHOLDS[resolve_impl(impl, flat, k)](flat, k)


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


def kwta(x: torch.Tensor, gamma: float, impl: str = "auto", inplace: bool = False) -> torch.Tensor:
    """k-WTA of ``x`` (batch first): ``kwta_reference`` bit for bit, by a faster path.

    ``impl`` picks how the threshold is found (see the module docstring); ``inplace``
    overwrites ``x`` as ``nn.ReLU(inplace=True)`` does.
    """
    if x.dim() < 2:
        raise ValueError(f"k-WTA needs a batch dimension, got shape {tuple(x.shape)}")
    if impl == "reference":
        mask = kwta_mask(x, check_gamma(gamma))
        return x.mul_(mask) if inplace else x * mask
    flat, unflatten = _flatten(x.detach())
    k = num_winners(gamma, flat.shape[1])
    recorded = torch.is_grad_enabled() and x.requires_grad  # autograd will keep the mask
    with torch.no_grad():
        thr = threshold(flat, k, impl)
        if flat.device.type == "cpu":
            # A mask in x's dtype: the CPU compares into float and multiplies by float
            # several times faster than it does with bool. x * 1.0 and x * 0.0 are what
            # the reference's x * bool_mask computes, so the result has the same bits.
            # Applied in place with no graph to keep it, the mask is scratch memory.
            if inplace and not recorded:
                mask = _scratch_tensor("mask", tuple(flat.shape), x.dtype)
            else:
                mask = torch.empty(flat.shape, dtype=x.dtype, device=x.device)
            torch.ge(flat, thr, out=mask)
        else:
            mask = flat >= thr  # CUDA casts inside the multiply kernel
        mask = unflatten(mask)
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
