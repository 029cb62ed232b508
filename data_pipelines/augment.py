"""PRNet's training augmentation in TensorFlow, per frame, vectorised over frames.

Each frame gets one similarity transform about the image centre (rotation, scale,
translation; PRNet: rotation +-45 degrees, translation +-10% of the image size, scale
0.9-1.2), a per-channel colour scale (0.6-1.4) and, for a fraction of frames, a
synthetic occluder (a random textured ellipse or rectangle). The same transform moves
the image, the visible-face mask, the landmarks and the position map, so they stay
consistent; occluded pixels are removed from the mask.

Coordinates are continuous pixels, x right, y down, pixel (row i, column j) centred at
(j + 0.5, i + 0.5) (`jaxface.render.camera`). A transform is a [N, 2, 3] float32
matrix A with q = A @ (x, y, 1), input pixels -> output pixels.

Frames come as uint8 image [N, S, S, 3], mask [N, S, S] (255 = face surface) and
optionally occlusion [N, S, S] (255 = occluder, removed from the mask). They are packed
(XLA) into "RGBV" words, int32 [N, S, S]: the RGB bytes plus the visible-face mask as a
fourth byte, so that one resampling moves both; the mask is thresholded at 1/2
afterwards (nearest-neighbour resampling up to ties). Outside the input is zero. The
resampling, colour scale and conversion to float run as XLA-compiled stages
(`_render`: each output pixel gathers its 4 input words in one gather, then a blend
weights them by tents that are 0 outside the input); they compute the same bilinear
sampling as `tf.raw_ops.ImageProjectiveTransformV3` (`warp_images`, the reference the
tests compare against) at about a fifth of the cost of that op plus the separate
conversion passes on a CPU (benchmarks/input_bench.py). Occluders are drawn on the
input frames as a per-pixel weight map from separable row and column terms (one small
XLA function) and painted into the words as they are packed: the warp then moves them
with the face, and the mask loses what they cover, with no pass over the output
images. Position maps are not resampled (they live in UV space): their x, y
values move as points and their z (depth in pixel units) is multiplied by the
transform's scale.

All randomness is stateless: the same seed gives the same augmentation, whatever the
thread timing of the pipeline.
"""

import math

import tensorflow as tf

tf.config.set_visible_devices([], "GPU")

# PRNet's ranges (Feng et al. 2018, section 4.1); occlusion_probability is ours.
DEFAULT_RANGES = {
    "rotation_degrees": 45.0,          # uniform in [-r, r]
    "translation": 0.1,                # uniform in [-t, t] x output size, per axis
    "scale": (0.9, 1.2),               # uniform
    "color_scale": (0.6, 1.4),         # uniform, per channel
    "occlusion_probability": 0.3,      # fraction of frames given a synthetic occluder
}


def _fold(seed: tf.Tensor, salt: int) -> tf.Tensor:
  return tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), salt)


def sample_parameters(seed: tf.Tensor, num: int, *, image_size: int, rotation_degrees: float,
                      translation: float, scale, color_scale, occlusion_probability: float) -> dict:
  """Draws the augmentation parameters of `num` frames.

  Args:
    seed: [2] int stateless seed.
    num: number of frames N.
    image_size: side of the images the occluders are drawn on, pixels (the input
      frames in `augment_frames`).
    rotation_degrees, translation, scale, color_scale, occlusion_probability: the
      ranges of `DEFAULT_RANGES`.
  Returns:
    angle [N] radians; scale [N]; shift [N, 2] fraction of the output size; color
    [N, 3] channel factors; occlude [N] bool; and the occluders' shape and texture
    (`occluder_weight`): centre [N, 2] and half_axes [N, 2] pixels, theta [N]
    radians, ellipse [N] bool, frequency [N, 2] half-cycles across a half-axis,
    phase [N, 2] radians, colors [N, 2, 3] in [0, 1].
  """
  def uniform(salt, shape, low=0.0, high=1.0):
    return tf.random.stateless_uniform(shape, _fold(seed, salt), minval=low, maxval=high)

  radians = math.radians(rotation_degrees)
  return {
      "angle": uniform(1, [num], -radians, radians),
      "scale": uniform(2, [num], scale[0], scale[1]),
      "shift": uniform(3, [num, 2], -translation, translation),
      "color": uniform(4, [num, 3], color_scale[0], color_scale[1]),
      "occlude": uniform(5, [num]) < occlusion_probability,
      "centre": uniform(6, [num, 2], 0.15 * image_size, 0.85 * image_size),
      "half_axes": uniform(7, [num, 2], 0.08 * image_size, 0.25 * image_size),
      "theta": uniform(8, [num], 0.0, math.pi),
      "ellipse": uniform(9, [num]) < 0.5,
      "frequency": uniform(10, [num, 2], 1.0, 6.0),
      "phase": uniform(11, [num, 2], 0.0, 2 * math.pi),
      "colors": uniform(12, [num, 2, 3]),
  }


