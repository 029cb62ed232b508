"""Loading photos as float RGB arrays, with one-line errors for every bad input.

Output convention (the whole `preprocess` package): float32 [H, W, 3] RGB in [0, 1],
row 0 at the top; pixel (row i, column j) is centred at (x, y) = (j + 0.5, i + 0.5),
the convention of `jaxface.render.camera`.

Memory: PIL only reads the header on open, so the decoded size is checked before any
pixel is decoded. JPEGs are decoded at a reduced scale (1/2, 1/4, 1/8, by libjpeg's
DCT scaling) when that still leaves the long side at least `max_side`; other formats
above `MAX_DECODE_PIXELS` are refused. Truncated files are errors: this module relies
on PIL's default `ImageFile.LOAD_TRUNCATED_IMAGES = False` (never grey-filled).
"""

import os
import pathlib
import warnings

import numpy as np
from PIL import Image
from PIL import ImageOps
from PIL import JpegImagePlugin

from jaxface.errors import JaxfaceError

# The largest image decoded at full size: 8192 x 8192 (268 MB as 32-bit RGBX in PIL).
MAX_DECODE_PIXELS = 8192 * 8192
# Smallest side that can still hold a detectable face (dlib's HOG window is 80 px,
# 40 px after one upsampling).
MIN_SIDE = 32

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_JPEG_MAGIC = b"\xff\xd8\xff"


class ImageError(JaxfaceError):
  """An image file is missing, unreadable, corrupt, too large or too small."""


def _open(path: pathlib.Path) -> Image.Image:
  """Opens `path` lazily (header only); huge JPEGs bypass PIL's size check for `draft`."""
  try:
    with warnings.catch_warnings():
      # Sizes are checked in `_check_pixels`, after JPEG draft scaling.
      warnings.simplefilter("ignore", Image.DecompressionBombWarning)
      return Image.open(path)
  except Image.DecompressionBombError:
    with open(path, "rb") as f:
      if f.read(3) != _JPEG_MAGIC:
        raise
    # Opening the plugin class directly reads the header without PIL's bomb check;
    # `_check_pixels` still applies to the reduced size chosen by `draft`.
    return JpegImagePlugin.JpegImageFile(path)


def _draft(image: Image.Image, max_side: int) -> None:
  """Asks libjpeg to decode at the smallest DCT scale keeping the long side >= max_side."""
  width, height = image.size
  ratio = max_side / max(width, height)
  if image.format == "JPEG" and ratio < 1:
    image.draft(None, (max(1, round(width * ratio)), max(1, round(height * ratio))))


def _check_pixels(image: Image.Image, path: pathlib.Path) -> None:
  width, height = image.size
  if width * height > MAX_DECODE_PIXELS:
    raise ImageError(f"{path}: {width}x{height} pixels is too large to decode safely "
                     f"(limit {MAX_DECODE_PIXELS // 10**6} megapixels); downscale it first")


def _composite_on_white(image: Image.Image) -> Image.Image:
  """RGBA (any alpha mode) -> RGB, transparent pixels becoming white."""
  rgba = image.convert("RGBA")
  white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
  return Image.alpha_composite(white, rgba).convert("RGB")


def _to_working_mode(image: Image.Image) -> Image.Image:
  """Converts any PIL mode to "L" or "RGB" (8 bit) or "F" (high bit depth, in [0, 1]).

  Rules: 16-bit and 32-bit integer greyscale ("I;16*", "I") are divided by 65535 (PNG
  and TIFF 16-bit data), float ("F") is clipped to [0, 1]; anything with alpha
  (including palette or greyscale images with a transparent colour) is composited on
  white; "1", "L" stay greyscale; every other mode (P, CMYK, YCbCr, LAB, HSV) goes
  through PIL's conversion to RGB (CMYK without colour management).
  """
  if image.mode in _SIXTEEN_BIT_MODES:
    values = np.asarray(image).astype(np.float32) / 65535.0
    return Image.fromarray(np.clip(values, 0.0, 1.0), mode="F")
  if image.mode == "F":
    return Image.fromarray(np.clip(np.asarray(image, np.float32), 0.0, 1.0), mode="F")
  if image.mode in _ALPHA_MODES or "transparency" in image.info:
    return _composite_on_white(image)
  if image.mode in ("1", "L"):
    return image.convert("L")
  return image.convert("RGB")


