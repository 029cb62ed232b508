"""Numpy tools that build the parts of a `MorphableModel` a source file lacks.

Triangulation and UVs by a spherical unwrap, outward winding, the front crop, region
labels and a smooth albedo space. Everything here runs once per model (then the model
is cached as `.npz`), so it favours clarity over speed. Inputs follow the frame of
`model.py` (mm, +y up, +z out of the face).
"""

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph
import scipy.sparse.linalg
import scipy.spatial

from jaxface.errors import ModelFormatError
from jaxface.morphable import model as model_lib

# iBUG-68 groups used for regions and the albedo mean.
JAW = np.arange(0, 17)
BROWS = (np.arange(17, 22), np.arange(22, 27))
NOSE = np.arange(27, 36)
EYES = (np.arange(36, 42), np.arange(42, 48))
OUTER_LIPS = np.arange(48, 60)
INNER_LIPS = np.arange(60, 68)

# Front crop (fixed here so variants and region labels agree): keep what lies
# FRONT_DEPTH_MM in front of the jaw-contour ends (iBUG 0 and 16, near the ears) or
# within FRONT_CONTOUR_MM of a contour landmark, no further out sideways than the
# contour at the same height plus 2 mm (this drops the ears), and above the chin
# minus 10 mm (no neck).
FRONT_DEPTH_MM = 20.0
FRONT_CONTOUR_MM = 12.0

# Skin, lip and brow reflectances of the default albedo mean (linear RGB).
SKIN_RGB = (0.62, 0.45, 0.37)
LIP_RGB = (0.55, 0.27, 0.25)
BROW_RGB = (0.22, 0.16, 0.13)


def unwrap_centre(landmark_points: np.ndarray) -> np.ndarray:
  """Centre of the spherical unwrap: 60 mm behind the landmarks' centroid (head centre)."""
  return landmark_points.mean(axis=0) - np.array([0.0, 0.0, 60.0])


def spherical_unwrap(vertices: np.ndarray, centre: np.ndarray) -> np.ndarray:
  """[V, 2] (azimuth·cos(elevation), elevation) in radians around `centre`."""
  p = vertices - centre
  azimuth = np.arctan2(p[:, 0], p[:, 2])
  elevation = np.arctan2(p[:, 1], np.hypot(p[:, 0], p[:, 2]))
  return np.stack([azimuth * np.cos(elevation), elevation], axis=1)


def spherical_uv(vertices: np.ndarray, centre: np.ndarray) -> np.ndarray:
  """[V, 2] UVs in [0, 1] from the spherical unwrap, aspect ratio kept, v up."""
  flat = spherical_unwrap(vertices, centre)
  lo, hi = flat.min(axis=0), flat.max(axis=0)
  span = float((hi - lo).max()) or 1.0
  return ((flat - lo) / span + (1.0 - (hi - lo) / span) / 2.0).astype(np.float32)


