"""Reader for dlib's serialized deep networks (`.dat` files written by `dlib::serialize`).

A dlib network is a nested C++ type, `loss<layer_n<...<layer_1<input>>>>`, and its file
mirrors that nesting: the loss layer's version and fields, then every wrapper's version
from the outermost inwards, then the input layer, then each layer's own fields from the
input outwards. Tags and skips (`tag1`, `skip1`, ...) write only a version number, not
their id, so the graph (which `add_prev` adds which tag) is not in the file: callers
check the returned layer sequence against their own network definition.

Encodings (dlib/serialize.h, dlib/cuda/tensor.h, dlib/dnn/core.h, layers.h, input.h):

- integers: one control byte (low nibble = byte count 1..8, bit 0x80 = negative) then
  the magnitude's bytes, little-endian;
- strings: integer length, then the bytes; bools: the ASCII byte '0' or '1';
- floats and doubles: integer mantissa (int64) and integer exponent (int16), value =
  mantissa * 2**exponent (exponents 32000/32001/32002 mean +inf/-inf/nan);
- tensors: integer version 2, four integer dims (num_samples, k, nr, nc), then raw
  little-endian float32 in row-major NCHW order; alias tensors: version 1 + four dims;
- wrappers: `add_layer` version 2 (1 in old files, unsupported here because it cannot
  be told from a tag), `add_layer` directly on the input version 2 or 3, `add_tag_layer`
  and `add_skip_layer` version 1, `add_loss_layer` version 1.

Supported layer kinds are those of dlib's ResNet-style models: `con_` (versions 4-6),
`fc_` (2-3), `affine_` (1-2), `relu_` (1-2), `max_pool_2`, `avg_pool_2`, `add_prev_`,
`input_rgb_image_sized`, `loss_metric_` (1-2). Anything else raises `ModelFormatError`.
Pure numpy; reading is done once and cached by the caller.
"""

import dataclasses
import os
import pathlib

import numpy as np

from jaxface.errors import ModelFormatError

_FLOAT_SPECIAL = {32000: np.inf, 32001: -np.inf, 32002: np.nan}
_MAX_DEPTH = 100_000


@dataclasses.dataclass(frozen=True)
class Layer:
  """One layer of a dlib network.

  Attributes:
    kind: "input_rgb_image_sized", "con", "fc", "affine", "relu", "max_pool",
      "avg_pool", "add_prev" or "tag" (a tag or skip layer: the file cannot tell them
      apart and stores no id).
    version: the layer's version string as stored ("con_4", "relu_2", ...), "" for tags.
    fields: the stored fields; tensors as float32 numpy arrays (see `read_network`).
  """
  kind: str
  version: str
  fields: dict


@dataclasses.dataclass(frozen=True)
class Network:
  """A parsed dlib network: the loss layer and the layers from input to output."""
  loss: Layer
  layers: tuple[Layer, ...]


