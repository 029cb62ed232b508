"""`load_image` on generated files of every PIL mode, EXIF orientation, huge and bad files."""

import io
import resource
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from PIL import ImageFile

from jaxface.errors import JaxfaceError
from jaxface.preprocess import ImageError, load_image


def _save(image, path, **kwargs):
  image.save(path, **kwargs)
  return path


def test_rgb_png_is_exact(tmp_path):
  pixels = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
  loaded = load_image(_save(Image.fromarray(pixels), tmp_path / "rgb.png"))
  assert loaded.dtype == np.float32 and loaded.shape == (40, 50, 3)
  np.testing.assert_array_equal(loaded, pixels / np.float32(255))


def test_greyscale_becomes_rgb(tmp_path):
  pixels = np.arange(40 * 40, dtype=np.uint8).reshape(40, 40)
  loaded = load_image(_save(Image.fromarray(pixels), tmp_path / "grey.png"))
  assert loaded.shape == (40, 40, 3)
  for channel in range(3):
    np.testing.assert_array_equal(loaded[..., channel], pixels / np.float32(255))


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_composited_on_white(tmp_path, mode):
  image = Image.new("RGBA", (40, 40), (0, 0, 0, 0))  # transparent black
  image.paste((200, 200, 200, 255), (0, 0, 20, 40))  # opaque grey left half
  image.paste((0, 0, 0, 128), (20, 0, 40, 20))  # half-transparent black
  loaded = load_image(_save(image.convert(mode), tmp_path / f"{mode}.png"))
  np.testing.assert_allclose(loaded[:, :20], 200 / 255, atol=1e-6)
  np.testing.assert_allclose(loaded[:20, 20:], 127 / 255, atol=1.5 / 255)
  np.testing.assert_allclose(loaded[20:, 20:], 1.0)  # transparent -> white


def test_palette_with_and_without_transparency(tmp_path):
  image = Image.new("P", (40, 40), 0)
  image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
  image.paste(1, (0, 20, 40, 40))
  loaded = load_image(_save(image, tmp_path / "palette.png"))
  np.testing.assert_array_equal(loaded[0, 0], [1, 0, 0])
  np.testing.assert_array_equal(loaded[-1, -1], [0, 0, 1])
  loaded = load_image(_save(image, tmp_path / "transparent.png", transparency=0))
  np.testing.assert_array_equal(loaded[0, 0], [1, 1, 1])
  np.testing.assert_array_equal(loaded[-1, -1], [0, 0, 1])


def test_sixteen_bit_png_keeps_its_full_range(tmp_path):
  values = np.array([0, 1000, 32768, 65535], np.uint16).repeat(10).reshape(1, 40)
  image = Image.fromarray(np.repeat(values, 40, axis=0))
  assert image.mode == "I;16"
  loaded = load_image(_save(image, tmp_path / "deep.png"))
  np.testing.assert_allclose(loaded[0, ::10, 0], [0, 1000 / 65535, 32768 / 65535, 1], rtol=1e-6)
  assert np.all(loaded[..., 0] == loaded[..., 2])


def test_exif_orientation_6_is_rotated_upright(tmp_path):
  stored = Image.new("RGB", (64, 48), (0, 0, 0))  # W=64, H=48 as stored
  stored.paste((255, 0, 0), (0, 0, 16, 16))  # red block top-left of the stored pixels
  exif = Image.Exif()
  exif[0x0112] = 6  # display = stored rotated 90 degrees clockwise
  loaded = load_image(_save(stored, tmp_path / "rotated.jpg", exif=exif, quality=95))
  assert loaded.shape == (64, 48, 3)
  np.testing.assert_allclose(loaded[4, -5], [1, 0, 0], atol=0.05)  # now top-right
  np.testing.assert_allclose(loaded[4, 4], [0, 0, 0], atol=0.05)
  np.testing.assert_allclose(loaded[-5, -5], [0, 0, 0], atol=0.05)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
  image = Image.new("CMYK", (40, 40), (0, 255, 255, 0))  # red
  image.paste((255, 0, 255, 0), (0, 20, 40, 40))  # green
  loaded = load_image(_save(image, tmp_path / "cmyk.jpg", quality=95))
  np.testing.assert_allclose(loaded[5, 5], [1, 0, 0], atol=0.05)
  np.testing.assert_allclose(loaded[-5, -5], [0, 1, 0], atol=0.05)


