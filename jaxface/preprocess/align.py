"""Similarity alignment of a face to a square crop, and the detect-and-align pipeline.

Coordinates are pixels, x right, y down, pixel (row i, column j) centred at
(j + 0.5, i + 0.5) in both the original image and the crop (`jaxface.render.camera`).
A `transform` is a [2, 3] float64 affine matrix T with crop = T @ (x, y, 1).

Alignment rule (`align_crop`), with 68 iBUG landmarks:
  1. Rotation: the line from the image-left eye centre (mean of points 36-41) to the
     image-right eye centre (42-47) becomes horizontal.
  2. Face box: in that rotated frame, the bounding box of the jaw (0-16) and brows
     (17-26); its side S = max(width, height).
  3. Scale: S maps to `face_fraction` x size pixels (default 0.72, the 1/sqrt(2) of
     3DDFA's crops rounded up; Deng et al.'s 224 crops are similar).
  4. Centre: the crop centre is the face-box centre moved up (towards the brows) by
     `lift` x S (default 0.06). For a typical face (height ~ S) the brows then sit at
     ~0.18 x size from the top, leaving room for the forehead that `face_mask` adds,
     the chin at ~0.90 x size, and the eyes at ~0.3 x size.
  The eyes are level and the face sits slightly above the centre, as in Deng et al.
  and 3DDFA crops; the rule uses the landmarks only (not the detector box), so crops
  do not depend on which detector found the face.
"""

import dataclasses

import numpy as np

from jaxface.preprocess import detect
from jaxface.preprocess.detect import FaceBox


@dataclasses.dataclass(frozen=True, eq=False)  # arrays inside: compare fields, not crops
class Crop:
  """An aligned face crop and how it relates to the original image.

  Attributes:
    image: [size, size, 3] float32 RGB in [0, 1]; pixels outside the original are 0.
    landmarks: [68, 2] float32 iBUG landmarks in crop pixels.
    transform: [2, 3] float64 affine map, original-image pixels -> crop pixels.
    box: the detection box in original-image pixels.
    source: where the image came from (a file name), for messages.
  """
  image: np.ndarray
  landmarks: np.ndarray
  transform: np.ndarray
  box: FaceBox
  source: str = ""


