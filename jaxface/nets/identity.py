"""Face-recognition networks for the identity loss: a Flax port of dlib's ResNet.

`DlibResNet` reproduces dlib's `dlib_face_recognition_resnet_model_v1.dat` (the network
`anet_type` of dlib's dnn_face_recognition_ex.cpp: 29 convolutions, 5.6M parameters,
150x150 RGB chip -> raw 128-d descriptor, not unit-normalised). The weights are read from
the `.dat` shipped by `face-recognition-models` (`dlib_format` parses it) and cached as
`$JAXFACE_CACHE/models/dlib_resnet_v1.npz`. Same person: descriptor distance ≈0.36-0.42,
different people ≈0.76-0.85 (DESIGN.md §3).

Network (dlib's layer semantics, which the port keeps exactly):
- input: x = (255·RGB - [122.782, 117.001, 104.298]) / 256;
- stem: conv 7x7/2 (no padding) -> affine -> relu -> max pool 3x3/2 (no padding);
- 14 residual blocks: conv 3x3/s -> affine -> relu -> conv 3x3/1 -> affine, added to the
  block input (stride 1) or to its 2x2/2 average pool (stride 2), then relu. Stride-1
  convolutions pad by 1, strided ones do not pad. Widths 32 x3, 64 x4, 128 x3, 256 x3,
  256 x1, the first block of each later stage strided;
- where the add sees inputs of different size (channels 32 vs 64; 3x3 vs 4x4 maps at
  the 256 stage), both are zero-padded at the end to the larger size (dlib `tt::add`);
- global average pool -> linear 256 -> 128 without bias.
"affine" is dlib's frozen batch norm: per-channel scale and shift.

Chips: `face_chip` aligns faces like dlib's `get_face_chip_details` + `extract_image_chip`
(a similarity transform from 5 or 68 landmarks to dlib's mean-face template with
padding), by differentiable bilinear sampling, so gradients reach rendered images.

Other recognition nets (e.g. a user-converted ArcFace) plug in behind the same contract:
`load_params(path=None) -> params`, `embed(params, chips [B,S,S,3] in [0,1]) -> [B,D]`,
`chip(images, landmarks) -> [B,S,S,3]`. Add a module with those three functions and an
entry in `RECOGNITION_NETS`; callers pick one by name (a config string).
"""

import dataclasses
import os
import pathlib
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxface import assets
from jaxface import files
from jaxface.errors import ModelFormatError
from jaxface.nets import dlib_format

CHIP_SIZE = 150
EMBEDDING_DIM = 128
INPUT_MEAN_RGB = (122.782, 117.001, 104.298)  # avg_red/green/blue of the input layer.
INPUT_SCALE = 256.0
# (width, stride) of the 14 residual blocks, input to output (alevel4 ... alevel0).
BLOCKS = ((32, 1),) * 3 + ((64, 2),) + ((64, 1),) * 3 + ((128, 2),) + ((128, 1),) * 2 + (
    (256, 2),) + ((256, 1),) * 2 + ((256, 2),)
CACHE_NAME = "dlib_resnet_v1"
CACHE_VERSION = 1

# dlib's 5-point template (get_face_chip_details), in [0, 1] chip units before padding:
# right eye outer, right eye inner, left eye outer, left eye inner, nose base.
TEMPLATE_5 = np.array([
    [0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677],
    [0.1205750620789, 0.2137274526848], [0.3340850613712, 0.2290642403242],
    [0.4901123135679, 0.6277975316475]])
# dlib's mean face for iBUG points 17..67 (x then y), same units.
_MEAN_FACE_17_67_X = (
    0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124,
    0.904991, 0.98004, 0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036,
    0.490127, 0.554217, 0.613373, 0.121737, 0.187122, 0.265825, 0.334606, 0.260918,
    0.182743, 0.645647, 0.714428, 0.793132, 0.858516, 0.79751, 0.719335, 0.254149,
    0.340985, 0.428858, 0.490127, 0.551395, 0.639268, 0.726104, 0.642159, 0.556721,
    0.490127, 0.423532, 0.338094, 0.290379, 0.428096, 0.490127, 0.552157, 0.689874,
    0.553364, 0.490127, 0.42689)