class _Reader:
  """Cursor over the file's bytes; every failure names the file."""

  def __init__(self, path: pathlib.Path, data: bytes):
    self.path = path
    self.data = memoryview(data)
    self.pos = 0

  def fail(self, what: str) -> ModelFormatError:
    return ModelFormatError(f"{self.path}: {what} at byte {self.pos}; not a dlib network "
                            "file of the expected kind, or truncated")

  def take(self, n: int, what: str) -> memoryview:
    if n < 0 or self.pos + n > len(self.data):
      raise self.fail(f"unexpected end of file reading {what}")
    chunk = self.data[self.pos:self.pos + n]
    self.pos += n
    return chunk

  def read_int(self, what: str = "an integer") -> int:
    control = self.take(1, what)[0]
    size = control & 0x0F
    if control & 0x70 or not 1 <= size <= 8:
      self.pos -= 1
      raise self.fail(f"bad integer control byte 0x{control:02x} reading {what}")
    value = int.from_bytes(self.take(size, what), "little")
    return -value if control & 0x80 else value

  def read_string(self, what: str = "a string") -> str:
    size = self.read_int(what)
    if size > 4096:
      raise self.fail(f"implausible string length {size} reading {what}")
    raw = bytes(self.take(size, what))
    try:
      return raw.decode("ascii")
    except UnicodeDecodeError:
      raise self.fail(f"non-text bytes reading {what}") from None

  def read_bool(self, what: str = "a bool") -> bool:
    ch = self.take(1, what)[0]
    if ch not in (ord("0"), ord("1")):
      self.pos -= 1
      raise self.fail(f"bad bool byte 0x{ch:02x} reading {what}")
    return ch == ord("1")

  def read_float(self, what: str = "a float") -> float:
    if self.pos < len(self.data) and self.data[self.pos] & 0x70:
      raise self.fail(f"old ASCII float encoding (unsupported) reading {what}")
    mantissa = self.read_int(what)
    exponent = self.read_int(what)
    if exponent in _FLOAT_SPECIAL:
      return float(_FLOAT_SPECIAL[exponent])
    return float(np.ldexp(np.float64(mantissa), exponent))

  def read_tensor(self, what: str = "a tensor") -> np.ndarray:
    version = self.read_int(what)
    if version != 2:
      raise self.fail(f"tensor version {version} (expected 2) reading {what}")
    dims = tuple(self.read_int(what) for _ in range(4))
    if any(d < 0 for d in dims):
      raise self.fail(f"negative tensor dims {dims} reading {what}")
    count = int(np.prod(dims, dtype=np.int64))
    raw = self.take(4 * count, f"{what} data ({count} float32)")
    return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(dims)

  def read_alias(self, what: str = "an alias tensor") -> tuple[int, ...]:
    version = self.read_int(what)
    if version != 1:
      raise self.fail(f"alias tensor version {version} (expected 1) reading {what}")
    return tuple(self.read_int(what) for _ in range(4))

  def peek_string_prefix(self, prefix: bytes) -> bool:
    """True if a string starting with `prefix` begins at the cursor (no bytes consumed)."""
    start = self.pos
    try:
      size = self.read_int()
      return size >= len(prefix) and bytes(self.take(len(prefix), "")) == prefix
    except ModelFormatError:
      return False
    finally:
      self.pos = start


def _read_loss(r: _Reader) -> Layer:
  version = r.read_string("the loss layer name")
  if version == "loss_metric_":
    return Layer("loss_metric", version, {"margin": 0.1, "dist_thresh": 0.75})
  if version == "loss_metric_2":
    return Layer("loss_metric", version, {"margin": r.read_float("loss margin"),
                                          "dist_thresh": r.read_float("loss dist_thresh")})
  raise r.fail(f"unsupported loss layer {version!r}")


def _read_input(r: _Reader) -> Layer:
  version = r.read_string("the input layer name")
  if version != "input_rgb_image_sized":
    raise r.fail(f"unsupported input layer {version!r}")
  fields = {"avg_red": r.read_float(), "avg_green": r.read_float(), "avg_blue": r.read_float(),
            "nr": r.read_int(), "nc": r.read_int()}
  return Layer("input_rgb_image_sized", version, fields)


def _read_details(r: _Reader) -> Layer:
  """Reads one computational layer's own fields (its `serialize(details)`)."""
  version = r.read_string("a layer name")
  if version in ("con_4", "con_5", "con_6"):
    f = {"params": r.read_tensor("con params"), "num_filters": r.read_int(), "nr": r.read_int(),
         "nc": r.read_int(), "stride_y": r.read_int(), "stride_x": r.read_int(), "padding_y": r.read_int(),
         "padding_x": r.read_int(), "filters": r.read_alias(), "biases": r.read_alias(),
         "learning_rate_multiplier": r.read_float(), "weight_decay_multiplier": r.read_float(),
         "bias_learning_rate_multiplier": r.read_float(),
         "bias_weight_decay_multiplier": r.read_float()}
    f["use_bias"] = r.read_bool() if version != "con_4" else True
    f["use_relu"] = r.read_bool() if version == "con_6" else False
    return Layer("con", version, f)
  if version in ("fc_2", "fc_3"):
    f = {"num_outputs": r.read_int(), "num_inputs": r.read_int(), "params": r.read_tensor("fc params"),
         "weights": r.read_alias(), "biases": r.read_alias(), "bias_mode": r.read_int(),
         "learning_rate_multiplier": r.read_float(), "weight_decay_multiplier": r.read_float(),
         "bias_learning_rate_multiplier": r.read_float(),
         "bias_weight_decay_multiplier": r.read_float()}
    # bias_mode: 0 = FC_HAS_BIAS, 1 = FC_NO_BIAS (fc_no_bias).
    f["use_bias"] = r.read_bool() if version == "fc_3" else f["bias_mode"] == 0
    return Layer("fc", version, f)
  if version in ("affine_", "affine_2"):
    f = {"params": r.read_tensor("affine params"), "gamma": r.read_alias(),
         "beta": r.read_alias(), "mode": r.read_int()}
    f["disabled"] = r.read_bool() if version == "affine_2" else False
    return Layer("affine", version, f)
  if version in ("relu_", "relu_2"):
    return Layer("relu", version, {"disabled": r.read_bool() if version == "relu_2" else False})
  if version in ("max_pool_2", "avg_pool_2"):
    f = {"nr": r.read_int(), "nc": r.read_int(), "stride_y": r.read_int(), "stride_x": r.read_int(),
         "padding_y": r.read_int(), "padding_x": r.read_int()}
    return Layer(version[:-2], version, f)
  if version == "add_prev_":
    return Layer("add_prev", version, {})
  raise r.fail(f"unsupported layer {version!r}")


