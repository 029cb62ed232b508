"""Procedural appearance of synthetic faces: out-of-span detail, skin, backgrounds, occluders.

All numpy. Images are float32 RGB in [0, 1], [S, S, 3], in the same (display) space
as the renderer's colours and the photos the fitting sees (no gamma: the fitting's
photometric model has none either); pixel (row i, col j) is centred at
(j + 0.5, i + 0.5) as in `jaxface.render`.
"""

import functools
import pathlib

import numpy as np
import scipy.spatial
from PIL import Image, ImageDraw

# Non-face photos bundled with scikit-image (astronaut, camera and lfw_subset show
# people and are left out).
BACKGROUND_PHOTOS = ("brick.png", "coffee.png", "chelsea.png", "coins.png", "grass.png",
                     "gravel.png", "hubble_deep_field.jpg", "ihc.png", "motorcycle_left.png",
                     "rocket.jpg", "moon.png", "page.png", "text.png", "retina.jpg",
                     "chessboard_RGB.png", "color.png")


def _smooth_field(rng: np.random.Generator, points: np.ndarray, count: int,
                  radius: tuple[float, float]) -> np.ndarray:
  """[V] sum of `count` Gaussian bumps centred on random points, N(0, 1) amplitudes.

  Args:
    points: [V, 3] mm. radius: range of the bumps' standard deviations, mm.
  """
  points = np.asarray(points, np.float32)
  centres = points[rng.integers(0, len(points), count)]
  radii = rng.uniform(*radius, count)
  amplitudes = rng.normal(0.0, 1.0, count)
  # |p - c|^2 = |p|^2 + |c|^2 - 2 p.c for all [V, count] pairs, without BLAS (whose
  # threads stall on a busy machine) and without a [V, count, 3] temporary.
  squared = np.sum(points ** 2, axis=1, keepdims=True) + np.sum(centres ** 2, axis=1)
  for axis in range(3):
    squared -= 2.0 * points[:, axis:axis + 1] * centres[:, axis]
  scale = (-0.5 / radii ** 2).astype(np.float32)
  bumps = np.exp(np.maximum(squared, 0.0) * scale)
  return np.einsum("vk,k->v", bumps, amplitudes.astype(np.float32))


def span_basis(shape_basis: np.ndarray) -> np.ndarray:
  """[3V, Ks] float32 orthonormal basis (QR in float64) of the identity basis [V, 3, Ks]."""
  q, _ = np.linalg.qr(shape_basis.reshape(-1, shape_basis.shape[-1]).astype(np.float64))
  return q.astype(np.float32)


def out_of_span_detail(rng: np.random.Generator, mean: np.ndarray, normals: np.ndarray,
                       span: np.ndarray, rms_mm: float) -> np.ndarray:
  """[V, 3] smooth displacement along the normals, orthogonal to the identity basis.

  Gaussian bumps (15-35 mm) along the mean shape's normals; the least-squares
  component in span(shape_basis) is removed, so no identity coefficients can
  represent it: the model-span oracle's error on such a face is this displacement.

  Args:
    mean: [V, 3] mean shape, mm; normals: [V, 3] its unit vertex normals
      (`jaxface.geometry.vertex_normals`).
    span: [3V, Ks] orthonormal basis of the identity span (`span_basis`).
    rms_mm: RMS of the returned displacement over all vertices.
  """
  field = _smooth_field(rng, mean, 30, (15.0, 35.0))
  displacement = (field[:, None] * normals).reshape(-1).astype(np.float32)
  # Least-squares removal of the span component (einsum: no BLAS threads).
  in_span = np.einsum("nk,k->n", span, np.einsum("nk,n->k", span, displacement))
  displacement = (displacement - in_span).reshape(-1, 3)
  rms = np.sqrt(np.mean(np.sum(displacement.astype(np.float64) ** 2, axis=1)))
  return (displacement * (rms_mm / max(rms, 1e-9))).astype(np.float32)


# Eye colours (reflectance): sclera, pupil, and iris choices (dark to light brown,
# hazel, green, grey-blue).
SCLERA = np.array([0.78, 0.74, 0.70])
PUPIL = np.array([0.03, 0.03, 0.03])
IRISES = np.array([[0.10, 0.06, 0.03], [0.20, 0.11, 0.05], [0.28, 0.20, 0.09],
                   [0.18, 0.22, 0.12], [0.22, 0.28, 0.33]])
IRIS_RADIUS_MM, PUPIL_RADIUS_MM, LASH_MM = 5.5, 2.0, 1.3
EYE_OUTLINES = (tuple(range(36, 42)), tuple(range(42, 48)))  # iBUG 68, each eye's 6 points
UPPER_LIDS = ((36, 37, 38, 39), (42, 43, 44, 45))