_MEAN_FACE_17_67_Y = (
    0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891,
    0.0187482, 0.038915, 0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326,
    0.609345, 0.628106, 0.609345, 0.587326, 0.216423, 0.178758, 0.179852, 0.231733,
    0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423, 0.244077, 0.245099,
    0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805,
    0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746, 0.785343, 0.778746,
    0.784792, 0.824182, 0.831803, 0.824182)
# dlib fits the 68-point chip on nose, eyes and the outer/upper mouth only (it skips the
# eyebrows 17-26 and the lower lip 55-59, 65-67).
LANDMARKS_68_USED = np.array([i for i in range(27, 68) if not (55 <= i <= 59 or i >= 65)])
TEMPLATE_68 = np.stack([np.array(_MEAN_FACE_17_67_X)[LANDMARKS_68_USED - 17],
                        np.array(_MEAN_FACE_17_67_Y)[LANDMARKS_68_USED - 17]], -1)


class Affine(nn.Module):
  """dlib's `affine` layer (batch norm frozen at inference): y = scale * x + shift."""

  @nn.compact
  def __call__(self, x):
    """Args: x [..., C]. Returns: [..., C]."""
    scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32)
    shift = self.param("shift", nn.initializers.zeros, (x.shape[-1],), jnp.float32)
    return x * scale + shift


def _pad_add(a: jax.Array, b: jax.Array) -> jax.Array:
  """a + b after zero-padding both at the end of H, W, C to the larger size (dlib's add).

  Args:
    a, b: [B, H, W, C] with possibly different H, W, C.
  Returns:
    [B, max H, max W, max C].
  """
  target = [max(sa, sb) for sa, sb in zip(a.shape, b.shape)]
  pad = lambda t: jnp.pad(t, [(0, n - s) for s, n in zip(t.shape, target)])
  return pad(a) + pad(b)


class ResidualBlock(nn.Module):
  """dlib's `ares` (stride 1) or `ares_down` (stride 2) block with affine layers."""
  features: int
  stride: int
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    """Args: x [B, H, W, C]. Returns: [B, H', W', features], H' = H or the pooled size."""
    # dlib pads 3x3 convolutions by 1 only when the stride is 1.
    padding = "SAME" if self.stride == 1 else "VALID"
    y = nn.Conv(self.features, (3, 3), strides=self.stride, padding=padding,
                precision=self.precision, name="conv1")(x)
    y = nn.relu(Affine(name="affine1")(y))
    y = nn.Conv(self.features, (3, 3), padding="SAME", precision=self.precision,
                name="conv2")(y)
    y = Affine(name="affine2")(y)
    skip = x if self.stride == 1 else nn.avg_pool(x, (2, 2), strides=(2, 2))
    return nn.relu(_pad_add(y, skip))


