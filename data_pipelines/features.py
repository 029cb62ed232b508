"""The record format of the synthetic dataset: one `tf.train.Example` per identity.

A TFRecord shard holds serialized `tf.train.Example`s; one record is one identity
seen in F frames of S x S pixels. Every feature (F frames, Ks shape, Ke expression and
Ka albedo coefficients, V model vertices):

| feature        | type  | shape (stored)  | meaning                                                        |
|----------------|-------|-----------------|----------------------------------------------------------------|
| identity       | int64 | []              | global identity index                                          |
| num_frames     | int64 | []              | F                                                              |
| image_size     | int64 | []              | S (images, masks and occlusions are S x S)                     |
| num_vertices   | int64 | []              | V (rows of `detail`)                                           |
| image_format   | bytes | []              | b"jpeg" or b"png": how `image` is encoded                      |
| image          | bytes | [F]             | JPEG (quality 95, default) or PNG of uint8 [S, S, 3] RGB       |
| masks_zlib     | bytes | [F]             | zlib stream (RFC 1950, level `MASKS_ZLIB_LEVEL`) of the raw    |
|                |       |                 | uint8 [S, S, 2] array (C order) of the frame's two binary      |
|                |       |                 | masks, 0 or 255: channel 0 = mask, 255 = face surface of the   |
|                |       |                 | model visible in the frame (occluders not taken into account); |
|                |       |                 | channel 1 = occlusion, 255 = synthetic occluder pixel          |
| mask           | bytes | [F]             | READ ONLY, in records of earlier versions (no `masks_zlib`):   |
|                |       |                 | PNG uint8 [S, S], what channel 0 of `masks_zlib` holds         |
| occlusion      | bytes | [F]             | READ ONLY, as `mask`: PNG uint8 [S, S], what channel 1 of      |
|                |       |                 | `masks_zlib` holds                                             |
| landmarks      | float | [F*68*2]        | iBUG-68 (x, y) in pixels, x right, y down, pixel (row i,       |
|                |       |                 | column j) centred at (j + .5, i + .5) (`jaxface.render.camera`)|
| position_map   | bytes | [F]             | PNG uint16 [256, 256, 3]: UV position map (PRNet); x, y in     |
|                |       |                 | image pixels (as landmarks), z = depth in the same pixel scale |
|                |       |                 | (larger = nearer the camera); each stored as                   |
|                |       |                 | round(v * 32) + 32768 (range +-1024 px, 1/32 px steps)         |
| shape          | float | [Ks]            | identity shape coefficients, ~N(0, 1)                          |
| expression     | float | [F*Ke]          | per-frame expression coefficients, ~N(0, 1)                    |
| albedo         | float | [Ka]            | identity albedo coefficients, ~N(0, 1)                         |
| rotation       | float | [F*3]           | Euler (pitch, yaw, roll), radians, `jaxface.render.            |
|                |       |                 | euler_to_matrix` convention                                    |
| translation    | float | [F*3]           | mm, applied after rotation (`jaxface.render.Camera`)           |
| focal          | float | [F]             | pixels; perspective camera, principal point at the centre      |
| light          | float | [F*27]          | spherical-harmonics coefficients [9, 3] (band-major, RGB)      |
| key_light      | float | [F*7]           | directional key light on top of the SH light: direction to the |
|                |       |                 | light (3, camera-aligned frame), colour (3), specular (1); all |
|                |       |                 | zero when the frame has none (`jaxface.synth.render_frames`)   |
| detail         | bytes | []              | float16 little-endian [V, 3] mm: per-identity displacement     |
|                |       |                 | outside the model's span, in the model frame                   |
| tags           | bytes | [F]             | comma-separated frame tags, e.g. b"expression,large_pose,      |
|                |       |                 | occluded"; b"" = neutral                                       |

Floats are float32. `encode_example` writes a record from numpy arrays (`masks_zlib`,
never `mask` / `occlusion`); `parse_example` reads one back into decoded tensors (a tf
graph function, usable in `tf.data` maps); `parse_raw` + the `decode_*` helpers decode
only what a pipeline needs. Readers take both mask forms, record by record
(`decode_masks`): `masks_zlib` when a record has it, else the two PNG features, so
shards written before `masks_zlib` (and folders mixing both) still read the same.
"""