def _segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """[N] distance of 2D points [N, 2] to the segment a-b."""
  t = np.clip(((points - a) @ (b - a)) / max(float((b - a) @ (b - a)), 1e-12), 0.0, 1.0)
  return np.linalg.norm(points - (a + t[:, None] * (b - a)), axis=1)


def eye_regions(mean: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
  """[V, 4] per-vertex eye weights in {0, 1}: sclera, iris, pupil, eyelash line.

  BFM-style models have no eyes of their own (skin-coloured lids over the eyeballs);
  drawing sclera, iris and lashes where the 68 landmarks outline the eyes (in the
  frontal x-y plane of the mean shape) gives renders the dark eye regions that real
  photos have and face detectors rely on.

  Args:
    mean: [V, 3] mean shape, mm (+z towards the camera). landmarks: [68, 3] its landmarks.
  """
  xy, out = mean[:, :2], np.zeros((len(mean), 4), np.float32)
  front = mean[:, 2] > np.min(landmarks[36:48, 2]) - 5.0  # not the back of the head
  for outline, lid in zip(EYE_OUTLINES, UPPER_LIDS):
    polygon = landmarks[list(outline), :2]  # convex: inside = in its triangulation
    eye = (scipy.spatial.Delaunay(polygon).find_simplex(xy) >= 0) & front
    radius = np.linalg.norm(xy - polygon.mean(0), axis=1)
    out[:, 1] = np.maximum(out[:, 1], eye & (radius < IRIS_RADIUS_MM))
    out[:, 2] = np.maximum(out[:, 2], eye & (radius < PUPIL_RADIUS_MM))
    out[:, 0] = np.maximum(out[:, 0], eye & (radius >= IRIS_RADIUS_MM))
    lash = np.min([_segment_distance(xy, landmarks[i, :2], landmarks[j, :2])
                   for i, j in zip(lid[:-1], lid[1:])], axis=0) < LASH_MM
    out[:, 3] = np.maximum(out[:, 3], lash & front)
  return out


def skin_albedo(rng: np.random.Generator, base_albedo: np.ndarray,
                mean: np.ndarray, eyes: np.ndarray | None = None) -> np.ndarray:
  """[V, 3] per-vertex reflectance: a skin tone from light to dark, with blotches, eyes.

  Args:
    base_albedo: [V, 3] the model's albedo for the identity's coefficients (skin with
      lips and brows).
    mean: [V, 3] vertices, mm (where the smooth colour variation lives).
    eyes: [V, 4] `eye_regions` weights (None: no eyes drawn); the iris colour is drawn.
  """
  tone = rng.uniform(0.35, 1.2)  # very dark to very light skin, relative to the mean
  warmth = 1.0 + rng.uniform(-0.08, 0.08) * np.array([1.0, 0.0, -1.0])
  blotches = _smooth_field(rng, mean, 12, (6.0, 20.0))[:, None] * np.array([0.03, -0.01, -0.01])
  albedo = base_albedo * tone * warmth + blotches * tone
  if eyes is not None:
    iris = IRISES[rng.integers(len(IRISES))] * rng.uniform(0.8, 1.2)
    for weight, colour in zip(eyes.T, (SCLERA, iris, PUPIL)):
      albedo = albedo * (1 - weight[:, None]) + colour * weight[:, None]
    albedo = albedo * (1 - 0.75 * eyes[:, 3:4])  # lashes / eyeliner along the upper lids
  return np.clip(albedo, 0.01, 1.0).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
  """[H, W, 3] uint8 RGB of a bundled photo (decoded once per process)."""
  import skimage.data  # pylint: disable=import-outside-toplevel
  path = pathlib.Path(skimage.data.__file__).parent / name
  with Image.open(path) as image:
    return np.asarray(image.convert("RGB"))


def sample_background(rng: np.random.Generator) -> dict:
  """A background recipe: a random crop of a bundled photo, or a procedural texture."""
  kind = rng.choice(["photo", "photo", "gradient", "noise", "stripes"])
  return {"kind": str(kind), "photo": str(rng.choice(BACKGROUND_PHOTOS)),
          "seed": int(rng.integers(0, 2 ** 31)), "colours": rng.uniform(0.02, 0.8, (2, 3))}


def _resize(image: np.ndarray, size: int) -> np.ndarray:
  """[h, w, 3] uint8 or float in [0, 1] -> [S, S, 3] float32 in [0, 1] (bilinear)."""
  if image.dtype != np.uint8:
    image = np.clip(image * 255, 0, 255).astype(np.uint8)
  resized = Image.fromarray(np.ascontiguousarray(image)).resize((size, size), Image.BILINEAR)
  return np.asarray(resized, np.float32) * np.float32(1 / 255)


def background(recipe: dict, size: int) -> np.ndarray:
  """[S, S, 3] background image from `sample_background`'s recipe."""
  rng = np.random.default_rng(recipe["seed"])
  a, b = recipe["colours"]
  if recipe["kind"] == "photo":
    photo = _photo(recipe["photo"])
    h, w = photo.shape[:2]
    side = int(rng.uniform(0.3, 1.0) * min(h, w))
    top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    crop = photo[top:top + side, left:left + side]
    if rng.uniform() < 0.5:
      crop = crop[:, ::-1]
    return _resize(crop, size)
  y, x = np.mgrid[0:size, 0:size] / size
  if recipe["kind"] == "gradient":
    angle = rng.uniform(0, 2 * np.pi)
    t = np.clip(0.5 + (np.cos(angle) * (x - 0.5) + np.sin(angle) * (y - 0.5)), 0, 1)[..., None]
    return (a * (1 - t) + b * t).astype(np.float32)
  if recipe["kind"] == "noise":
    coarse = rng.uniform(0, 1, (8, 8, 1))
    t = _resize(np.repeat(coarse, 3, axis=-1), size)[..., :1]
    return (a * (1 - t) + b * t + rng.normal(0, 0.02, (size, size, 3))).clip(0, 1).astype(np.float32)
  period = rng.uniform(0.05, 0.3)
  angle = rng.uniform(0, np.pi)
  t = (np.sin((np.cos(angle) * x + np.sin(angle) * y) * 2 * np.pi / period) > 0)[..., None]
  return np.where(t, a, b).astype(np.float32)


def sample_occluder(rng: np.random.Generator) -> dict:
  """An occluder recipe: a hand, sunglasses, or an object (a textured bar)."""
  return {"kind": str(rng.choice(["hand", "sunglasses", "object"])),
          "seed": int(rng.integers(0, 2 ** 31)),
          "tone": float(rng.uniform(0.35, 1.2)), "colour": rng.uniform(0.02, 0.9, 3)}


def _ellipse(draw, centre, radii, fill):
  (cx, cy), (rx, ry) = centre, radii
  draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=fill)


