"""Pose-aware jaw contour for landmark fitting ("landmark marching", Zhu et al. 2016, 3DDFA).

A 2D detector puts the 17 jaw-contour landmarks on the face's silhouette. On a head
turned away from the camera the silhouette of the far cheek is not the model's fixed
contour vertex (which lies behind it), so pinning that vertex to the detected point
drags pose and shape. Here each contour landmark may slide along a horizontal band of
the mesh, from the landmark vertex forwards to the cheek: under the current pose the
band vertex projected furthest outwards takes the landmark's place. On the near
side the landmark vertex itself is the outermost (the cheek is seen from the front);
on the far side it is the silhouette. The choice is discrete (no gradient); the chosen
vertex's position carries the gradient. The chin points (iBUG 6-10) stay fixed.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxface import morphable

CONTOUR = slice(0, 17)
FIXED = (6, 7, 8, 9, 10)  # chin: no band (its outward direction is ill-defined)
BAND_MM = 1.0  # half-height of a landmark's band, mm (mean shape)
INNER_FRACTION = 0.4  # bands stop at this fraction of the landmark's distance from x = 0


def contour_candidates(model: morphable.MorphableModel) -> tuple[np.ndarray, np.ndarray]:
  """The sliding bands of the 17 contour landmarks.

  Returns:
    (candidates [17, C] int32 vertex indices, each row starting with the landmark's own
    vertex and padded by repeating it; sides [17] float32, +1 for landmarks on the
    model's +x side (the image right when facing the camera), -1 on the -x side, 0 fixed).
  """
  mean = np.asarray(model.mean, np.float64)
  vertices = np.asarray(model.landmark_vertices)[CONTOUR]
  weights = np.asarray(model.landmark_bary)[CONTOUR]
  own = vertices[np.arange(17), np.argmax(weights, axis=1)]
  rows, sides = [], np.zeros(17, np.float32)
  for j, v in enumerate(own):
    x, y, z = mean[v]
    band = np.array([], np.int64)
    if j not in FIXED and abs(x) > 1.0:
      sides[j] = np.sign(x)
      side_x = mean[:, 0] * np.sign(x)
      # Not behind the vertex: the cheek in front of the jaw line (vertices behind it,
      # towards the ear, would swing outwards on the near side of a turned head, where
      # the detector keeps the jaw line).
      band = np.nonzero((np.abs(mean[:, 1] - y) <= BAND_MM) & (side_x >= INNER_FRACTION * abs(x))
                        & (mean[:, 2] >= z))[0]
      band = band[band != v]
    rows.append(np.concatenate([[v], band]))
  width = max(len(r) for r in rows)
  candidates = np.stack([np.pad(r, (0, width - len(r)), mode="edge") for r in rows])
  return candidates.astype(np.int32), sides


def march(candidate_xy: jax.Array, sides: jax.Array) -> jax.Array:
  """[T, 17, 2] contour landmarks: per landmark the outermost projected band vertex.

  Args:
    candidate_xy: [T, 17, C, 2] projected band vertices (pixels, x to the image right).
    sides: [17] from `contour_candidates` (0: the first candidate, the fixed vertex).
  """
  # Fixed landmarks (side 0) score 0 everywhere: argmax takes the first, their vertex.
  outward = jax.lax.stop_gradient(candidate_xy[..., 0]) * sides[:, None]  # [T, 17, C]
  best = jnp.argmax(outward, axis=-1)  # [T, 17]
  return jnp.take_along_axis(candidate_xy, best[..., None, None], axis=2)[:, :, 0]