import zlib

import numpy as np
import tensorflow as tf

tf.config.set_visible_devices([], "GPU")

INFO_FILE = "dataset_info.json"  # beside the shards: splits, shard names, sizes, seeds
NUM_LANDMARKS = 68
POSITION_MAP_SIZE = 256
POSITION_MAP_STEPS = 32.0  # quantisation steps per pixel
POSITION_MAP_OFFSET = 32768.0
# zlib level of the position-map PNGs: 1 encodes ~4x faster than the default (6) for
# ~10% more bytes (the maps dominate `jaxface synth`'s encoding time).
POSITION_MAP_PNG_COMPRESSION = 1
IMAGE_FORMATS = ("jpeg", "png")
# zlib level of `masks_zlib`. Measured on 224 px face/occluder masks: levels 1-3 encode
# in ~0.11 ms and inflate in ~0.09 ms per frame, 1.8 KB (level 1) or 1.5 KB (level 3);
# level 6 encodes 4x slower and inflates ~1.6x slower for 0.8 KB. The two PNGs it
# replaces: 0.9 KB, ~0.27 ms to decode.
MASKS_ZLIB_LEVEL = 3
# The features holding the masks: a reader needs all three (either form may be stored).
MASK_FEATURES = ("masks_zlib", "mask", "occlusion")

_INT = tf.io.FixedLenFeature([], tf.int64)
_BYTES = tf.io.FixedLenFeature([], tf.string)
_SEQ_FLOAT = tf.io.FixedLenSequenceFeature([], tf.float32, allow_missing=True)
_SEQ_BYTES = tf.io.FixedLenSequenceFeature([], tf.string, allow_missing=True)

# Per feature: the `tf.io.parse_single_example` spec (variable length where the size
# depends on F, Ks, Ke or Ka; `parse_raw` reshapes from the stored sizes).
FEATURE_SPEC = {
    "identity": _INT,
    "num_frames": _INT,
    "image_size": _INT,
    "num_vertices": _INT,
    "image_format": _BYTES,
    "image": _SEQ_BYTES,
    "masks_zlib": _SEQ_BYTES,
    "mask": _SEQ_BYTES,
    "occlusion": _SEQ_BYTES,
    "landmarks": _SEQ_FLOAT,
    "position_map": _SEQ_BYTES,
    "shape": _SEQ_FLOAT,
    "expression": _SEQ_FLOAT,
    "albedo": _SEQ_FLOAT,
    "rotation": _SEQ_FLOAT,
    "translation": _SEQ_FLOAT,
    "focal": _SEQ_FLOAT,
    "light": _SEQ_FLOAT,
    "key_light": _SEQ_FLOAT,
    "detail": _BYTES,
    "tags": _SEQ_BYTES,
}


def _bytes_feature(values) -> tf.train.Feature:
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _float_feature(values) -> tf.train.Feature:
  flat = np.asarray(values, np.float32).reshape(-1)
  return tf.train.Feature(float_list=tf.train.FloatList(value=flat.tolist()))


def _int_feature(value: int) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def _to_binary_uint8(mask: np.ndarray) -> np.ndarray:
  """bool -> 0/255; integer masks are stored verbatim (0 or 255 expected)."""
  mask = np.asarray(mask)
  if mask.dtype == np.bool_:
    return mask.astype(np.uint8) * 255
  if mask.dtype != np.uint8:
    raise ValueError(f"masks must be bool or uint8, got {mask.dtype}")
  return mask