def draw_occluder(recipe: dict, landmarks: np.ndarray, size: int,
                  skin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Paints an occluder over a face.

  Args:
    recipe: from `sample_occluder`.
    landmarks: [68, 2] the face's projected landmarks (pixels), where to put it.
    size: S. skin: [3] a skin colour for hands.
  Returns:
    (colour [S, S, 3], coverage [S, S] float32 in {0, 1}).
  """
  rng = np.random.default_rng(recipe["seed"])
  supersample = 2  # draw at 2x and box-filter: soft occluder edges
  big = size * supersample
  canvas = Image.new("L", (big, big), 0)
  draw = ImageDraw.Draw(canvas)
  points = landmarks * supersample
  eye_distance = np.linalg.norm(points[45] - points[36])
  kind = recipe["kind"]
  if kind == "sunglasses":
    for eye in (points[36:42].mean(0), points[42:48].mean(0)):
      _ellipse(draw, eye, (0.33 * eye_distance, 0.22 * eye_distance), 255)
    draw.line([tuple(points[39]), tuple(points[42])], fill=255, width=max(2, int(0.05 * eye_distance)))
    colour = np.asarray(recipe["colour"]) * 0.15
  elif kind == "hand":
    target = points[rng.choice([33, 57, 30, 2, 14])]
    angle = rng.uniform(0, 2 * np.pi)
    palm = target + rng.uniform(0.2, 0.6) * eye_distance * np.array([np.cos(angle), np.sin(angle)])
    _ellipse(draw, palm, (0.45 * eye_distance, 0.55 * eye_distance), 255)
    for k in range(4):  # fingers fanning out from the palm
      phi = angle + np.pi + (k - 1.5) * 0.3
      tip = palm + 1.1 * eye_distance * np.array([np.cos(phi), np.sin(phi)])
      draw.line([tuple(palm), tuple(tip)], fill=255, width=max(2, int(0.16 * eye_distance)))
      _ellipse(draw, tip, (0.08 * eye_distance, 0.08 * eye_distance), 255)
    colour = np.asarray(skin) * recipe["tone"]
  else:
    centre = points[rng.integers(0, 68)]
    angle = rng.uniform(0, np.pi)
    half = np.array([rng.uniform(0.6, 1.4), rng.uniform(0.15, 0.35)]) * eye_distance
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    corners = [centre + rot @ (half * s) for s in ([-1, -1], [1, -1], [1, 1], [-1, 1])]
    draw.polygon([tuple(c) for c in corners], fill=255)
    colour = np.asarray(recipe["colour"])
  coverage = np.asarray(canvas, np.float32).reshape(size, supersample, size, supersample)
  coverage = coverage.mean(axis=(1, 3)) / 255.0
  shading = 1.0 + 0.08 * rng.normal(size=(size, size, 1))
  image = np.clip(np.broadcast_to(colour, (size, size, 3)) * shading, 0, 1).astype(np.float32)
  return image, coverage.astype(np.float32)