def test_large_image_is_downscaled_to_max_side(tmp_path):
  image = Image.new("RGB", (1200, 600), (10, 20, 30))
  loaded = load_image(_save(image, tmp_path / "wide.png"), max_side=256)
  assert loaded.shape == (128, 256, 3)
  np.testing.assert_allclose(loaded[64, 128], np.array([10, 20, 30]) / 255, atol=1e-6)
  loaded = load_image(_save(image, tmp_path / "wide.jpg", quality=95), max_side=256)
  assert loaded.shape == (128, 256, 3)  # decoded at 1/4 scale, then resized


def _uniform_jpeg(width, height):
  """A baseline greyscale JPEG of uniform grey 128, written without encoding pixels.

  PIL's encoding of a grey-128 image has DC and AC coefficients all zero, so every
  8x8 block is the same 6 bits (DC category 0, end of block): 4 blocks = 28 a2 8a.
  The headers of a small encoded image are reused with the frame size patched.
  """
  buffer = io.BytesIO()
  Image.new("L", (16, 16), 128).save(buffer, "JPEG", quality=50)
  data = buffer.getvalue()
  sos = data.find(b"\xff\xda")
  header = bytearray(data[:sos + 2 + int.from_bytes(data[sos + 2:sos + 4], "big")])
  assert data[len(header):] == bytes.fromhex("28a28affd9")
  sof = header.find(b"\xff\xc0")
  header[sof + 5:sof + 9] = struct.pack(">HH", height, width)
  blocks = (width // 8) * (height // 8)
  assert width % 32 == 0 and height % 8 == 0
  return bytes(header) + bytes.fromhex("28a28a") * (blocks // 4) + b"\xff\xd9"


def _peak_rss_mb():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_20000_pixel_jpeg_is_decoded_at_reduced_scale(tmp_path):
  path = tmp_path / "huge.jpg"
  path.write_bytes(_uniform_jpeg(20000, 20000))  # 4.7 MB file, 400 megapixels
  before = _peak_rss_mb()
  loaded = load_image(path, max_side=1024)
  assert loaded.shape == (1024, 1024, 3)
  np.testing.assert_allclose(loaded, 128 / 255, atol=1.5 / 255)
  assert _peak_rss_mb() - before < 200  # a full decode would need 400 MB (1.6 GB as RGB)


def _one_bit_png(width, height):
  """An all-black 1-bit PNG, compressed row by row (a few hundred kB)."""
  def chunk(kind, payload):
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload)))
  compressor = zlib.compressobj(9)
  row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
  idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
  header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
  return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat)
          + chunk(b"IEND", b""))


def test_20000_pixel_png_is_refused_in_one_line(tmp_path):
  path = tmp_path / "huge.png"
  path.write_bytes(_one_bit_png(20000, 20000))
  with pytest.raises(ImageError, match="too large") as error:
    load_image(path)
  assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_png_above_the_decode_limit_is_refused_with_its_size(tmp_path):
  path = tmp_path / "big.png"
  path.write_bytes(_one_bit_png(9000, 9000))  # 81 Mpx: below PIL's own bomb error
  with pytest.raises(ImageError, match="9000x9000 pixels is too large"):
    load_image(path)


def _truncated_jpeg(path):
  pixels = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
  path.write_bytes(buffer.getvalue()[:len(buffer.getvalue()) // 2])
  return path


def _truncated_png(path):
  pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, "PNG")
  path.write_bytes(buffer.getvalue()[:len(buffer.getvalue()) // 2])
  return path


def _tiny_png(path):
  return _save(Image.new("RGB", (1, 1)), path)


def _thin_png(path):
  return _save(Image.new("RGB", (31, 100)), path)


@pytest.mark.parametrize("make, message", [
    (lambda p: p, "no such file"),
    (lambda p: (p.mkdir(), p)[1], "is a directory"),
    (lambda p: (p.write_bytes(b""), p)[1], "empty file"),
    (lambda p: (p.write_text("not a picture\n"), p)[1], "not an image"),
    (_truncated_jpeg, "truncated or corrupt"),
    (_truncated_png, "truncated or corrupt"),
    (_tiny_png, "1x1 pixels is too small to contain a face"),
    (_thin_png, "31x100 pixels is too small to contain a face"),
])
def test_bad_files_give_one_line_naming_the_file(tmp_path, make, message):
  path = make(tmp_path / "photo.jpg")
  with pytest.raises(ImageError, match=message) as error:
    load_image(path)
  assert isinstance(error.value, JaxfaceError)
  assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_truncated_images_are_not_silently_accepted():
  assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # importing preprocess leaves it alone