def quantize_position_map(position_map: np.ndarray) -> np.ndarray:
  """Float pixels -> the stored uint16 code round(v * 32) + 32768 (clipped to uint16).

  Args:
    position_map: [..., 3] float, pixels (x, y image pixels; z depth, larger = nearer).
  Returns:
    [..., 3] uint16 codes.
  """
  codes = np.round(np.asarray(position_map, np.float64) * POSITION_MAP_STEPS) + POSITION_MAP_OFFSET
  return np.clip(codes, 0, 65535).astype(np.uint16)


def encode_example(record: dict, *, image_format: str = "jpeg", jpeg_quality: int = 95) -> bytes:
  """Serializes one identity's record as a `tf.train.Example` (see the module table).

  Args:
    record: numpy arrays: image [F,S,S,3] uint8; mask, occlusion [F,S,S] bool or uint8
      (0/255); landmarks [F,68,2] pixels; position_map [F,256,256,3] float pixels;
      shape [Ks]; expression [F,Ke]; albedo [Ka]; rotation [F,3] radians; translation
      [F,3] mm; focal [F] pixels; light [F,9,3]; detail [V,3] mm; tags: F strings;
      identity: int.
    image_format: "jpeg" (lossy, `jpeg_quality`) or "png" (exact) for `image`.
    jpeg_quality: JPEG quality, 0-100.
  Returns:
    The serialized `tf.train.Example`.
  Raises:
    ValueError: when shapes disagree with each other or the format is unknown.
  """
  if image_format not in IMAGE_FORMATS:
    raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
  image = np.asarray(record["image"])
  if image.dtype != np.uint8 or image.ndim != 4 or image.shape[3] != 3 or image.shape[1] != image.shape[2]:
    raise ValueError(f"image must be uint8 [F,S,S,3], got {image.dtype} {image.shape}")
  frames, size = image.shape[0], image.shape[1]
  mask, occlusion = (_to_binary_uint8(record[k]) for k in ("mask", "occlusion"))
  position_map = np.asarray(record["position_map"], np.float32)
  detail = np.asarray(record["detail"], np.float32)
  tags = list(record["tags"])
  expected = {
      "mask": (mask.shape, (frames, size, size)),
      "occlusion": (occlusion.shape, (frames, size, size)),
      "landmarks": (np.shape(record["landmarks"]), (frames, NUM_LANDMARKS, 2)),
      "position_map": (position_map.shape, (frames, POSITION_MAP_SIZE, POSITION_MAP_SIZE, 3)),
      "expression": (np.shape(record["expression"])[:1], (frames,)),
      "rotation": (np.shape(record["rotation"]), (frames, 3)),
      "translation": (np.shape(record["translation"]), (frames, 3)),
      "focal": (np.shape(record["focal"]), (frames,)),
      "light": (np.shape(record["light"]), (frames, 9, 3)),
      "key_light": (np.shape(record["key_light"]), (frames, 7)),
      "detail": (detail.shape[1:], (3,)),
      "tags": ((len(tags),), (frames,)),
  }
  for name, (got, want) in expected.items():
    if tuple(got) != tuple(want):
      raise ValueError(f"{name}: expected shape {want}, got {tuple(got)}")
  if np.ndim(record["shape"]) != 1 or np.ndim(record["albedo"]) != 1 or np.ndim(record["expression"]) != 2:
    raise ValueError("shape and albedo must be 1-D and expression [F, Ke]")

  if image_format == "jpeg":
    encoded = [tf.io.encode_jpeg(frame, quality=jpeg_quality).numpy() for frame in image]
  else:
    encoded = [tf.io.encode_png(frame).numpy() for frame in image]

  def png(arrays, compression):
    return [tf.io.encode_png(a, compression=compression).numpy() for a in arrays]

  features = {
      "identity": _int_feature(record["identity"]),
      "num_frames": _int_feature(frames),
      "image_size": _int_feature(size),
      "num_vertices": _int_feature(detail.shape[0]),
      "image_format": _bytes_feature([image_format.encode()]),
      "image": _bytes_feature(encoded),
      "masks_zlib": _bytes_feature(
          zlib.compress(np.ascontiguousarray(both).tobytes(), MASKS_ZLIB_LEVEL)
          for both in np.stack([mask, occlusion], axis=-1)),
      "landmarks": _float_feature(record["landmarks"]),
      "position_map": _bytes_feature(png(quantize_position_map(position_map),
                                         POSITION_MAP_PNG_COMPRESSION)),
      "shape": _float_feature(record["shape"]),
      "expression": _float_feature(record["expression"]),
      "albedo": _float_feature(record["albedo"]),
      "rotation": _float_feature(record["rotation"]),
      "translation": _float_feature(record["translation"]),
      "focal": _float_feature(record["focal"]),
      "light": _float_feature(record["light"]),
      "key_light": _float_feature(record["key_light"]),
      "detail": _bytes_feature([detail.astype("<f2").tobytes()]),
      "tags": _bytes_feature([t.encode() for t in tags]),
  }
  example = tf.train.Example(features=tf.train.Features(feature=features))
  return example.SerializeToString()