def similarity_matrix(angle: tf.Tensor, scale: tf.Tensor, shift: tf.Tensor, *, input_size: int,
                      output_size: int) -> tf.Tensor:
  """Similarity transforms about the image centres, input pixels -> output pixels.

  q = s R (p - S/2) + H/2 + shift * H with s = scale * H / S, R the rotation by `angle`
  (positive turns the image clockwise on screen, since y points down).

  Args:
    angle: [N] radians.
    scale: [N] zoom factor (1 = the input fills the output).
    shift: [N, 2] translation (x, y) as a fraction of the output size H.
    input_size: S, side of the input images, pixels.
    output_size: H, side of the output images, pixels.
  Returns:
    [N, 2, 3] float32 matrices A, q = A @ (p, 1).
  """
  s = tf.cast(scale, tf.float32) * (output_size / input_size)
  cos, sin = s * tf.cos(angle), s * tf.sin(angle)
  half_in, half_out = input_size / 2.0, output_size / 2.0
  tx = half_out + shift[:, 0] * output_size - (cos - sin) * half_in
  ty = half_out + shift[:, 1] * output_size - (sin + cos) * half_in
  return tf.reshape(tf.stack([cos, -sin, tx, sin, cos, ty], -1), [-1, 2, 3])


def transform_points(matrix: tf.Tensor, points: tf.Tensor) -> tf.Tensor:
  """Maps points through per-frame transforms.

  Args:
    matrix: [N, 2, 3] transforms (input -> output pixels).
    points: [N, ..., 2] (x, y) pixels.
  Returns:
    [N, ..., 2] transformed points.
  """
  flat = tf.reshape(points, [tf.shape(points)[0], -1, 2])
  moved = tf.einsum("nij,npj->npi", matrix[:, :, :2], flat) + matrix[:, None, :, 2]
  return tf.reshape(moved, tf.shape(points))


def transform_scale(matrix: tf.Tensor) -> tf.Tensor:
  """[N] isotropic scale of similarity transforms (sqrt of the determinant)."""
  return tf.sqrt(tf.abs(tf.linalg.det(matrix[:, :, :2])))


def transform_position_map(matrix: tf.Tensor, position_map: tf.Tensor) -> tf.Tensor:
  """Moves position-map values: x, y as points, z (depth, pixels) times the scale.

  Args:
    matrix: [N, 2, 3] similarity transforms (input -> output pixels).
    position_map: [N, 256, 256, 3] float32 (x, y, z) pixels.
  Returns:
    [N, 256, 256, 3] float32.
  """
  xy = transform_points(matrix, position_map[..., :2])
  z = position_map[..., 2:] * transform_scale(matrix)[:, None, None, None]
  return tf.concat([xy, z], -1)


def sampling_transforms(matrix: tf.Tensor) -> tf.Tensor:
  """[N, 2, 3] input->output pixel maps -> [N, 8] output->input array-index maps.

  The ImageProjectiveTransformV3 convention: output array indices (x = column,
  y = row) map to input array indices (a0 x + a1 y + a2, b0 x + b1 y + b2); array index
  k is the pixel centred at continuous coordinate k + 1/2.
  """
  linear, offset = matrix[:, :, :2], matrix[:, :, 2]
  inverse = tf.linalg.inv(linear)
  constant = tf.einsum("nij,nj->ni", inverse, 0.5 - offset) - 0.5
  n = tf.shape(matrix)[0]
  return tf.concat([inverse[:, 0, :], constant[:, :1], inverse[:, 1, :], constant[:, 1:],
                    tf.zeros([n, 2], tf.float32)], axis=1)