def _read_add_layer_state(r: _Reader, on_input: bool, version: int) -> None:
  """Skips the training state an `add_layer` stores after its details."""
  for name in ("this_layer_setup_called", "gradient_input_is_stale",
               "get_output_and_gradient_input_disabled"):
    r.read_bool(name)
  r.read_tensor("x_grad")
  r.read_tensor("cached_output")
  r.read_tensor("grad_final" if on_input else "params_grad")
  if on_input and version >= 3:
    r.read_int("sample_expansion_factor")


def parse_network(data: bytes, path: str | os.PathLike = "<bytes>") -> Network:
  """Parses the bytes of a dlib network file.

  Args:
    data: the whole file's contents.
    path: used only in error messages.
  Returns:
    A `Network`; each `con` layer's `params` tensor holds the filters [num_filters, k,
    nr, nc] (NCHW, correlation) then the biases [num_filters], flattened; `fc` params
    hold the weights [num_inputs, num_outputs] (then biases if any); `affine` params
    hold gamma then beta, one per channel.
  Raises:
    ModelFormatError: the bytes are truncated or not a supported dlib network.
  """
  r = _Reader(pathlib.Path(path), data)
  version = r.read_int("the loss wrapper version")
  if version != 1:
    raise r.fail(f"loss wrapper version {version} (expected 1)")
  loss = _read_loss(r)
  wrappers = []  # Versions from the outermost wrapper inwards.
  while not r.peek_string_prefix(b"input"):
    wrappers.append(r.read_int("a layer wrapper version"))
    if wrappers[-1] not in (1, 2, 3) or len(wrappers) > _MAX_DEPTH:
      raise r.fail(f"unexpected layer wrapper version {wrappers[-1]}")
  if not wrappers or wrappers[-1] not in (2, 3):
    raise r.fail("the input layer is not wrapped by a computational layer")
  layers = [_read_input(r)]
  layers.append(_read_details(r))
  _read_add_layer_state(r, on_input=True, version=wrappers[-1])
  for version in reversed(wrappers[:-1]):
    if version == 1:
      layers.append(Layer("tag", "", {}))
    elif version == 2:
      layers.append(_read_details(r))
      _read_add_layer_state(r, on_input=False, version=version)
    else:
      raise r.fail(f"layer wrapper version {version} above the input layer")
  if r.pos != len(r.data):
    raise r.fail(f"{len(r.data) - r.pos} unexpected trailing bytes")
  return Network(loss=loss, layers=tuple(layers))


def read_network(path: str | os.PathLike) -> Network:
  """Reads a dlib network `.dat` file (uncompressed, as `dlib::serialize` wrote it).

  Args:
    path: the file.
  Returns:
    The parsed `Network` (see `parse_network`).
  Raises:
    ModelFormatError: the file is missing, compressed, truncated or not a supported
      dlib network; the one-line message names the file.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise ModelFormatError(f"{path}: no such file (expected a dlib network .dat)")
  data = path.read_bytes()
  if data[:3] == b"BZh":
    raise ModelFormatError(f"{path}: bzip2-compressed; decompress it first (bunzip2)")
  return parse_network(data, path)