def parse_raw(serialized: tf.Tensor, keys=None) -> dict:
  """Parses a record without decoding images: encoded strings stay strings.

  Args:
    serialized: scalar tf.string, one serialized `tf.train.Example`.
    keys: the features to parse (default all); the sizes (`num_frames`,
      `image_size`, `num_vertices`) are always parsed, and any of `MASK_FEATURES`
      brings all three (`decode_masks` needs them).
  Returns:
    Tensors: identity, num_frames, image_size, num_vertices int64 []; image_format
    string []; image, position_map, tags string [F]; masks_zlib, mask, occlusion
    string [F] where stored, else [0] (`decode_masks`); landmarks float32 [F,68,2];
    shape [Ks]; expression [F,Ke]; albedo [Ka]; rotation, translation [F,3]; focal [F];
    light [F,9,3]; key_light [F,7]; detail string [] (`decode_detail`).
  """
  wanted = set(FEATURE_SPEC if keys is None else keys) | {"num_frames", "image_size", "num_vertices"}
  if wanted & set(MASK_FEATURES):
    wanted |= set(MASK_FEATURES)
  parsed = tf.io.parse_single_example(serialized, {k: FEATURE_SPEC[k] for k in wanted})
  frames = parsed["num_frames"]
  shapes = {"landmarks": [frames, NUM_LANDMARKS, 2], "expression": [frames, -1],
            "rotation": [frames, 3], "translation": [frames, 3], "light": [frames, 9, 3],
            "key_light": [frames, 7]}
  for key, shape in shapes.items():
    if key in parsed:
      parsed[key] = tf.reshape(parsed[key], tf.stack([tf.cast(s, tf.int32) for s in shape]))
  return parsed


def decode_image(encoded: tf.Tensor) -> tf.Tensor:
  """JPEG or PNG bytes (scalar string) -> uint8 [S, S, 3]; raises on undecodable data."""
  return tf.io.decode_image(encoded, channels=3, dtype=tf.uint8, expand_animations=False)


def decode_mask(encoded: tf.Tensor) -> tf.Tensor:
  """PNG bytes (scalar string) -> uint8 [S, S] (0/255): `mask` / `occlusion` of old records."""
  return tf.io.decode_png(encoded, channels=1, dtype=tf.uint8)[..., 0]


def decode_masks_zlib(encoded: tf.Tensor, size) -> tf.Tensor:
  """`masks_zlib` strings [T] -> uint8 [T, S, S, 2] (mask, occlusion); raises on bad data.

  A buffer that does not inflate, or inflates to other than S * S * 2 bytes, raises
  (`tf.errors.InvalidArgumentError` or `DataLossError`), as an undecodable PNG does.
  """
  raw = tf.io.decode_raw(tf.io.decode_compressed(encoded, compression_type="ZLIB"), tf.uint8)
  size = tf.cast(size, tf.int32)
  return tf.reshape(raw, tf.stack([tf.size(encoded), size, size, 2]))


