"""Rasterising per-vertex values into a model's UV space (PRNet position maps).

The UV layout of a model never changes, so which triangle covers each UV pixel and
with which barycentric weights is computed once (`rasterize_uv`); a position map is
then a gather and a weighted sum per example (`interpolate`).

UV convention (`MorphableModel.uv`): u right, v up, both in [0, 1] over the map.
Pixel (row i, column j) of an N x N map is centred at uv ((j + 0.5) / N, 1 - (i + 0.5) / N).
Where UV triangles overlap (folds of an unwrap) the lowest triangle index wins;
pixels no triangle covers get triangle -1 and value 0 (PRNet's background).
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class UVRaster:
  """Which triangle covers each UV pixel, and where.

  Attributes:
    triangle_id: [N, N] int64 triangle index, -1 where no triangle covers the pixel.
    bary: [N, N, 3] float64 barycentric weights of the pixel centre (0 where -1).
    triangles: [F, 3] int64 the triangles rasterised.
  """
  triangle_id: np.ndarray
  bary: np.ndarray
  triangles: np.ndarray


def uv_to_pixels(uv: np.ndarray, size: int) -> np.ndarray:
  """[..., 2] uv in [0, 1] (v up) -> continuous (x, y) map pixels (y down)."""
  uv = np.asarray(uv, np.float64)
  return np.stack([uv[..., 0] * size, (1.0 - uv[..., 1]) * size], axis=-1)


def barycentric(points: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray
                ) -> np.ndarray:
  """[..., 3] barycentric weights of 2D `points` in triangles (a, b, c), all [..., 2]."""
  v0, v1, v2 = b - a, c - a, points - a
  den = v0[..., 0] * v1[..., 1] - v1[..., 0] * v0[..., 1]
  den = np.where(den == 0, np.inf, den)
  l1 = (v2[..., 0] * v1[..., 1] - v1[..., 0] * v2[..., 1]) / den
  l2 = (v0[..., 0] * v2[..., 1] - v2[..., 0] * v0[..., 1]) / den
  return np.stack([1.0 - l1 - l2, l1, l2], axis=-1)


def rasterize_uv(uv: np.ndarray, triangles: np.ndarray, size: int,
                 tolerance: float = 1e-9) -> UVRaster:
  """Finds the triangle and barycentrics of every pixel centre of an N x N UV map.

  Vectorised over (triangle, candidate pixel) pairs: each triangle's bounding box of
  pixel centres is enumerated, so the cost is the sum of the boxes' areas.

  Args:
    uv: [V, 2] texture coordinates in [0, 1], v up.
    triangles: [F, 3] vertex indices.
    size: N, the map side in pixels.
    tolerance: barycentric slack, so centres on shared edges are not lost.
  Returns:
    a `UVRaster`.
  """
  triangles = np.asarray(triangles, np.int64)
  corners = uv_to_pixels(uv, size)[triangles]  # [F, 3, 2]
  low = np.clip(np.ceil(corners.min(axis=1) - 0.5), 0, size).astype(np.int64)
  high = np.clip(np.floor(corners.max(axis=1) - 0.5), -1, size - 1).astype(np.int64)
  extent = np.maximum(high - low + 1, 0)  # [F, 2] columns, rows
  area = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
  degenerate = area[0][:, 0] * area[1][:, 1] - area[1][:, 0] * area[0][:, 1] == 0
  counts = np.where(degenerate, 0, extent[:, 0] * extent[:, 1])
  face = np.repeat(np.arange(len(triangles)), counts)
  local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
  width = extent[face, 0]
  column = low[face, 0] + local % width
  row = low[face, 1] + local // width
  centres = np.stack([column + 0.5, row + 0.5], axis=-1).astype(np.float64)
  weights = barycentric(centres, corners[face, 0], corners[face, 1], corners[face, 2])
  inside = np.all(weights >= -tolerance, axis=-1)
  face, weights, pixel = face[inside], weights[inside], (row * size + column)[inside]
  order = np.lexsort((face, pixel))  # by pixel, then lowest triangle first
  pixel, first = np.unique(pixel[order], return_index=True)
  triangle_id = np.full(size * size, -1, np.int64)
  bary = np.zeros((size * size, 3), np.float64)
  triangle_id[pixel] = face[order][first]
  bary[pixel] = weights[order][first]
  return UVRaster(triangle_id=triangle_id.reshape(size, size),
                  bary=bary.reshape(size, size, 3), triangles=triangles)


def interpolate(raster: UVRaster, values: np.ndarray) -> np.ndarray:
  """Per-vertex values -> UV map by the precomputed barycentrics.

  Args:
    raster: `rasterize_uv` of the model's uv and triangles.
    values: [V, C] per-vertex values (e.g. image-space vertex positions).
  Returns:
    [N, N, C] float32 map, 0 where no triangle covers the pixel.
  """
  covered = raster.triangle_id >= 0
  corners = raster.triangles[np.where(covered, raster.triangle_id, 0)]  # [N, N, 3]
  result = np.einsum("ijk,ijkc->ijc", raster.bary, np.asarray(values, np.float64)[corners])
  return np.where(covered[..., None], result, 0.0).astype(np.float32)
