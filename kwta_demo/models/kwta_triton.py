"""Exact k-th largest value per row by radix select, as Triton kernels (CUDA).

Each value becomes an unsigned key whose integer order is the float order (NaN above
+inf, as ``topk`` ranks it; -0.0 just below +0.0, which compare equal as floats, so the
threshold and the mask do not change). The key is read 8 bits at a time from the top:
one pass per digit builds, for every row, the histogram of that digit over the values
whose higher digits match the digits chosen so far, and picks the digit holding the
k-th largest. Four passes for float32, two for float16 and bfloat16, each a plain read
of the row, spread over (chunks x rows) programs so that a few long rows (ResNet18 at
224x224) fill the GPU as well as many short ones.

Only ``kwta.py`` calls this module. ``checked_threshold`` compares the kernel with the
reference once per shape and dtype and falls back to the reference, with a warning,
if they ever disagree. The kernels also run in Triton's CPU interpreter
(``TRITON_INTERPRET=1``), which is how the tests check them without a GPU.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the torch paths of kwta.py serve
    triton = None

__all__ = ["HAVE_TRITON", "checked_threshold", "radix_threshold", "usable"]

HAVE_TRITON = triton is not None
_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_BLOCK = 4096
_BINS = 256
# The bit pattern of +inf: a larger magnitude is a NaN.
_INF_BITS = {torch.float32: 0x7F800000, torch.float16: 0x7C00, torch.bfloat16: 0x7F80}

# (device, dtype, shape, k) -> whether the kernel matched the reference on first use.
_checked: dict[tuple, bool] = {}


if HAVE_TRITON:

    @triton.jit
    def _keys(x, KEY_BITS: tl.constexpr, INF_BITS: tl.constexpr):
        """Order-preserving unsigned keys (in uint32) of float values; NaN is the largest.

        NaN is recognised from its bits (magnitude above infinity's), which does not
        depend on how a backend compares 16-bit floats."""
        if KEY_BITS == 32:
            u = x.to(tl.uint32, bitcast=True)
            top = tl.full(u.shape, 0x80000000, tl.uint32)
            everything = tl.full(u.shape, 0xFFFFFFFF, tl.uint32)
        else:
            u = x.to(tl.uint16, bitcast=True).to(tl.uint32)
            top = tl.full(u.shape, 0x8000, tl.uint32)
            everything = tl.full(u.shape, 0xFFFF, tl.uint32)
        negative = (u & top) != 0
        key = tl.where(negative, u ^ everything, u | top)
        return tl.where((u & (top - 1)) > INF_BITS, everything, key)

    @triton.jit
    def _chosen_prefix(hist_ptr, row, k, PASSES: tl.constexpr, NUM_PASSES: tl.constexpr):
        """Replay the digit choices of the first PASSES passes: (key prefix, rank left)."""
        bins = tl.arange(0, 256)
        prefix = tl.zeros((), dtype=tl.uint32)
        rank = k
        for p in tl.static_range(PASSES):
            h = tl.load(hist_ptr + (row * NUM_PASSES + p) * 256 + bins)
            # at_or_above[d]: values of this group whose digit is >= d
            at_or_above = tl.sum(h, axis=0) - tl.cumsum(h, axis=0) + h
            digit = tl.max(tl.where(at_or_above >= rank, bins, 0), axis=0)
            rank = rank - tl.sum(tl.where(bins > digit, h, 0), axis=0)
            prefix = (prefix << 8) | digit.to(tl.uint32)
        return prefix, rank

    @triton.jit
    def _radix_pass_kernel(
        x_ptr, hist_ptr, n, k,
        PASS: tl.constexpr, NUM_PASSES: tl.constexpr, KEY_BITS: tl.constexpr,
        INF_BITS: tl.constexpr, BLOCK: tl.constexpr,
    ):
        chunk = tl.program_id(0)
        row = tl.program_id(1)
        prefix, rank = _chosen_prefix(hist_ptr, row, k, PASS, NUM_PASSES)
        offsets = chunk * BLOCK + tl.arange(0, BLOCK)
        valid = offsets < n
        x = tl.load(x_ptr + row.to(tl.int64) * n + offsets, mask=valid, other=0.0)
        key = _keys(x, KEY_BITS, INF_BITS)
        shift: tl.constexpr = KEY_BITS - 8 * (PASS + 1)
        digit = ((key >> shift) & 255).to(tl.int32)
        if PASS > 0:
            valid = valid & ((key >> (shift + 8)) == prefix)
        h = tl.histogram(digit, 256, mask=valid)
        tl.atomic_add(hist_ptr + (row * NUM_PASSES + PASS) * 256 + tl.arange(0, 256), h)

    @triton.jit
    def _radix_finish_kernel(
        hist_ptr, out_ptr, k, NUM_PASSES: tl.constexpr, KEY_BITS: tl.constexpr
    ):
        row = tl.program_id(0)
        key, rank = _chosen_prefix(hist_ptr, row, k, NUM_PASSES, NUM_PASSES)
        if KEY_BITS == 32:
            top = tl.full((), 0x80000000, tl.uint32)
            everything = tl.full((), 0xFFFFFFFF, tl.uint32)
            bits = tl.where((key & top) != 0, key ^ top, key ^ everything)
            value = bits.to(tl.float32, bitcast=True)
        else:
            top = tl.full((), 0x8000, tl.uint32)
            everything = tl.full((), 0xFFFF, tl.uint32)
            bits = tl.where((key & top) != 0, key ^ top, key ^ everything)
            value = bits.to(tl.uint16).to(out_ptr.dtype.element_ty, bitcast=True)
        tl.store(out_ptr + row, value)


def radix_threshold(flat: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th largest value of each row of ``flat`` (rows, N), shape (rows, 1).

    No check against the reference: use ``checked_threshold``.
    """
    if not HAVE_TRITON:
        raise RuntimeError("the triton k-WTA path needs the triton package")
    if flat.dtype not in _DTYPES:
        raise TypeError(f"the triton k-WTA path supports {_DTYPES}, not {flat.dtype}")
    rows, n = flat.shape
    flat = flat.contiguous()
    key_bits = 32 if flat.dtype == torch.float32 else 16
    passes = key_bits // 8
    hist = torch.zeros((rows, passes, _BINS), dtype=torch.int32, device=flat.device)
    grid = (triton.cdiv(n, _BLOCK), rows)
    for p in range(passes):
        _radix_pass_kernel[grid](
            flat, hist, n, k, PASS=p, NUM_PASSES=passes, KEY_BITS=key_bits,
            INF_BITS=_INF_BITS[flat.dtype], BLOCK=_BLOCK, num_warps=8,
        )
    out = torch.empty((rows, 1), dtype=flat.dtype, device=flat.device)
    _radix_finish_kernel[(rows,)](hist, out, k, NUM_PASSES=passes, KEY_BITS=key_bits)
    return out


def _key(flat: torch.Tensor, k: int) -> tuple:
    return (str(flat.device), flat.dtype, tuple(flat.shape), k)


def usable(flat: torch.Tensor, k: int) -> bool:
    """Whether ``auto`` may use the kernel here: CUDA, a supported dtype, and no failed
    check for this shape."""
    return (
        HAVE_TRITON
        and flat.is_cuda
        and flat.dtype in _DTYPES
        and flat.shape[0] <= 65535  # the grid's second dimension holds the rows
        and _checked.get(_key(flat, k), True)
    )


def checked_threshold(
    flat: torch.Tensor, k: int, reference: Callable[[torch.Tensor, int], torch.Tensor]
) -> torch.Tensor:
    """``radix_threshold``, compared with ``reference`` on first use of each shape.

    The first call of a shape returns the reference's answer after comparing; a mismatch
    or a kernel that fails to build switches that shape to the reference for good. While a
    CUDA graph is being captured nothing can be compared, so an unchecked shape uses the
    reference (warm up before capturing).
    """
    key = _key(flat, k)
    state = _checked.get(key)
    if state is True:
        return radix_threshold(flat, k)
    if state is False or (flat.is_cuda and torch.cuda.is_current_stream_capturing()):
        return reference(flat, k)
    expected = reference(flat, k)
    try:
        got = radix_threshold(flat, k)
    except Exception as error:  # noqa: BLE001 - any build or launch failure: use the reference
        _checked[key] = False
        warnings.warn(
            f"triton k-WTA kernel failed for {key}: {error!r}; using the reference",
            RuntimeWarning,
            stacklevel=2,
        )
        return expected
    ok = bool(torch.equal(flat >= got, flat >= expected))
    _checked[key] = ok
    if not ok:
        warnings.warn(
            f"triton k-WTA kernel disagreed with the reference for {key}; using the reference",
            RuntimeWarning,
            stacklevel=2,
        )
    return expected
