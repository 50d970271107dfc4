"""Turn any uploaded image into the 32x32 RGB input the models see, and say how.

Any PIL mode is accepted (RGB, RGBA, LA, P, L, 1, CMYK, YCbCr, LAB, HSV, I, I;16, F), EXIF
orientation is applied, and the picture is center-cropped to a square, then resized to
32x32: an area average (box filter) when shrinking, which is what a camera's sensor would
have seen at that size, bicubic when enlarging. Transparent pixels are laid over white.
High-bit-depth images are scaled to 8 bits from their full range, never clipped.
The pixel count is capped before anything is decoded (a decompression-bomb guard), and
the resize to 32x32 runs in the picture's own mode (L, LA, RGB, RGBA, I or F) before the
conversions to 8-bit RGB: those are per-pixel affine maps, which commute with an area
average, so they give the same picture on 1,024 pixels instead of up to 40 million (a
16-bit bomb at the cap costs one decoded copy, not a gigabyte of float arrays).
"""

from __future__ import annotations

import io
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["MAX_PIXELS", "MODEL_SIZE", "PreparedImage", "ImageInputError", "prepare_image"]

MODEL_SIZE = 32
MAX_PIXELS = 40_000_000  # ~ a 7700x5200 photo; far above any phone camera, far below a bomb


class ImageInputError(ValueError):
    """The input is not an image we can use; the message says why, for the user."""