def _decode_each(encoded: tf.Tensor, decode, dtype) -> tf.Tensor:
  """`decode` of every string of [T] (unrolled when T is static: cheaper than map_fn)."""
  count = encoded.shape[0]
  if count:
    return tf.stack([decode(encoded[i]) for i in range(count)])
  return tf.map_fn(decode, encoded, fn_output_signature=dtype)


def decode_masks(parsed: dict, frames: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
  """The mask and occlusion of some frames of a `parse_raw` record, from either form.

  Args:
    parsed: `parse_raw` output with `MASK_FEATURES`, `num_frames` and `image_size`.
    frames: int [T] frame indices (default all F); a static T decodes faster.
  Returns:
    (mask, occlusion) uint8 [T, S, S] (0/255), from `masks_zlib` when the record has
    it, else from the PNG `mask` / `occlusion` of records of earlier versions. Raises
    on undecodable data or frames the record does not hold.
  """
  if frames is None:
    frames = tf.range(tf.cast(parsed["num_frames"], tf.int32))

  def from_zlib():
    both = decode_masks_zlib(tf.gather(parsed["masks_zlib"], frames), parsed["image_size"])
    return both[..., 0], both[..., 1]

  def from_png():
    return tuple(_decode_each(tf.gather(parsed[key], frames), decode_mask, tf.uint8)
                 for key in ("mask", "occlusion"))

  return tf.cond(tf.size(parsed["masks_zlib"]) > 0, from_zlib, from_png)


def decode_position_map(encoded: tf.Tensor) -> tf.Tensor:
  """uint16 PNG bytes (scalar string) -> float32 [256, 256, 3] pixels (module table)."""
  codes = tf.io.decode_png(encoded, channels=3, dtype=tf.uint16)
  return (tf.cast(codes, tf.float32) - POSITION_MAP_OFFSET) / POSITION_MAP_STEPS


def decode_detail(encoded: tf.Tensor) -> tf.Tensor:
  """float16 little-endian bytes -> float32 [V, 3] mm."""
  return tf.reshape(tf.cast(tf.io.decode_raw(encoded, tf.float16, little_endian=True), tf.float32),
                    [-1, 3])


def _decode_frames(encoded: tf.Tensor, decode, dtype) -> tf.Tensor:
  return tf.map_fn(decode, encoded, fn_output_signature=dtype)


def parse_example(serialized: tf.Tensor) -> dict:
  """Parses and decodes one record (a tf graph function; raises on undecodable data).

  Args:
    serialized: scalar tf.string, one serialized `tf.train.Example`.
  Returns:
    Tensors: identity int64 []; image uint8 [F,S,S,3]; mask, occlusion uint8 [F,S,S]
    (0/255, from either stored form: `decode_masks`); landmarks float32 [F,68,2] pixels;
    position_map float32 [F,256,256,3] pixels; shape [Ks]; expression [F,Ke]; albedo
    [Ka]; rotation [F,3] radians; translation [F,3] mm; focal [F] pixels; light [F,9,3];
    key_light [F,7]; detail float32 [V,3] mm;
    tags string [F]; num_frames, image_size, num_vertices int64 [].
  """
  parsed = parse_raw(serialized)
  parsed["image"] = _decode_frames(parsed["image"], decode_image, tf.uint8)
  parsed["mask"], parsed["occlusion"] = decode_masks(parsed)
  del parsed["masks_zlib"]
  parsed["position_map"] = _decode_frames(parsed["position_map"], decode_position_map, tf.float32)
  parsed["detail"] = decode_detail(parsed["detail"])
  return parsed