def warp_images(images: tf.Tensor, matrix: tf.Tensor, output_size: int, *,
                interpolation: str = "BILINEAR") -> tf.Tensor:
  """Resamples images with `tf.raw_ops.ImageProjectiveTransformV3`; zero outside.

  The general-purpose (and reference) warp; the pipeline uses the fused `_render`.

  Args:
    images: [N, S, S, C] any numeric dtype.
    matrix: [N, 2, 3] transforms, input -> output pixels.
    output_size: H, side of the output, pixels.
    interpolation: "BILINEAR" or "NEAREST".
  Returns:
    [N, H, H, C], the dtype of `images`.
  """
  return tf.raw_ops.ImageProjectiveTransformV3(
      images=images, transforms=sampling_transforms(matrix),
      output_shape=tf.constant([output_size, output_size], tf.int32),
      fill_value=tf.constant(0.0), interpolation=interpolation, fill_mode="CONSTANT")


@tf.function(jit_compile=True)
def pack_words(image, mask, occlusion=None, occluder=None, colors=None):
  """uint8 frames (+ synthetic occluders) -> RGBV words.

  Args:
    image: uint8 [N,S,S,3]. mask: uint8 [N,S,S] (0/255). occlusion: uint8 [N,S,S]
      (255 = the record's occluder) or None.
    occluder: float32 [N,S,S] `occluder_weight` on these frames, or None; colors
      [N,2,3] its colours in [0, 1]. Covered pixels take the occluder's colour and
      leave the visible face.
  Returns:
    int32 [N, S, S]: per pixel the bytes R, G, B and the visible face (the mask where
    neither occluder covers it) as one 32-bit word.
  """
  hidden = None if occlusion is None else occlusion >= 128
  if occluder is not None:
    covered = occluder >= 0
    first, second = colors[:, 0, None, None, :], colors[:, 1, None, None, :]
    paint = first + (second - first) * occluder[..., None]
    paint = tf.cast(tf.clip_by_value(tf.round(paint * 255.0), 0.0, 255.0), tf.uint8)
    image = tf.where(covered[..., None], paint, image)
    hidden = covered if hidden is None else hidden | covered
  visible = mask if hidden is None else tf.where(hidden, tf.zeros_like(mask), mask)
  # XLA: ~10x cheaper than TF's concat; fused with the bitcast, one pass.
  return tf.bitcast(tf.concat([image, visible[..., None]], -1), tf.int32)


def _occluder_axes(params: dict, size: int) -> tuple[tuple, tuple]:
  """The separable parts of `occluder_weight`: per-column and per-row terms.

  u = (dx cos + dy sin) / hu and v = (dy cos - dx sin) / hv are a column term plus a row
  term, and each grating sin(a + b) = sin a cos b + cos a sin b, a along x, b along y.

  Returns:
    (columns, rows): each a tuple of six [N, H] float32 arrays, (u, v, sin, cos of
    grating 0, sin, cos of grating 1) along x and (u, v, cos, sin of grating 0, cos,
    sin of grating 1) along y.
  """
  grid = tf.range(size, dtype=tf.float32) + 0.5  # pixel centres
  cx, cy = params["centre"][:, 0, None], params["centre"][:, 1, None]
  cos, sin = tf.cos(params["theta"])[:, None], tf.sin(params["theta"])[:, None]
  hu, hv = params["half_axes"][:, 0, None], params["half_axes"][:, 1, None]
  dx, dy = grid[None, :] - cx, grid[None, :] - cy          # [N, H] along x and along y
  columns, rows = [dx * cos / hu, -dx * sin / hv], [dy * sin / hu, dy * cos / hv]
  for k, (along_x, along_y) in enumerate([(cos / hu, sin / hu), (-sin / hv, cos / hv)]):
    f = math.pi * params["frequency"][:, k, None]   # sin(pi f (a dx + b dy) + phase)
    a, b = f * along_x * dx, f * along_y * dy + params["phase"][:, k, None]
    columns += [tf.sin(a), tf.cos(a)]
    rows += [tf.cos(b), tf.sin(b)]
  return tuple(columns), tuple(rows)