@dataclass(frozen=True)
class PreparedImage:
    """The model input and a plain account of how it was made."""

    tensor: torch.Tensor  # float32 (3, 32, 32) in [0, 1]
    original_size: tuple[int, int]  # (width, height) after EXIF rotation
    original_mode: str
    description: str

    def to_uint8(self) -> np.ndarray:
        """The 32x32 input as an (H, W, 3) uint8 array, exactly as the models see it."""
        return (self.tensor.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()


def _open(source: str | os.PathLike | bytes | Image.Image | np.ndarray) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if isinstance(source, (bytes, bytearray)):
        stream: object = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        stream = Path(source)
        if not stream.is_file():
            raise ImageInputError(f"no image file at {source}")
    else:
        raise ImageInputError(f"expected an image, a path or bytes, got {type(source).__name__}")
    try:
        with warnings.catch_warnings():
            # PIL warns (and only raises at twice its limit); our own cap below decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(stream)  # lazy: reads the header only
    except Image.DecompressionBombError as e:
        raise ImageInputError(f"image too large to decode safely ({e})") from None
    except UnidentifiedImageError:
        raise ImageInputError("not an image file PIL can read (PNG, JPEG, WebP, BMP, TIFF, GIF...)") from None


def _from_array(array: np.ndarray) -> Image.Image:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageInputError(f"expected an (H, W), (H, W, 3) or (H, W, 4) array, got shape {array.shape}")
    if array.dtype == np.uint8:
        return Image.fromarray(array)
    if array.ndim == 2:
        return Image.fromarray(array.astype(np.float32), mode="F")
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        raise ImageInputError("image array holds NaN or infinite values")
    scale = 1.0 if values.max() <= 1.0 else 255.0 if values.max() <= 255 else 65535.0
    return Image.fromarray((np.clip(values / scale, 0, 1) * 255).round().astype(np.uint8))


def _canonical(img: Image.Image) -> tuple[Image.Image, list[str]]:
    """The image in one of L, LA, RGB, RGBA, I, F, still full size (cheap per-pixel
    conversions only: palette, bilevel, 16-bit and colour-space modes)."""
    mode = img.mode
    if mode in ("L", "LA", "RGB", "RGBA", "I", "F"):
        return img, []
    if mode in ("P", "PA"):
        rgba = mode == "PA" or "transparency" in img.info
        return img.convert("RGBA" if rgba else "RGB"), ["palette expanded"]
    if mode.startswith("I;16"):
        return img.convert("I"), []  # the range note comes with the scaling
    if mode == "1":
        return img.convert("L"), []
    if mode in ("La", "RGBa"):
        return img.convert(mode[:-1] + "A"), []
    return img.convert("RGB"), [f"{mode} converted to RGB"]


def _depth_scaling(img: Image.Image, mode: str) -> tuple[float, float, str]:
    """(offset, divisor, note) mapping an I or F image to [0, 1] from its full range.

    Decided on the whole image's extremes (``getextrema`` reads them without a copy)."""
    lo, hi = (float(v) for v in img.getextrema())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ImageInputError("image holds NaN or infinite values")
    if mode == "F" and lo >= 0.0 and hi <= 1.0:
        return 0.0, 1.0, "float values in [0, 1] used as is"
    if lo >= 0 and hi <= 255 and mode != "F":
        return 0.0, 255.0, "8-bit range"
    if lo >= 0 and hi <= 65535:
        return 0.0, 65535.0, "16-bit range scaled to 8 bits"
    return lo, (hi - lo if hi > lo else 1.0), f"values {lo:g}..{hi:g} stretched to 0..255"


def _finish_rgb(img: Image.Image, scaling: tuple[float, float, str] | None) -> tuple[Image.Image, list[str]]:
    """An L, LA, RGB, RGBA, I or F image as 8-bit RGB, transparency laid over white."""
    notes: list[str] = []
    if scaling is not None:
        offset, divisor, how = scaling
        values = np.asarray(img, dtype=np.float64)
        if not np.isfinite(values).all():  # NaN survives the resize, so this sees it
            raise ImageInputError("image holds NaN or infinite values")
        scaled = np.clip((values - offset) / divisor, 0, 1)
        img = Image.fromarray((scaled * 255).round().astype(np.uint8), mode="L")
        notes.append(how)
    if img.mode in ("RGBA", "LA"):
        rgba = img.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            rgba = Image.alpha_composite(white, rgba)
            notes.append("transparency laid over white")
        img = rgba.convert("RGB")
    elif img.mode == "L":
        notes.append("grayscale copied to all three channels")
        img = img.convert("RGB")
    return img, notes


def prepare_image(
    source: str | os.PathLike | bytes | Image.Image | np.ndarray | None,
    max_pixels: int = MAX_PIXELS,
) -> PreparedImage:
    """Make the 32x32 RGB model input from any image (see the module docstring).

    Raises ``ImageInputError`` (a ``ValueError``) with a message fit for the user.
    """
    if source is None:
        raise ImageInputError("no image: pick one from the gallery or upload one")
    img = _open(source)
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageInputError(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageInputError(
            f"image is {width}x{height} = {width * height / 1e6:.1f} megapixels; "
            f"the limit is {max_pixels / 1e6:.0f} megapixels"
        )
    mode = img.mode
    try:
        frames = getattr(img, "n_frames", 1)
        if frames > 1:
            img.seek(0)
        img.load()
        img = ImageOps.exif_transpose(img)
        img, notes = _canonical(img)
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageInputError(f"the image file is damaged or truncated ({e})") from None
    if frames > 1:
        notes.insert(0, f"first of {frames} frames")
    if img.size != (width, height):
        notes.append("rotated per its EXIF orientation")
    width, height = img.size
    scaling = _depth_scaling(img, img.mode) if img.mode in ("I", "F") else None

    side = min(width, height)
    if (width, height) == (MODEL_SIZE, MODEL_SIZE):
        steps = ["already 32x32: used pixel for pixel"]
    else:
        steps = []
        if width != height:
            left, top = (width - side) // 2, (height - side) // 2
            img = img.crop((left, top, left + side, top + side))
            steps.append(f"center-cropped to {side}x{side}")
        if side > MODEL_SIZE:
            img = img.resize((MODEL_SIZE, MODEL_SIZE), Image.Resampling.BOX)
            steps.append("area-averaged (box filter) down to 32x32")
        else:
            img = img.resize((MODEL_SIZE, MODEL_SIZE), Image.Resampling.BICUBIC)
            steps.append("enlarged to 32x32 (bicubic)")
    img, finish_notes = _finish_rgb(img, scaling)
    notes += finish_notes
    array = np.asarray(img, dtype=np.uint8)
    tensor = torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255.0
    description = f"{width}x{height} {mode} image: " + ", ".join(notes + steps) + "."
    return PreparedImage(tensor, (width, height), mode, description)