def edge_lengths(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
  """[F, 3] lengths of edges (0-1, 1-2, 2-0)."""
  a, b, c = (vertices[triangles[:, i]] for i in range(3))
  return np.stack([np.linalg.norm(b - a, axis=1), np.linalg.norm(c - b, axis=1),
                   np.linalg.norm(a - c, axis=1)], axis=1)


def face_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
  """[F, 3] unnormalised triangle normals (length = twice the area)."""
  a, b, c = (vertices[triangles[:, i]] for i in range(3))
  return np.cross(b - a, c - a)


def orient_outward(vertices: np.ndarray, triangles: np.ndarray,
                   centre: np.ndarray) -> np.ndarray:
  """Flips every triangle if most normals point towards `centre` (inside the head)."""
  outward = face_normals(vertices, triangles)
  radial = vertices[triangles].mean(axis=1) - centre
  if np.mean(np.sum(outward * radial, axis=1) > 0) < 0.5:
    return triangles[:, ::-1].copy()
  return triangles


def triangulate(vertices: np.ndarray, centre: np.ndarray,
                max_edge_ratio: float = 3.0) -> np.ndarray:
  """Triangulates a head-shaped point set by Delaunay on its spherical unwrap.

  Edges longer than `max_edge_ratio` x the median edge bridge folds of the unwrap
  (ears, under the chin) and are removed with their triangles (DESIGN.md §3).

  Returns:
    [F, 3] int32 triangles, counter-clockwise seen from outside.
  """
  triangles = scipy.spatial.Delaunay(spherical_unwrap(vertices, centre)).simplices
  lengths = edge_lengths(vertices, triangles)
  triangles = triangles[np.all(lengths < max_edge_ratio * np.median(lengths), axis=1)]
  return orient_outward(vertices, triangles.astype(np.int32), centre)


def front_mask(vertices: np.ndarray, landmark_points: np.ndarray) -> np.ndarray:
  """[V] bool: the face in front of the ears, without neck (see FRONT_* above)."""
  contour = landmark_points[JAW]
  near_contour = scipy.spatial.cKDTree(contour).query(vertices)[0] < FRONT_CONTOUR_MM
  in_front = vertices[:, 2] > contour[[0, -1], 2].mean() + FRONT_DEPTH_MM
  # The contour's half-width at each height (held constant above and below it): the
  # ears stick out sideways beyond it.
  order = np.argsort(contour[:, 1])
  half_width = np.interp(vertices[:, 1], contour[order, 1], np.abs(contour[order, 0]))
  inside_sides = np.abs(vertices[:, 0]) < half_width + 2.0
  above_neck = vertices[:, 1] > contour[8, 1] - 10.0
  return (in_front | near_contour) & inside_sides & above_neck


def largest_component(num_vertices: int, triangles: np.ndarray) -> np.ndarray:
  """[V] bool: vertices of the largest edge-connected component."""
  rows = triangles.ravel()
  cols = np.roll(triangles, 1, axis=1).ravel()
  graph = scipy.sparse.coo_matrix((np.ones(rows.size), (rows, cols)),
                                  shape=(num_vertices, num_vertices))
  _, labels = scipy.sparse.csgraph.connected_components(graph, directed=False)
  used = np.zeros(num_vertices, bool)
  used[triangles.ravel()] = True
  keep = np.zeros(num_vertices, bool)
  if used.any():
    keep = used & (labels == np.bincount(labels[used]).argmax())
  return keep


def submesh(keep: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Restricts a mesh to the vertices in `keep`.

  Returns:
    (index [V'] of kept vertices in the old mesh, triangles [F', 3] in new indices).
  """
  index = np.flatnonzero(keep)
  remap = np.full(keep.shape[0], -1, np.int64)
  remap[index] = np.arange(index.size)
  kept = triangles[np.all(keep[triangles], axis=1)]
  return index, remap[kept].astype(np.int32)


def _inside_hull_2d(points: np.ndarray, polygon: np.ndarray, scale: float) -> np.ndarray:
  centre = polygon.mean(axis=0)
  hull = scipy.spatial.Delaunay(centre + scale * (polygon - centre))
  return hull.find_simplex(points) >= 0


def region_labels(vertices: np.ndarray, landmark_vertices: np.ndarray,
                  landmark_points: np.ndarray) -> np.ndarray:
  """[V] int32 region labels (model.REGION_*) for PRNet-style weighting.

  Eyes, nose and mouth are the (x, y) convex hulls of their landmark groups enlarged
  1.3x about their centroid, limited to vertices no more than 15 mm behind the
  group's deepest landmark (so the back of the head is not caught); the face is
  `front_mask`; the rest is neck and ears.
  """
  labels = np.full(vertices.shape[0], model_lib.REGION_NECK_EARS, np.int32)
  labels[front_mask(vertices, landmark_points)] = model_lib.REGION_FACE
  for group in (*EYES, NOSE, OUTER_LIPS):
    pts = landmark_points[group]
    near = _inside_hull_2d(vertices[:, :2], pts[:, :2], 1.3)
    near &= vertices[:, 2] > pts[:, 2].min() - 15.0
    labels[near] = model_lib.REGION_EYES_NOSE_MOUTH
  labels[landmark_vertices] = model_lib.REGION_LANDMARK
  return labels


def _polyline_distance(vertices: np.ndarray, polyline: np.ndarray, closed: bool) -> np.ndarray:
  """[V] distance to a densely resampled polyline (0.5 mm steps)."""
  points = np.concatenate([polyline, polyline[:1]]) if closed else polyline
  dense = [points[:1]]
  for a, b in zip(points[:-1], points[1:]):
    steps = max(int(np.linalg.norm(b - a) / 0.5), 1)
    dense.append(a + (b - a) * np.linspace(0, 1, steps + 1)[1:, None])
  return scipy.spatial.cKDTree(np.concatenate(dense)).query(vertices)[0]


def default_albedo_mean(vertices: np.ndarray, landmark_points: np.ndarray) -> np.ndarray:
  """[V, 3] skin tone with redder lips and darker brows, blended by smooth weights."""
  lips = np.minimum(_polyline_distance(vertices, landmark_points[OUTER_LIPS], True),
                    _polyline_distance(vertices, landmark_points[INNER_LIPS], True))
  brows = np.minimum(*(_polyline_distance(vertices, landmark_points[b], False) for b in BROWS))
  w_lips = np.exp(-0.5 * (lips / 2.5) ** 2)[:, None]
  w_brows = np.exp(-0.5 * (brows / 3.0) ** 2)[:, None]
  colour = np.asarray(SKIN_RGB) * (1 - w_lips) + np.asarray(LIP_RGB) * w_lips
  colour = colour * (1 - w_brows) + np.asarray(BROW_RGB) * w_brows
  return colour.astype(np.float32)


def smooth_eigenfunctions(vertices: np.ndarray, count: int, neighbours: int = 8) -> np.ndarray:
  """[V, count] lowest eigenvectors of a k-nearest-neighbour graph Laplacian.

  A k-NN graph (Gaussian weights) instead of the mesh keeps vertices that no triangle
  uses connected and works for any topology. Columns are scaled to unit RMS, ordered
  from the constant function upwards in frequency.
  """
  v = vertices.shape[0]
  distances, index = scipy.spatial.cKDTree(vertices).query(vertices, neighbours + 1)
  sigma = np.median(distances[:, 1:])
  weights = np.exp(-(distances[:, 1:] / sigma) ** 2)
  rows = np.repeat(np.arange(v), neighbours)
  w = scipy.sparse.coo_matrix((weights.ravel(), (rows, index[:, 1:].ravel())), shape=(v, v))
  w = (w + w.T).tocsr() * 0.5
  laplacian = scipy.sparse.diags(np.asarray(w.sum(axis=1)).ravel()) - w
  # Shift-invert around a small negative sigma: the Laplacian is singular at 0.
  values, vectors = scipy.sparse.linalg.eigsh(laplacian.tocsc(), k=count, sigma=-1e-3,
                                              which="LM", v0=np.ones(v))
  vectors = vectors[:, np.argsort(values)]
  vectors *= np.sign(vectors.sum(axis=0) + 1e-12)  # deterministic sign
  return (vectors / np.sqrt(np.mean(vectors ** 2, axis=0))).astype(np.float32)


def smooth_albedo_basis(vertices: np.ndarray, num_functions: int = 20) -> np.ndarray:
  """[V, 3, 3*num_functions] albedo basis from smooth eigenfunctions x colour axes.

  Each eigenfunction is paired with a skin-tone axis (mostly brightness: light to
  dark skin; std 0.12 for the constant function, the range of human skin
  reflectance over ±2 sigma) and two weaker chroma axes; higher frequencies get
  smaller standard deviations (~1/sqrt(frequency index)).
  """
  functions = smooth_eigenfunctions(vertices, num_functions)
  tone = np.asarray(SKIN_RGB) / np.linalg.norm(SKIN_RGB)
  chroma_a = np.cross(tone, [0.0, 0.0, 1.0])
  chroma_a /= np.linalg.norm(chroma_a)
  chroma_b = np.cross(tone, chroma_a)
  axes = np.stack([0.2 * tone, 0.04 * chroma_a, 0.04 * chroma_b])  # [3 axes, 3 rgb]
  columns = []
  for i in range(num_functions):
    falloff = 1.0 if i == 0 else 0.35 / np.sqrt(i)
    for axis in axes:
      columns.append(functions[:, i, None] * axis * falloff)
  return np.stack(columns, axis=-1).astype(np.float32)


def check_scale(landmark_points: np.ndarray, source: str) -> None:
  """Raises if the outer-eye-corner distance is not a human one in mm (40-160 mm).

  Catches metres/µm left unconverted and landmark indices of another topology.
  """
  distance = float(np.linalg.norm(landmark_points[36] - landmark_points[45]))
  if not 40.0 <= distance <= 160.0:
    raise ModelFormatError(f"{source}: outer eye corners are {distance:.4g} units apart, "
                           "expected 40-160 mm: wrong units or landmark indices")


def complete_model(*, mean, shape_basis, expression_basis, triangles, landmark_vertices,
                   landmark_bary=None, albedo_mean=None, albedo_basis=None, uv=None,
                   skinning=None, name="", licence="", source="") -> model_lib.MorphableModel:
  """Builds a `MorphableModel`, deriving what the source lacks.

  Args:
    mean: [V, 3] mm, in the frame of `model.py`; bases [V, 3, K] scaled for N(0, 1).
    triangles: [F, 3] 0-based; re-oriented outward if needed.
    landmark_vertices: [68] vertex indices or [68, 3] triangle corners.
    landmark_bary: [68, 3] weights when `landmark_vertices` is [68, 3].
    albedo_mean, albedo_basis: [V, 3] and [V, 3, Ka] in [0, 1]; default smooth space.
    uv: [V, 2]; default spherical unwrap.
    skinning: `model.to_numpy`'s skin_* arrays for articulated models.
    source: the file the model came from, named in errors.
  Raises:
    ModelFormatError: if the landmarks show the wrong units (see `check_scale`).
  """
  mean = np.asarray(mean, np.float32)
  landmark_vertices = np.asarray(landmark_vertices, np.int64)
  if landmark_vertices.ndim == 1:
    landmark_vertices = np.repeat(landmark_vertices[:, None], 3, axis=1)
    landmark_bary = np.tile(np.array([1.0, 0.0, 0.0], np.float32), (len(landmark_vertices), 1))
  landmark_bary = np.asarray(landmark_bary, np.float32)
  landmark_points = np.einsum("lcd,lc->ld", mean[landmark_vertices], landmark_bary)
  check_scale(landmark_points, str(source or name))
  nearest = landmark_vertices[np.arange(len(landmark_vertices)), landmark_bary.argmax(axis=1)]
  centre = unwrap_centre(landmark_points)
  if albedo_mean is None:
    albedo_mean = default_albedo_mean(mean, landmark_points)
  if albedo_basis is None:
    albedo_basis = smooth_albedo_basis(mean)
  return model_lib.from_numpy(dict(
      mean=mean, shape_basis=shape_basis, expression_basis=expression_basis,
      albedo_mean=albedo_mean, albedo_basis=albedo_basis,
      triangles=orient_outward(mean, np.asarray(triangles, np.int32), centre),
      uv=spherical_uv(mean, centre) if uv is None else uv,
      landmark_vertices=landmark_vertices, landmark_bary=landmark_bary,
      region=region_labels(mean, nearest, landmark_points),
      name=name, licence=licence, **(skinning or {})))