@tf.function(jit_compile=True)
def _occluder_weight(params: dict, columns: tuple, rows: tuple) -> tf.Tensor:
  """`occluder_weight` from its `_occluder_axes` (computed apart: fused here, XLA would
  recompute their sines at every pixel); a few multiply-adds per pixel."""
  col = [c[:, None, :] for c in columns]   # [N, 1, H]: varies along x
  row = [r[:, :, None] for r in rows]      # [N, H, 1]: varies along y
  u, v = col[0] + row[0], row[1] + col[1]
  inside = tf.where(params["ellipse"][:, None, None], u * u + v * v <= 1.0,
                    tf.maximum(tf.abs(u), tf.abs(v)) <= 1.0)
  weight = 0.5 + 0.25 * (col[2] * row[2] + col[3] * row[3]) + 0.25 * (col[4] * row[4] + col[5] * row[5])
  return tf.where(inside & params["occlude"][:, None, None], weight, -1.0)


def occluder_weight(params: dict, size: int) -> tf.Tensor:
  """The synthetic occluders of `sample_parameters`, drawn on a size x size image.

  A frame's occluder is an ellipse or rectangle (centre in the middle 70% of the
  image, half-axes 8-25% of its side, any orientation) filled with a texture: two random
  colours mixed by two crossed sinusoidal gratings along the shape's axes (plaid,
  stripes or blotches depending on the frequencies). Frames with `occlude` False are
  not covered. The shape and gratings are separable (`_occluder_axes`), so each pixel
  costs a few multiply-adds.

  Args:
    params: `sample_parameters` output (N frames).
    size: H, side of the image, pixels.
  Returns:
    float32 [N, H, H]: where the occluder covers the pixel, the weight w in [0, 1] of
    its colour colors[1] * w + colors[0] * (1 - w); -1 elsewhere.
  """
  return _occluder_weight(params, *_occluder_axes(params, size))


def _source_taps(transforms, input_size: int, output_size: int, interpolation: str):
  """Per output pixel: its first input tap and the taps' weights.

  The taps are the 2x2 input pixels from (x0, y0) (bilinear) or the one nearest pixel;
  (x0, y0) is clamped into the image and each tap weighted by the tent max(0, 1 - |d|)
  of its distance d along each axis, so a tap outside the image, or not a true
  neighbour after clamping, weighs 0: the same as ImageProjectiveTransformV3's bilinear
  sampling with a constant 0 fill.

  Args:
    transforms: [N, 8] output->input index maps (`sampling_transforms`).
    input_size: S.
    output_size: H.
    interpolation: "bilinear" or "nearest".
  Returns:
    (x0, y0 int32 [N,H,H]; wx, wy: tuples of float32 [N,H,H] weights of columns x0,
    x0 + 1 and rows y0, y0 + 1; one each for nearest).
  """
  r = tf.range(output_size, dtype=tf.float32)
  t = transforms[:, :, None, None]
  # Beyond [-1, S] every tap weighs 0: clipping is exact.
  px = tf.clip_by_value(t[:, 0] * r[None, None, :] + t[:, 1] * r[None, :, None] + t[:, 2],
                        -1.0, float(input_size))
  py = tf.clip_by_value(t[:, 3] * r[None, None, :] + t[:, 4] * r[None, :, None] + t[:, 5],
                        -1.0, float(input_size))
  if interpolation == "nearest":
    x, y = tf.floor(px + 0.5), tf.floor(py + 0.5)
    x0, y0 = tf.clip_by_value(x, 0.0, input_size - 1.0), tf.clip_by_value(y, 0.0, input_size - 1.0)
    return (tf.cast(x0, tf.int32), tf.cast(y0, tf.int32),
            (tf.cast(x == x0, tf.float32),), (tf.cast(y == y0, tf.float32),))
  x0 = tf.clip_by_value(tf.floor(px), 0.0, input_size - 2.0)
  y0 = tf.clip_by_value(tf.floor(py), 0.0, input_size - 2.0)

  def tents(p, p0):
    return tuple(tf.maximum(1.0 - tf.abs(p - p0 - k), 0.0) for k in (0.0, 1.0))

  return tf.cast(x0, tf.int32), tf.cast(y0, tf.int32), tents(px, x0), tents(py, y0)


