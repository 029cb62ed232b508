"""UV rasterisation against a slow per-pixel reference, and exactness on linear fields."""

import numpy as np
import scipy.spatial

from jaxface.render import uv_raster


def _mesh(seed: int = 0, count: int = 60):
  """A Delaunay mesh of random UVs in [0.05, 0.95]^2 plus one overlapping triangle."""
  rng = np.random.default_rng(seed)
  uv = rng.uniform(0.05, 0.95, (count, 2))
  triangles = scipy.spatial.Delaunay(uv).simplices.astype(np.int64)
  triangles = np.concatenate([triangles, triangles[:1, ::-1]])  # a duplicate, reversed
  return uv, triangles


def _reference(uv, triangles, size):
  """Per pixel: every triangle containing its centre; the lowest index wins."""
  corners = uv_raster.uv_to_pixels(uv, size)[triangles]
  triangle_id = np.full((size, size), -1)
  bary = np.zeros((size, size, 3))
  for i in range(size):
    for j in range(size):
      point = np.array([j + 0.5, i + 0.5])
      for f, (a, b, c) in enumerate(corners):
        weights = uv_raster.barycentric(point, a, b, c)
        if np.all(weights >= -1e-9):
          triangle_id[i, j], bary[i, j] = f, weights
          break
  return triangle_id, bary


def test_matches_per_pixel_reference():
  uv, triangles = _mesh()
  raster = uv_raster.rasterize_uv(uv, triangles, 24)
  triangle_id, bary = _reference(uv, triangles, 24)
  np.testing.assert_array_equal(raster.triangle_id, triangle_id)
  np.testing.assert_allclose(raster.bary, bary, atol=1e-12)
  assert (raster.triangle_id == -1).any() and (raster.triangle_id >= 0).mean() > 0.7
  assert not (raster.triangle_id == len(triangles) - 1).any()  # the duplicate never wins


def test_interpolation_reproduces_linear_fields_and_zero_background():
  uv, triangles = _mesh(seed=1, count=200)
  size = 64
  raster = uv_raster.rasterize_uv(uv, triangles, size)
  affine = np.array([[3.0, -1.0], [0.5, 2.0]])
  values = np.concatenate([uv @ affine.T + [7.0, -2.0], np.ones((len(uv), 1))], axis=1)
  result = uv_raster.interpolate(raster, values)
  rows, cols = np.indices((size, size))
  centres_uv = np.stack([(cols + 0.5) / size, 1.0 - (rows + 0.5) / size], axis=-1)
  expected = centres_uv @ affine.T + [7.0, -2.0]
  covered = raster.triangle_id >= 0
  np.testing.assert_allclose(result[covered][:, :2], expected[covered], atol=1e-4)
  np.testing.assert_allclose(result[covered][:, 2], 1.0, atol=1e-5)
  assert np.all(result[~covered] == 0)
