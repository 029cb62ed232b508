"""Umeyama on landmarks and the scan-to-mesh refinement recover known transforms."""

import numpy as np
import pytest

from jaxface.errors import JaxfaceError
from jaxface.eval import alignment, proximity
from tests.eval import faces


def test_umeyama_recovers_a_similarity_without_reflection():
  points = faces.landmarks68()
  true = faces.random_similarity(4, scale=0.37)
  found = alignment.umeyama(points, true.apply(points))
  assert found.scale == pytest.approx(0.37, rel=1e-12)
  np.testing.assert_allclose(found.rotation, true.rotation, atol=1e-12)
  np.testing.assert_allclose(found.translation, true.translation, atol=1e-9)
  # A mirrored target: the best proper rotation, never a reflection.
  mirrored = alignment.umeyama(points, points * [-1.0, 1.0, 1.0])
  assert np.linalg.det(mirrored.rotation) == pytest.approx(1.0)


def test_umeyama_with_a_fixed_scale_keeps_it():
  points = faces.landmarks7()
  true = faces.random_similarity(5, scale=2.0)
  found = alignment.umeyama(points, true.apply(points), scale=1.0)
  assert found.scale == 1.0
  np.testing.assert_allclose(found.rotation, true.rotation, atol=1e-12)  # rotation: scale-free


def test_umeyama_rejects_collinear_landmarks():
  line = np.outer(np.arange(7.0), [1.0, 2.0, 3.0])
  with pytest.raises(JaxfaceError, match="degenerate"):
    alignment.umeyama(line, line)


@pytest.mark.parametrize("residual", ["surface", "plane"])
def test_refinement_recovers_the_true_transform_from_a_wrong_start(residual):
  vertices, triangles = faces.face_mesh()
  true = faces.random_similarity(6, scale=1.2)
  scan = true.apply(vertices[::3])
  start = alignment.Similarity(1.1, _turn(0.05) @ true.rotation, true.translation + [4.0, -3.0, 2.0])
  mesh = proximity.MeshProximity(vertices, triangles)
  found, info = alignment.refine(mesh, start, scan, residual=residual)
  assert info.initial_rms > 1.0 and info.final_rms < 1e-6
  np.testing.assert_allclose(found.matrix(), true.matrix(), atol=1e-6)
  rigid, _ = alignment.refine(mesh, start, scan, estimate_scale=False, residual=residual)
  assert rigid.scale == 1.1


def _turn(angle):
  c, s = np.cos(angle), np.sin(angle)
  return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