@tf.function(jit_compile=True)
def _gather_taps(words, transforms, output_size, interpolation):
  """words int32 [N,S,S] -> int32 [N,H,H,K]: each output pixel's K input taps (4 or 1)."""
  n, size = words.shape[0], words.shape[1]
  x0, y0, _, _ = _source_taps(transforms, size, output_size, interpolation)
  frame = tf.range(n, dtype=tf.int32)[:, None, None] * (size * size)
  index = frame + y0 * size + x0
  steps = tf.constant([0] if interpolation == "nearest" else [0, 1, size, size + 1])
  # One gather of all K taps: about half the cost of K gathers.
  return tf.gather(tf.reshape(words, [-1]), index[..., None] + steps)


@tf.function(jit_compile=True)
def _blend(taps, transforms, input_size, color):
  """Blends packed taps, colour scale, conversion to float.

  Args:
    taps: int32 [N,H,H,K] (`_gather_taps`).
    transforms: [N, 8] (`sampling_transforms`): the weights are recomputed here, which
      costs less than reading them from memory.
    input_size: S.
    color: [N, 3] channel factors.
  Returns:
    (image float32 [N,H,H,3] in [0, 1], visible mask float32 [N,H,H] 0/1).
  """
  interpolation = "nearest" if taps.shape[-1] == 1 else "bilinear"
  _, _, wx, wy = _source_taps(transforms, input_size, taps.shape[1], interpolation)
  values = [tf.cast(tf.bitcast(taps[..., k], tf.uint8), tf.float32) for k in range(taps.shape[-1])]
  wx, wy = [w[..., None] for w in wx], [w[..., None] for w in wy]  # [N,H,H,1]
  if len(values) == 4:
    rgbv = ((values[0] * wx[0] + values[1] * wx[1]) * wy[0]
            + (values[2] * wx[0] + values[3] * wx[1]) * wy[1])
  else:
    rgbv = values[0] * (wx[0] * wy[0])
  image = tf.minimum(rgbv[..., :3] * (color[:, None, None, :] / 255.0), 1.0)
  return image, tf.cast(rgbv[..., 3] >= 127.5, tf.float32)


def _render(words, transforms, color, output_size, interpolation):
  """Warp of RGBV words, colour scale, conversion to float: two XLA stages.

  Each output pixel gathers its input pixels as packed 32-bit words (4 for bilinear,
  1 for nearest), then a second stage unpacks the bytes and blends them with weights
  that are 0 for taps outside the input (constant 0 fill, as ImageProjectiveTransformV3).
  The stages are separate XLA functions on purpose: fused into one loop with the gather,
  the unpacking and blending do not vectorise and the whole costs twice as much.

  Args:
    words: int32 [N, S, S] (`pack_words`).
    transforms: [N, 8] output->input index maps (`sampling_transforms`).
    color: [N, 3] channel factors.
    output_size: H.
    interpolation: "bilinear" or "nearest".
  Returns:
    (image float32 [N, H, H, 3] in [0, 1], mask float32 [N, H, H] 0/1).
  """
  if interpolation not in ("bilinear", "nearest"):
    raise ValueError(f"interpolation must be 'bilinear' or 'nearest', got {interpolation!r}")
  taps = _gather_taps(words, transforms, output_size, interpolation)
  return _blend(taps, transforms, words.shape[1], color)


def _shrink_first(words: tf.Tensor, matrix: tf.Tensor, output_size: int):
  """Antialiases by area-resizing to H when shrinking by 2x or more; adjusts the map."""
  input_size = words.shape[1]
  if input_size < 2 * output_size:
    return words, matrix
  # Area resizing (box filter) scales continuous coordinates by exactly H / S.
  resized = tf.image.resize(tf.bitcast(words, tf.uint8), [output_size, output_size], method="area")
  words = tf.bitcast(tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8), tf.int32)
  factor = input_size / output_size
  return words, tf.concat([matrix[:, :, :2] * factor, matrix[:, :, 2:]], -1)


