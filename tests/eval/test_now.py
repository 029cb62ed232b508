"""NoW protocol on constructed cases with known answers."""

import numpy as np
import pytest
import trimesh

from jaxface.errors import JaxfaceError
from jaxface.eval import mesh_files, now
from tests.eval import faces


def test_crop_sphere_follows_the_official_definition():
  lmk = np.array([[-45, 30, 0], [-15, 30, 0], [15, 30, 0], [45, 30, 0], [0, -20, 0],
                  [-25, -45, 0], [25, -45, 0]], float)
  centre, radius = now.crop_sphere(lmk)
  # centre = nose bottom + 0.3 (inner-eye midpoint - nose bottom); radius = 1.4 (90 + 50) / 2.
  np.testing.assert_allclose(centre, [0.0, -5.0, 0.0])
  assert radius == pytest.approx(98.0)
  scan = np.array([[0.0, -5.0 + 97.9, 0.0], [0.0, -5.0 + 98.1, 0.0], [98.0, -5.0, 0.0]])
  np.testing.assert_array_equal(now.crop_indices(scan, lmk), [0, 2])


def test_the_seven_landmarks_come_from_ibug_68():
  lmk68 = faces.landmarks68()
  np.testing.assert_array_equal(mesh_files.now_landmarks(lmk68), lmk68[[36, 39, 42, 45, 33, 48, 54]])


@pytest.mark.parametrize("metrical", [False, True])
def test_a_mesh_against_itself_after_a_similarity_is_zero(metrical):
  vertices, triangles = faces.face_mesh()
  lmk = faces.landmarks7()
  scan = faces.random_similarity(1)
  pred = faces.random_similarity(2, scale=0.001)  # the prediction in metres, elsewhere
  noisy = pred.apply(lmk) + np.random.default_rng(0).normal(scale=0.003, size=lmk.shape)
  result = now.now_align(pred.apply(vertices), triangles, noisy, scan.apply(vertices),
                         scan.apply(lmk), metrical=metrical, pred_unit_mm=1000.0)
  assert result.refine.initial_rms > 0.2  # 3 mm landmark noise: the refinement did the work
  assert np.median(result.distances) < 1e-3 and result.distances.max() < 1e-2
  assert result.transform.scale == pytest.approx(1000.0, rel=1e-6)
  assert len(result.distances) == len(result.kept) > 0.5 * len(vertices)


def _ellipsoid():
  mesh = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
  return trimesh.Trimesh(np.asarray(mesh.vertices) * [40.0, 30.0, 22.0], mesh.faces, process=False)


def test_a_uniform_one_millimetre_offset_along_normals_gives_one_millimetre_metrical():
  # Scan = the face centres of a convex mesh pushed 1 mm along their normals: exactly
  # 1 mm from the surface, and (by the mesh's symmetry) no rigid motion does better.
  mesh = _ellipsoid()
  centres, normals = mesh.triangles_center, mesh.face_normals
  picks = [np.argmin(np.linalg.norm(centres - p, axis=1)) for p in
           [[-40, 0, 0], [-10, 8, 20], [10, 8, 20], [40, 0, 0], [0, -28, 8], [-12, -20, 12],
            [12, -20, 12]]]
  scan = centres + normals
  pred = faces.random_similarity(3)
  result = now.now_align(pred.apply(mesh.vertices), mesh.faces, pred.apply(centres[picks]),
                         scan, scan[picks], metrical=True)
  assert len(result.kept) == len(scan)
  assert np.median(result.distances) == pytest.approx(1.0, abs=1e-3)
  assert np.percentile(result.distances, [5, 95]) == pytest.approx([1.0, 1.0], abs=1e-2)
  # The non-metrical protocol absorbs part of a uniform offset into the scale.
  loose = now.now_distances(pred.apply(mesh.vertices), mesh.faces, pred.apply(centres[picks]),
                            scan, scan[picks])
  assert np.median(loose) < 0.5


def test_a_missing_region_gives_the_error_of_the_hole():
  vertices, triangles = faces.face_mesh()
  lmk = faces.landmarks7()
  centroids = vertices[triangles].mean(1)
  holed = triangles[np.linalg.norm(centroids[:, :2] - [35.0, -15.0], axis=1) >= 15.0]
  scan, pred = faces.random_similarity(1), faces.random_similarity(2)
  args = (pred.apply(lmk), scan.apply(vertices), scan.apply(lmk))
  full = now.now_align(pred.apply(vertices), triangles, *args)
  result = now.now_align(pred.apply(vertices), holed, *args)
  # Expected: the distances to the holed mesh at the true alignment: 0 for vertices the
  # holed mesh still uses, the slow reference for the others.
  points = vertices[result.kept]
  expected = np.zeros(len(points))
  orphans = np.flatnonzero(~np.isin(result.kept, holed))
  expected[orphans] = [faces.reference_distance(points[i], vertices, holed) for i in orphans]
  rms, expected_rms = np.sqrt(np.mean(result.distances ** 2)), np.sqrt(np.mean(expected ** 2))
  assert expected_rms > 0.9
  # The refinement minimises this RMS: at most the true alignment's, and the hole stays.
  assert 0.97 * expected_rms <= rms <= expected_rms + 1e-9
  in_hole = np.linalg.norm(points[:, :2] - [35.0, -15.0], axis=1) < 10.0
  assert result.distances[in_hole].min() > 2.0
  assert result.distances.mean() > 100 * max(full.distances.mean(), 1e-6)


def test_metrical_penalises_a_ten_percent_scale_and_non_metrical_does_not():
  vertices, triangles = faces.face_mesh()
  lmk = faces.landmarks7()
  scan = faces.random_similarity(1)
  pred = faces.random_similarity(2, scale=1.1)
  args = (pred.apply(vertices), triangles, pred.apply(lmk), scan.apply(vertices), scan.apply(lmk))
  loose = now.now_distances(*args)
  metrical = now.now_distances(*args, metrical=True)
  assert np.median(loose) < 1e-3
  assert np.median(metrical) > 0.5 and np.mean(metrical) > 1000 * np.mean(loose)
  # Declaring the right unit removes the penalty: 1.1 "units" per mm.
  declared = now.now_distances(*args, metrical=True, pred_unit_mm=1 / 1.1)
  assert np.median(declared) < 1e-3


def test_bad_inputs_raise_one_line_errors():
  vertices, triangles = faces.face_mesh(step=10.0)
  lmk = faces.landmarks7()
  with pytest.raises(JaxfaceError, match="no scan vertex"):
    now.now_align(vertices, triangles, lmk, vertices + 1000.0, lmk)
  with pytest.raises(JaxfaceError, match="7x3"):
    now.now_align(vertices, triangles, lmk[:5], vertices, lmk)
