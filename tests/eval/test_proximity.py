"""Closest points: exact against a slow obvious reference, and on offset surfaces."""

import re

import numpy as np
import pytest
import trimesh

from jaxface.errors import JaxfaceError
from jaxface.eval import proximity
from tests.eval import faces


def test_distances_match_the_reference_on_a_non_convex_mesh():
  vertices, triangles = faces.face_mesh(step=10.0)
  rng = np.random.default_rng(0)
  points = rng.uniform([-90, -110, -20], [90, 110, 90], size=(300, 3))
  found = proximity.closest_points(vertices, triangles, points)
  expected = np.array([faces.reference_distance(p, vertices, triangles) for p in points])
  np.testing.assert_allclose(found.distances, expected, rtol=0, atol=1e-9)
  # The closest points lie on their triangles at the reported distances.
  np.testing.assert_allclose(np.linalg.norm(found.points - points, axis=1), expected, atol=1e-9)
  a, b, c = (vertices[triangles[found.triangles, i]] for i in range(3))
  normal = np.cross(b - a, c - a)
  assert np.abs(np.sum((found.points - a) * normal, 1)).max() < 1e-6 * np.abs(normal).max()


def test_one_millimetre_along_face_normals_of_a_convex_mesh_is_one_millimetre():
  mesh = trimesh.creation.icosphere(subdivisions=3, radius=40.0)
  rng = np.random.default_rng(1)
  weights = rng.dirichlet([2.0, 2.0, 2.0], size=len(mesh.faces))  # strictly inside each face
  points = np.einsum("fk,fkc->fc", weights, mesh.triangles) + mesh.face_normals
  distances = proximity.scan_to_mesh_distances(points, mesh.vertices, mesh.faces)
  np.testing.assert_allclose(distances, 1.0, atol=1e-9)


def test_unreferenced_vertices_are_not_part_of_the_surface():
  vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [5, 5, 5]], float)
  distance = proximity.scan_to_mesh_distances([[5, 5, 5]], vertices, [[0, 1, 2]])
  assert distance[0] > 7.0


@pytest.mark.parametrize("vertices, triangles, message", [
    (np.zeros((3, 2)), [[0, 1, 2]], "expected [V, 3] vertices"),
    (np.zeros((3, 3)), [[0, 1, 3]], "out of range"),
    (np.zeros((3, 3)), np.zeros((0, 3), int), "expected [F, 3] triangles"),
    (np.full((3, 3), np.nan), [[0, 1, 2]], "NaN"),
])
def test_bad_meshes_are_named(vertices, triangles, message):
  with pytest.raises(JaxfaceError, match=f"pred.obj: .*{re.escape(message)}"):
    proximity.MeshProximity(vertices, triangles, name="pred.obj")