def _frames_out(frames: dict, matrix: tf.Tensor, image: tf.Tensor, mask: tf.Tensor) -> dict:
  out = {"image": image, "mask": mask, "matrix": matrix,
         "landmarks": transform_points(matrix, frames["landmarks"])}
  if "position_map" in frames:
    out["position_map"] = transform_position_map(matrix, frames["position_map"])
  return out


def augment_frames(frames: dict, seed: tf.Tensor, *, output_size: int, ranges: dict | None = None,
                   interpolation: str = "bilinear") -> dict:
  """Augments N frames (PRNet): similarity warp, colour scale, synthetic occluders.

  Args:
    frames: image uint8 [N,S,S,3]; mask uint8 [N,S,S] (255 = face surface); optional
      occlusion uint8 [N,S,S] (255 = occluder, removed from the mask); landmarks
      float32 [N,68,2] pixels; optional position_map float32 [N,256,256,3] pixels.
    seed: [2] int stateless seed.
    output_size: H, side of the output images, pixels.
    ranges: overrides of `DEFAULT_RANGES`.
    interpolation: "bilinear" (as PRNet's skimage warp) or "nearest" (about 3x cheaper
      on a CPU, jagged edges).
  Returns:
    image float32 [N,H,H,3] in [0,1]; mask float32 [N,H,H] 0/1 (visible face and not
    under a synthetic occluder); landmarks [N,68,2] and position_map [N,256,256,3]
    moved by the frame's transform; matrix [N,2,3] the transforms used.
  """
  ranges = {**DEFAULT_RANGES, **(ranges or {})}
  num, input_size = frames["image"].shape[0], frames["image"].shape[1]
  if num is None or input_size is None:
    raise ValueError("augment_frames needs static frame count and size")
  # Occluders are drawn on the input frames (one pass with the packing), so they move
  # with the face: a similarity-warped textured ellipse is still one.
  params = sample_parameters(seed, num, image_size=input_size, **ranges)
  matrix = similarity_matrix(params["angle"], params["scale"], params["shift"],
                             input_size=input_size, output_size=output_size)
  words = pack_words(frames["image"], frames["mask"], frames.get("occlusion"),
                     occluder_weight(params, input_size), params["colors"])
  words, sampling = _shrink_first(words, matrix, output_size)
  image, mask = _render(words, sampling_transforms(sampling), params["color"], output_size,
                        interpolation)
  return _frames_out(frames, matrix, image, mask)


def resize_frames(frames: dict, *, output_size: int) -> dict:
  """The non-augmented path: converts frames, resizing from S to H when they differ.

  Args:
    frames: as `augment_frames`.
    output_size: H, side of the output images, pixels.
  Returns:
    As `augment_frames` (no colour change, no occluders; matrix = scale H / S).
  """
  num, input_size = frames["image"].shape[0], frames["image"].shape[1]
  matrix = similarity_matrix(tf.zeros([num]), tf.ones([num]), tf.zeros([num, 2]),
                             input_size=input_size, output_size=output_size)
  if input_size == output_size:
    image, mask = _convert(frames["image"], frames["mask"], frames.get("occlusion"))
  else:
    words = pack_words(frames["image"], frames["mask"], frames.get("occlusion"))
    words, sampling = _shrink_first(words, matrix, output_size)
    image, mask = _render(words, sampling_transforms(sampling), tf.ones([num, 3]), output_size,
                          "bilinear")
  return _frames_out(frames, matrix, image, mask)


@tf.function(jit_compile=True)
def _convert(image, mask, occlusion=None):
  """uint8 frames -> (image float32 [N,S,S,3] in [0,1], visible mask float32 0/1)."""
  visible = mask >= 128
  if occlusion is not None:
    visible &= occlusion < 128
  return tf.cast(image, tf.float32) * (1.0 / 255.0), tf.cast(visible, tf.float32)