def downscale(image: Image.Image, max_side: int) -> Image.Image:
  """Antialiased (PIL bilinear-filter) resize so that the long side is <= max_side."""
  width, height = image.size
  ratio = max_side / max(width, height)
  if ratio >= 1:
    return image
  size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
  return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)


def _to_float_rgb(image: Image.Image) -> np.ndarray:
  """PIL "L"/"RGB"/"F" -> float32 [H, W, 3] in [0, 1]."""
  if image.mode == "F":
    values = np.clip(np.asarray(image, np.float32), 0.0, 1.0)
  else:
    values = np.asarray(image, np.float32) / 255.0
  if values.ndim == 2:
    values = np.repeat(values[:, :, None], 3, axis=2)
  return np.ascontiguousarray(values)


def _check_path(path: pathlib.Path) -> None:
  if not path.exists():
    raise ImageError(f"{path}: no such file")
  if path.is_dir():
    raise ImageError(f"{path}: is a directory, not an image file")
  if path.stat().st_size == 0:
    raise ImageError(f"{path}: empty file")


def load_image(path: str | os.PathLike, *, max_side: int = 4096) -> np.ndarray:
  """Reads an image file as float32 RGB in [0, 1], upright and at most `max_side` long.

  Any format PIL reads (JPEG, PNG, BMP, GIF first frame, TIFF, WebP, ...). The EXIF
  orientation is applied (PIL.ImageOps.exif_transpose); greyscale becomes RGB; alpha is
  composited on white; 16-bit greyscale keeps its full range (65535 -> 1.0). Images
  with a long side above `max_side` are downscaled with an antialiasing filter (JPEGs
  partly while decoding, so a 20000x20000 JPEG never exists at full size in memory).

  Args:
    path: the image file.
    max_side: the largest allowed long side after loading, pixels (>= 32).
  Returns:
    [H, W, 3] float32 RGB in [0, 1], row 0 at the top; pixel (i, j) is centred at
    (x, y) = (j + 0.5, i + 0.5).
  Raises:
    ImageError: one line naming the file: missing, a directory, empty, not an image,
      truncated or corrupt, too large to decode safely, or smaller than 32 pixels on
      a side ("too small to contain a face").
  """
  if max_side < MIN_SIDE:
    raise ValueError(f"max_side must be >= {MIN_SIDE}, got {max_side}")
  path = pathlib.Path(path)
  _check_path(path)
  try:
    image = _open(path)
  except Image.DecompressionBombError:
    raise ImageError(f"{path}: image too large to decode safely (over "
                     f"{2 * Image.MAX_IMAGE_PIXELS // 10**6} megapixels)") from None
  except (Image.UnidentifiedImageError, SyntaxError):  # SyntaxError: a broken JPEG header
    raise ImageError(f"{path}: not an image file PIL can read") from None
  except OSError as e:
    raise ImageError(f"{path}: cannot open ({e.strerror or e})") from None
  with image:
    width, height = image.size
    if min(width, height) < MIN_SIDE:
      raise ImageError(f"{path}: {width}x{height} pixels is too small to contain a face "
                       f"(need at least {MIN_SIDE} on each side)")
    _draft(image, max_side)
    _check_pixels(image, path)
    try:
      image.load()
      ImageOps.exif_transpose(image, in_place=True)
      working = _to_working_mode(image)
    except (OSError, SyntaxError, ValueError, EOFError) as e:
      raise ImageError(f"{path}: truncated or corrupt image data ({e})") from None
  return _to_float_rgb(downscale(working, max_side))
