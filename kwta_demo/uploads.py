"""Turn any uploaded image into the 32x32 RGB input the models see, and say how.

Any PIL mode is accepted (RGB, RGBA, LA, P, L, 1, CMYK, YCbCr, LAB, HSV, I, I;16, F), EXIF
orientation is applied, and the picture is center-cropped to a square, then resized to
32x32: an area average (box filter) when shrinking, which is what a camera's sensor would
have seen at that size, bicubic when enlarging. Transparent pixels are laid over white.
High-bit-depth images are scaled to 8 bits from their full range, never clipped.
The pixel count is capped before anything is decoded (a decompression-bomb guard).
"""

from __future__ import annotations

import io
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


def _high_depth_to_l(img: Image.Image) -> tuple[Image.Image, str]:
    """An 8-bit grayscale copy of an I/I;16/F image, scaled from its full range."""
    values = np.asarray(img, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ImageInputError("image holds NaN or infinite values")
    lo, hi = float(values.min()), float(values.max())
    if img.mode == "F" and lo >= 0.0 and hi <= 1.0:
        scaled, how = values, "float values in [0, 1] used as is"
    elif lo >= 0 and hi <= 255 and img.mode != "F":
        scaled, how = values / 255.0, "8-bit range"
    elif lo >= 0 and hi <= 65535:
        scaled, how = values / 65535.0, "16-bit range scaled to 8 bits"
    else:
        span = hi - lo if hi > lo else 1.0
        scaled, how = (values - lo) / span, f"values {lo:g}..{hi:g} stretched to 0..255"
    out = Image.fromarray((np.clip(scaled, 0, 1) * 255).round().astype(np.uint8), mode="L")
    return out, how


def _to_rgb(img: Image.Image) -> tuple[Image.Image, list[str]]:
    notes: list[str] = []
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        notes.append("palette expanded")
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        img, how = _high_depth_to_l(img)
        notes.append(how)
    if img.mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        rgba = img.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            rgba = Image.alpha_composite(white, rgba)
            notes.append("transparency laid over white")
        img = rgba.convert("RGB")
    elif img.mode != "RGB":
        if img.mode not in ("L", "1"):
            notes.append(f"{img.mode} converted to RGB")
        else:
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
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)
        img.load()
        img = ImageOps.exif_transpose(img)
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageInputError(f"the image file is damaged or truncated ({e})") from None
    notes: list[str] = []
    if img.size != (width, height):
        notes.append("rotated per its EXIF orientation")
    width, height = img.size
    img, mode_notes = _to_rgb(img)
    notes = mode_notes + notes

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
    array = np.asarray(img, dtype=np.uint8)
    tensor = torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255.0
    description = f"{width}x{height} {mode} image: " + ", ".join(notes + steps) + "."
    return PreparedImage(tensor, (width, height), mode, description)