class DlibResNet(nn.Module):
  """dlib's face-recognition ResNet (dlib_face_recognition_resnet_model_v1).

  Attributes:
    precision: convolution/matmul precision; HIGHEST keeps float32 on accelerators
      (matches dlib to ~1e-6); None lets XLA use TF32/bf16 passes (faster, ~1e-3).
  """
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, chips):
    """Raw 128-d dlib descriptors of aligned face chips.

    Args:
      chips: [B, 150, 150, 3] float32 RGB in [0, 1], aligned as by `face_chip`.
    Returns:
      [B, 128] float32 descriptors (not unit-normalised, as dlib returns them).
    """
    if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
      raise ValueError(f"chips must be [B, {CHIP_SIZE}, {CHIP_SIZE}, 3]; got {chips.shape}")
    x = (chips.astype(jnp.float32) * 255.0 - jnp.asarray(INPUT_MEAN_RGB, jnp.float32)
         ) / INPUT_SCALE
    x = nn.Conv(32, (7, 7), strides=2, padding="VALID", precision=self.precision,
                name="conv0")(x)
    x = nn.relu(Affine(name="affine0")(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")
    for i, (features, stride) in enumerate(BLOCKS):
      x = ResidualBlock(features, stride, self.precision, name=f"block{i}")(x)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(EMBEDDING_DIM, use_bias=False, precision=self.precision, name="fc")(x)


def embed(params, chips: jax.Array) -> jax.Array:
  """Descriptors of aligned chips with dlib's ResNet (pure; wrap in jax.jit at the call site).

  Args:
    params: `{"params": ...}` from `load_dlib_params`.
    chips: [B, 150, 150, 3] float32 RGB in [0, 1].
  Returns:
    [B, 128] float32 raw dlib descriptors.
  """
  return DlibResNet().apply(params, chips)


# ------------------------------------------------------------------------------------
# Weights: dlib .dat -> Flax params.


def _expected_layers() -> list[tuple]:
  """dlib's layer sequence for anet_type, input to output, with Flax names for weights."""
  seq = [("input_rgb_image_sized",), ("con", "conv0", 32, 7, 2), ("affine", "affine0"),
         ("relu",), ("max_pool", 3, 2)]
  for i, (features, stride) in enumerate(BLOCKS):
    seq += [("tag",), ("con", f"block{i}/conv1", features, 3, stride),
            ("affine", f"block{i}/affine1"), ("relu",),
            ("con", f"block{i}/conv2", features, 3, 1), ("affine", f"block{i}/affine2")]
    if stride != 1:
      seq += [("tag",), ("tag",), ("avg_pool", 2, 2)]  # tag2, skip1, avg_pool<2,2,2,2>.
    seq += [("add_prev",), ("relu",)]
  seq += [("avg_pool", 0, 1), ("fc", "fc", EMBEDDING_DIM)]
  return seq


def convert_dlib_network(network: dlib_format.Network, path) -> dict[str, np.ndarray]:
  """Checks a parsed dlib network against `DlibResNet` and extracts its weights.

  Args:
    network: from `dlib_format.read_network`.
    path: the source file, for error messages.
  Returns:
    Flat dict "conv0/kernel" -> array: conv kernels [kh, kw, in, out] (Flax HWIO), conv
    biases [out], affine "scale"/"shift" [C], "fc/kernel" [256, 128]; all float32.
  Raises:
    ModelFormatError: the network is not dlib_face_recognition_resnet_model_v1's.
  """
  expected = _expected_layers()
  got = network.layers
  if len(got) != len(expected):
    raise ModelFormatError(f"{path}: {len(got)} layers, expected {len(expected)} of "
                           "dlib_face_recognition_resnet_model_v1")
  flat = {}
  in_channels = 3
  for index, (want, layer) in enumerate(zip(expected, got)):
    def fail(what, index=index, layer=layer):
      return ModelFormatError(f"{path}: layer {index} ({layer.version or layer.kind}) "
                              f"{what}; not dlib_face_recognition_resnet_model_v1")
    f = layer.fields
    if layer.kind != want[0]:
      raise fail(f"is a {layer.kind}, expected a {want[0]}")
    if want[0] == "input_rgb_image_sized":
      means = (f["avg_red"], f["avg_green"], f["avg_blue"])
      if (f["nr"], f["nc"]) != (CHIP_SIZE, CHIP_SIZE) or not np.allclose(
          means, INPUT_MEAN_RGB, atol=1e-3):
        raise fail(f"has size {f['nr']}x{f['nc']} and means {means}")
    elif want[0] == "con":
      _, name, features, size, stride = want
      geometry = (f["num_filters"], f["nr"], f["nc"], f["stride_y"], f["stride_x"],
                  f["padding_y"], f["padding_x"], f["use_bias"], f["use_relu"])
      pad = size // 2 if stride == 1 else 0
      if geometry != (features, size, size, stride, stride, pad, pad, True, False):
        raise fail(f"has (filters, nr, nc, strides, paddings, bias, relu) = {geometry}")
      count = features * in_channels * size * size
      params = f["params"].reshape(-1)
      if params.size != count + features:
        raise fail(f"holds {params.size} values, expected {count + features}")
      # dlib filters are [out, in, kh, kw] (cross-correlation, like lax.conv).
      kernel = params[:count].reshape(features, in_channels, size, size)
      flat[f"{name}/kernel"] = np.ascontiguousarray(kernel.transpose(2, 3, 1, 0))
      flat[f"{name}/bias"] = params[count:].copy()
      in_channels = features
    elif want[0] == "affine":
      params = f["params"].reshape(-1)
      if f["disabled"] or f["mode"] != 0 or params.size != 2 * in_channels:
        raise fail(f"is disabled, not per-channel or holds {params.size} values "
                   f"(expected {2 * in_channels})")
      flat[f"{want[1]}/scale"] = params[:in_channels].copy()  # gamma
      flat[f"{want[1]}/shift"] = params[in_channels:].copy()  # beta
    elif want[0] == "relu":
      if f["disabled"]:
        raise fail("is disabled")
    elif want[0] in ("max_pool", "avg_pool"):
      geometry = (f["nr"], f["nc"], f["stride_y"], f["stride_x"], f["padding_y"],
                  f["padding_x"])
      if geometry != (want[1], want[1], want[2], want[2], 0, 0):
        raise fail(f"has (nr, nc, strides, paddings) = {geometry}")
    elif want[0] == "fc":
      if (f["num_inputs"], f["num_outputs"], f["use_bias"]) != (in_channels, want[2], False):
        raise fail(f"has (inputs, outputs, bias) = "
                   f"{(f['num_inputs'], f['num_outputs'], f['use_bias'])}")
      params = f["params"].reshape(-1)
      if params.size != in_channels * want[2]:
        raise fail(f"holds {params.size} values, expected {in_channels * want[2]}")
      # dlib computes x @ W with W [num_inputs, num_outputs], Flax's Dense layout.
      flat["fc/kernel"] = params.reshape(in_channels, want[2]).copy()
  return flat


def _cache_path(source_digest: str, default_source: bool) -> pathlib.Path:
  name = CACHE_NAME if default_source else f"{CACHE_NAME}-{source_digest[:16]}"
  return assets.cache_dir() / "models" / f"{name}.npz"


def _read_cache(path: pathlib.Path, source_digest: str) -> dict[str, np.ndarray] | None:
  """The cached flat params if the cache holds this source's conversion, else None."""
  if not path.is_file():
    return None
  try:
    with np.load(path, allow_pickle=False) as data:
      meta = {k: str(data[k]) for k in ("__source_sha256__", "__cache_version__")}
      if meta != {"__source_sha256__": source_digest,
                  "__cache_version__": str(CACHE_VERSION)}:
        return None
      return {k: data[k] for k in data.files if not k.startswith("__")}
  except Exception:  # pylint: disable=broad-except  (a corrupt cache is rebuilt)
    return None


def _write_cache(path: pathlib.Path, flat: dict[str, np.ndarray], source_digest: str) -> None:
  """Writes the npz atomically, tagged with the source digest and cache version."""
  files.save_npz(path, __source_sha256__=np.array(source_digest),
                 __cache_version__=np.array(str(CACHE_VERSION)), **flat)


def load_dlib_params(path: str | os.PathLike | None = None) -> dict:
  """Loads dlib's face-recognition weights as Flax params, converting once and caching.

  Args:
    path: a `dlib_face_recognition_resnet_model_v1.dat` (uncompressed); default the one
      in the installed `face-recognition-models`.
  Returns:
    `{"params": ...}` for `DlibResNet().apply` / `embed`, float32 jax arrays.
  Raises:
    AssetError: face-recognition-models is not installed (default path).
    ModelFormatError: the file is missing, truncated or not this network (one line,
      naming the file).
  """
  default_source = path is None
  source = assets.dlib_model_path("recognition") if default_source else pathlib.Path(path)
  if not source.is_file():
    raise ModelFormatError(f"{source}: no such file (expected "
                           "dlib_face_recognition_resnet_model_v1.dat)")
  digest = assets.sha256_of(source)
  cache = _cache_path(digest, default_source)
  flat = _read_cache(cache, digest)
  if flat is None:
    flat = convert_dlib_network(dlib_format.read_network(source), source)
    with assets.cache_lock():
      _write_cache(cache, flat, digest)
  tree = traverse_util.unflatten_dict({tuple(k.split("/")): jnp.asarray(v)
                                       for k, v in flat.items()})
  return {"params": tree}


# ------------------------------------------------------------------------------------
# Face chips.


def chip_transform(landmarks: jax.Array, *, size: int = CHIP_SIZE, padding: float = 0.25
                   ) -> jax.Array:
  """Affine map from chip pixels to image pixels, as dlib's get_face_chip_details.

  dlib fits a similarity transform (least squares, Umeyama) from its template, scaled
  to the padded chip, to the landmarks; the chip spans `size * scale` image pixels
  centred on the transformed chip centre, and extract_image_chip maps chip corner
  pixels (0, 0), (size-1, 0), (0, size-1) to that square's rotated corners.

  Args:
    landmarks: [B, 68, 2] (iBUG) or [B, 5, 2] (dlib 5-point) in dlib pixel coordinates
      (x right, y down, pixel centres at integers).
    size: chip side in pixels.
    padding: extra border as a fraction of the template's extent on each side.
  Returns:
    [B, 2, 3]: image (x, y) = A[:, :2] @ (column, row) + A[:, 2], dlib coordinates.
  """
  num = landmarks.shape[-2]
  if landmarks.ndim != 3 or landmarks.shape[-1] != 2 or num not in (5, 68):
    raise ValueError(f"landmarks must be [B, 68, 2] or [B, 5, 2]; got {landmarks.shape}")
  template = TEMPLATE_68 if num == 68 else TEMPLATE_5
  src = jnp.asarray((padding + template) / (2 * padding + 1) * size, jnp.float32)  # [K, 2]
  dst = landmarks.astype(jnp.float32)
  if num == 68:
    dst = dst[:, LANDMARKS_68_USED]
  src_c = src - src.mean(0)
  dst_c = dst - dst.mean(1, keepdims=True)
  mean_from, mean_to = src.mean(0), dst.mean(1)
  # Least-squares scaled rotation [[a, -b], [b, a]]: for 2D points this is Umeyama's
  # solution (what dlib's find_similarity_transform computes) in closed form.
  var = jnp.sum(src_c ** 2)
  a = jnp.sum(src_c[:, 0] * dst_c[..., 0] + src_c[:, 1] * dst_c[..., 1], -1) / var
  b = jnp.sum(src_c[:, 0] * dst_c[..., 1] - src_c[:, 1] * dst_c[..., 0], -1) / var
  scale = jnp.maximum(jnp.hypot(a, b), 1e-12)
  cos, sin = a / scale, b / scale
  rot = jnp.stack([jnp.stack([cos, -sin], -1), jnp.stack([sin, cos], -1)], -2)  # [B,2,2]
  sim = rot * scale[:, None, None]
  half = jnp.full((2,), size / 2.0, jnp.float32)
  centre = jnp.einsum("bij,j->bi", sim, half - mean_from) + mean_to
  # centered_drect(centre, size*scale, size*scale) spans size*scale - 1 pixels per side;
  # chip pixel 0 and size-1 land on its two edges.
  step = (size * scale - 1.0) / (size - 1)  # image pixels per chip pixel
  linear = rot * step[:, None, None]
  origin = centre - jnp.einsum("bij,j->bi", linear, jnp.full((2,), (size - 1) / 2.0))
  return jnp.concatenate([linear, origin[..., None]], -1)


def _bilinear(image: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
  """dlib's interpolate_bilinear: 0 where any of the four taps falls outside the image.

  Args:
    image: [H, W, C]; x, y: [...] dlib pixel coordinates (centres at integers).
  Returns:
    [..., C].
  """
  h, w = image.shape[:2]
  x0, y0 = jnp.floor(x), jnp.floor(y)
  fx, fy = (x - x0)[..., None], (y - y0)[..., None]
  inside = (x0 >= 0) & (y0 >= 0) & (x0 + 1 <= w - 1) & (y0 + 1 <= h - 1)
  xi = jnp.clip(x0, 0, w - 2).astype(jnp.int32)
  yi = jnp.clip(y0, 0, h - 2).astype(jnp.int32)
  tl, tr = image[yi, xi], image[yi, xi + 1]
  bl, br = image[yi + 1, xi], image[yi + 1, xi + 1]
  value = (1 - fy) * ((1 - fx) * tl + fx * tr) + fy * ((1 - fx) * bl + fx * br)
  return jnp.where(inside[..., None], value, 0.0)


def face_chip(images: jax.Array, landmarks: jax.Array, *, size: int = CHIP_SIZE,
              padding: float = 0.25) -> jax.Array:
  """Aligned face chips as dlib.get_face_chip computes them, differentiable in the image.

  Coordinates: `landmarks` use jaxface's pixel convention (x right, y down, pixel (row
  i, column j) centred at (j + 0.5, i + 0.5), as in `render.camera`); dlib puts pixel
  centres at integers, so points from dlib's shape predictor need +0.5 before they are
  passed here. Chip pixels whose bilinear footprint leaves the image are 0, as in dlib.

  Differences from dlib: values are not truncated to uint8 (dlib floors, so its chips
  are on average 0.5/255 darker), and when the face spans more than twice the chip size
  (size*scale > ~2*size image pixels) dlib samples from a pyramid_down<2> level while
  this samples the full-resolution image (aliasing on very large faces; downscale such
  images first).

  Args:
    images: [B, H, W, C] float in [0, 1] (any C; RGB for the recognition net).
    landmarks: [B, 68, 2] iBUG or [B, 5, 2] dlib 5-point, pixels (see above).
    size: chip side in pixels (150 for `DlibResNet`).
    padding: border around the template, as a fraction of its extent (dlib: 0.25).
  Returns:
    [B, size, size, C] chips; gradients flow to `images` (and to `landmarks` through
    the sampling positions).
  """
  if images.ndim != 4 or landmarks.ndim != 3 or images.shape[0] != landmarks.shape[0]:
    raise ValueError(f"need images [B, H, W, C] and landmarks [B, K, 2]; got "
                     f"{images.shape} and {landmarks.shape}")
  transform = chip_transform(landmarks - 0.5, size=size, padding=padding)
  grid = jnp.arange(size, dtype=jnp.float32)
  cols, rows = jnp.meshgrid(grid, grid)  # [size, size] each: x = column, y = row.
  points = jnp.stack([cols, rows, jnp.ones_like(cols)], -1)
  xy = jnp.einsum("bij,hwj->bhwi", transform, points)
  return jax.vmap(_bilinear)(images, xy[..., 0], xy[..., 1])


@dataclasses.dataclass(frozen=True)
class RecognitionNet:
  """A face-recognition net behind the identity loss's contract.

  Attributes:
    load_params: (path=None) -> params.
    embed: (params, chips [B, S, S, 3] in [0, 1]) -> [B, D]; pure.
    chip: (images [B, H, W, 3], landmarks [B, K, 2]) -> chips [B, S, S, 3].
    chip_size: S.
    embedding_dim: D.
  """
  load_params: Callable[..., Any]
  embed: Callable[[Any, jax.Array], jax.Array]
  chip: Callable[[jax.Array, jax.Array], jax.Array]
  chip_size: int
  embedding_dim: int


RECOGNITION_NETS = {
    "dlib_resnet_v1": RecognitionNet(load_params=load_dlib_params, embed=embed,
                                     chip=face_chip, chip_size=CHIP_SIZE,
                                     embedding_dim=EMBEDDING_DIM),
}