def apply_transform(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
  """Maps points through a [2, 3] affine transform.

  Args:
    transform: [2, 3] affine matrix.
    points: [..., 2] (x, y) pixel coordinates.
  Returns:
    [..., 2] transformed points, float64.
  """
  points = np.asarray(points, np.float64)
  return points @ transform[:, :2].T + transform[:, 2]


def invert_transform(transform: np.ndarray) -> np.ndarray:
  """The inverse of a [2, 3] affine transform (crop pixels -> original pixels).

  Args:
    transform: [2, 3] invertible affine matrix.
  Returns:
    [2, 3] float64 matrix U with apply_transform(U, apply_transform(T, p)) == p.
  """
  linear = np.linalg.inv(np.asarray(transform, np.float64)[:, :2])
  return np.concatenate([linear, -linear @ transform[:, 2:3]], axis=1)


def alignment_transform(landmarks: np.ndarray, size: int, *, face_fraction: float = 0.72,
                        lift: float = 0.06) -> np.ndarray:
  """The similarity transform of the alignment rule in the module docstring.

  Args:
    landmarks: [68, 2] iBUG landmarks in original-image pixels.
    size: side of the square crop, pixels.
    face_fraction: the face box's side as a fraction of the crop side.
    lift: how far above the face-box centre the crop centre lies, in face-box sides.
  Returns:
    [2, 3] float64 transform, original-image pixels -> crop pixels.
  """
  points = np.asarray(landmarks, np.float64)
  eye_vector = points[detect.EYE_IMAGE_RIGHT].mean(0) - points[detect.EYE_IMAGE_LEFT].mean(0)
  angle = np.arctan2(eye_vector[1], eye_vector[0])
  cos, sin = np.cos(angle), np.sin(angle)
  rotation = np.array([[cos, sin], [-sin, cos]])  # turns the eye line to +x
  outline = points[np.concatenate([detect.JAW, detect.BROWS])] @ rotation.T
  low, high = outline.min(0), outline.max(0)
  side = float(np.max(high - low))
  if not side > 0:
    raise ValueError("degenerate landmarks: the jaw and brows span no area")
  centre = (low + high) / 2 - np.array([0.0, lift * side])
  scale = face_fraction * size / side
  linear = scale * rotation
  return np.concatenate([linear, (size / 2 - scale * centre)[:, None]], axis=1)


def _block_mean(image: np.ndarray, factor: int) -> np.ndarray:
  """Averages factor x factor blocks (trailing rows/columns that do not fill one dropped)."""
  if factor == 1:
    return image
  height, width = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
  blocks = image[:height, :width].reshape(height // factor, factor, width // factor, factor, 3)
  return blocks.mean(axis=(1, 3), dtype=np.float32)


def _bilinear(image: np.ndarray, points: np.ndarray) -> np.ndarray:
  """Samples [H, W, 3] at continuous (x, y) points [N, 2]; 0 outside the image rectangle."""
  height, width = image.shape[:2]
  x, y = points[:, 0] - 0.5, points[:, 1] - 0.5  # array coordinates of pixel centres
  x0, y0 = np.floor(x), np.floor(y)
  fx, fy = (x - x0)[:, None], (y - y0)[:, None]
  x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
  xa, xb = np.clip(x0, 0, width - 1), np.clip(x0 + 1, 0, width - 1)
  ya, yb = np.clip(y0, 0, height - 1), np.clip(y0 + 1, 0, height - 1)
  top = image[ya, xa] * (1 - fx) + image[ya, xb] * fx
  bottom = image[yb, xa] * (1 - fx) + image[yb, xb] * fx
  values = top * (1 - fy) + bottom * fy
  inside = ((points[:, 0] >= 0) & (points[:, 0] <= width)
            & (points[:, 1] >= 0) & (points[:, 1] <= height))
  return np.where(inside[:, None], values, 0.0).astype(np.float32)


def warp_crop(image: np.ndarray, transform: np.ndarray, size: int) -> np.ndarray:
  """Resamples `image` into a size x size crop through `transform`, bilinearly.

  When the crop shrinks the image by 2x or more, the region it covers is first
  averaged over k x k blocks (k = floor(1 / scale)) so that bilinear sampling does not
  alias; only that region is read, whatever the image size.

  Args:
    image: [H, W, 3] float RGB in [0, 1].
    transform: [2, 3] affine, original pixels -> crop pixels.
    size: crop side, pixels.
  Returns:
    [size, size, 3] float32; crop pixels whose centre maps outside the image are 0.
  """
  image = np.asarray(image, np.float32)
  inverse = invert_transform(transform)
  corners = apply_transform(inverse, np.array([[0, 0], [size, 0], [0, size], [size, size]]))
  scale = np.sqrt(abs(np.linalg.det(transform[:, :2])))
  factor = max(1, int(np.floor(1.0 / scale)))
  height, width = image.shape[:2]
  x0, y0 = (int(np.clip(np.floor(v) - factor - 1, 0, n)) for v, n in
            zip(corners.min(0), (width, height)))
  x1, y1 = (int(np.clip(np.ceil(v) + factor + 1, 0, n)) for v, n in
            zip(corners.max(0), (width, height)))
  region = _block_mean(image[y0:y1, x0:x1], factor)
  if region.shape[0] == 0 or region.shape[1] == 0:  # the crop lies outside the image
    return np.zeros((size, size, 3), np.float32)
  grid = np.stack(np.meshgrid(np.arange(size), np.arange(size)), -1).reshape(-1, 2) + 0.5
  points = (apply_transform(inverse, grid) - (x0, y0)) / factor
  return _bilinear(region, points).reshape(size, size, 3)


def _box_of(landmarks: np.ndarray) -> FaceBox:
  low, high = np.min(landmarks, 0), np.max(landmarks, 0)
  return FaceBox(float(low[0]), float(low[1]), float(high[0]), float(high[1]), 0.0,
                 "landmarks")


def align_crop(image: np.ndarray, landmarks: np.ndarray, *, size: int = 224,
               box: FaceBox | None = None, source: str = "", face_fraction: float = 0.72,
               lift: float = 0.06) -> Crop:
  """Rotates, scales and crops the face to size x size by the module's alignment rule.

  Args:
    image: [H, W, 3] float RGB in [0, 1].
    landmarks: [68, 2] iBUG landmarks in `image` pixels (`landmarks_68`).
    size: crop side, pixels.
    box: the detection box to record in the crop; default the landmarks' bounding box.
    source: the image's name, recorded in the crop.
    face_fraction, lift: see `alignment_transform`.
  Returns:
    A `Crop`: image [size, size, 3], landmarks [68, 2] in crop pixels, the [2, 3]
    transform original -> crop, the box and the source.
  """
  landmarks = np.asarray(landmarks, np.float64)
  if landmarks.shape != (68, 2):
    raise ValueError(f"expected [68, 2] landmarks, got shape {landmarks.shape}")
  transform = alignment_transform(landmarks, size, face_fraction=face_fraction, lift=lift)
  return Crop(image=warp_crop(image, transform, size),
              landmarks=apply_transform(transform, landmarks).astype(np.float32),
              transform=transform, box=box if box is not None else _box_of(landmarks),
              source=source)


def detect_and_align(image: np.ndarray, *, size: int = 224, all_faces: bool = False,
                     source: str = "", **detect_options) -> list[Crop]:
  """Detects faces, finds their 68 landmarks and returns aligned crops.

  Args:
    image: [H, W, 3] RGB, float in [0, 1] (`load_image`).
    size: crop side, pixels.
    all_faces: every detected face (largest first) instead of only the largest.
    source: the image's name, for messages and the crops.
    **detect_options: keyword arguments of `detect_faces` (upsample, cnn_fallback, ...).
  Returns:
    A list of `Crop`s (one unless `all_faces`), largest face first.
  Raises:
    FaceNotFoundError: "{source}: no face found".
  """
  image = np.asarray(image)
  pixels = detect.to_uint8(image)  # once, for the detector and the shape predictor
  boxes = detect.detect_faces(pixels, **detect_options)
  if not boxes:
    raise detect.FaceNotFoundError(f"{source or '<image>'}: no face found")
  if image.dtype == np.uint8:
    image = image.astype(np.float32) / 255.0
  return [align_crop(image, detect.landmarks_68(pixels, box), size=size, box=box,
                     source=source) for box in (boxes if all_faces else boxes[:1])]
