"""The default BFM-sim model: counts, mesh quality, symmetry, scaling, variants, cache."""

import numpy as np
import scipy.spatial

from jaxface import morphable
from jaxface.morphable import bfm_sim
from jaxface.morphable import build

# iBUG-68 left/right pairs (the nose bridge, nose tip, chin and mid-lip lie on x = 0).
SYMMETRIC_PAIRS = ([(i, 16 - i) for i in range(8)] + [(17 + i, 26 - i) for i in range(5)]
                   + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46), (31, 35),
                      (32, 34), (48, 54), (49, 53), (50, 52), (59, 55), (58, 56), (60, 64),
                      (61, 63), (67, 65)])


def test_full_model_counts(full_model):
  assert full_model.num_vertices == 53215
  assert 90_000 <= full_model.num_triangles <= 110_000
  assert (full_model.num_shape, full_model.num_expression) == (40, 10)
  assert full_model.landmark_vertices.shape == (68, 3)
  assert "non-commercial" in full_model.licence


def test_front_variant_is_a_cropped_subset_in_the_same_frame(full_model, front_model):
  assert 30_000 <= front_model.num_vertices <= 40_000
  full_mean, front_mean = np.asarray(full_model.mean), np.asarray(front_model.mean)
  distance, index = scipy.spatial.cKDTree(full_mean).query(front_mean)
  assert distance.max() < 1e-5  # same vertices, same frame
  np.testing.assert_allclose(np.asarray(front_model.shape_basis),
                             np.asarray(full_model.shape_basis)[index], atol=1e-6)
  np.testing.assert_allclose(np.asarray(morphable.landmarks_3d(front_model, front_model.mean)),
                             np.asarray(morphable.landmarks_3d(full_model, full_model.mean)),
                             atol=1e-5)
  assert not np.any(np.asarray(front_model.region) == morphable.model.REGION_NECK_EARS)
  # Nothing wider than the jaw contour (ears cut) and nothing well below the chin (neck).
  contour = np.asarray(morphable.landmarks_3d(full_model, full_model.mean))[:17]
  assert np.abs(front_mean[:, 0]).max() < np.abs(contour[:, 0]).max() + 2.5
  assert front_mean[:, 1].min() > contour[8, 1] - 10.5


def test_winding_is_consistent_and_front_normals_face_the_camera(front_model, full_model):
  for model in (front_model, full_model):
    triangles = np.asarray(model.triangles)
    half_edges = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]],
                                 triangles[:, [2, 0]]])
    _, counts = np.unique(half_edges, axis=0, return_counts=True)
    assert counts.max() == 1  # an edge used twice in one direction = a flipped neighbour
  vertices, triangles = np.asarray(front_model.mean), np.asarray(front_model.triangles)
  landmarks = np.asarray(morphable.landmarks_3d(front_model, front_model.mean))
  # "Front face": inside the (x, y) hull of the chin part of the jaw contour (iBUG 4-12)
  # and the brows, not behind the contour. The cheeks further back turn away from +z.
  outline = landmarks[list(range(4, 13)) + list(range(17, 27))]
  centroids = vertices[triangles].mean(axis=1)
  inside = scipy.spatial.Delaunay(outline[:, :2]).find_simplex(centroids[:, :2]) >= 0
  inside &= centroids[:, 2] > outline[:, 2].min() - 5.0
  normals = build.face_normals(vertices, triangles)[inside]
  assert inside.sum() > 30_000
  assert np.mean(normals[:, 2] > 0) > 0.99


def test_landmarks_are_left_right_symmetric(full_model):
  landmarks = np.asarray(morphable.landmarks_3d(full_model, full_model.mean))
  for left, right in SYMMETRIC_PAIRS:
    a, b = landmarks[left], landmarks[right]
    assert abs(a[0] + b[0]) < 3.0 and abs(a[1] - b[1]) < 3.0 and abs(a[2] - b[2]) < 3.0, (left, right)
  assert landmarks[36, 0] < 0 < landmarks[45, 0]  # +x is the subject's left
  assert landmarks[30, 2] == landmarks[:, 2].max()  # the nose tip is nearest the camera


def test_coefficients_are_scaled_to_unit_normal(full_model):
  rng = np.random.default_rng(0)
  shapes = rng.normal(size=(64, full_model.num_shape)).astype(np.float32)
  expressions = rng.normal(size=(64, full_model.num_expression)).astype(np.float32)
  vertices = np.asarray(morphable.decode(full_model, shapes, expressions))
  landmarks = np.asarray(morphable.landmarks_3d(full_model, vertices))
  eye_width = np.linalg.norm(landmarks[:, 36] - landmarks[:, 45], axis=-1)
  assert 75.0 < eye_width.min() and eye_width.max() < 115.0  # plausible adult faces
  rms = np.sqrt(np.mean(np.square(vertices - np.asarray(full_model.mean)), axis=(1, 2)))
  assert 1.0 < np.median(rms) < 10.0  # unit coefficients move the face by mm, not µm or m
  basis_rms = np.sqrt(np.mean(np.square(np.asarray(full_model.shape_basis)), axis=(0, 1)))
  assert basis_rms[0] > basis_rms[-1] * 5  # principal components ordered by variance


def test_albedo_space_is_plausible(full_model):
  rng = np.random.default_rng(1)
  samples = np.asarray(morphable.albedo(full_model, rng.normal(size=(16, full_model.num_albedo))))
  assert np.mean((samples >= 0) & (samples <= 1)) > 0.97
  brightness = samples.mean(axis=(1, 2))
  assert brightness.max() - brightness.min() > 0.15  # light to dark skin
  mean = np.asarray(full_model.albedo_mean)
  landmarks = np.asarray(full_model.landmarks)
  lips, cheek = mean[landmarks[51]], mean[landmarks[3]]
  assert lips[0] / lips[1] > cheek[0] / cheek[1]  # redder lips
  assert mean[landmarks[19]].sum() < cheek.sum()  # darker brows


def test_regions_and_uvs(full_model):
  region = np.asarray(full_model.region)
  assert np.all(region[np.asarray(full_model.landmarks)] == morphable.model.REGION_LANDMARK)
  counts = np.bincount(region, minlength=4)
  assert counts[0] == 68 and counts[1] > 1000 and counts[2] > counts[1] and counts[3] > 1000
  uv = np.asarray(full_model.uv)
  assert uv.min() >= 0 and uv.max() <= 1
  nose, left_eye, right_eye = (uv[full_model.landmarks[i]] for i in (30, 45, 36))
  assert right_eye[0] < nose[0] < left_eye[0]


def test_default_model_is_cached_as_npz(full_model):
  path = bfm_sim._cache_path("full")  # pylint: disable=protected-access
  assert path.is_file()
  again = bfm_sim.default_model("full")
  np.testing.assert_array_equal(np.asarray(again.triangles), np.asarray(full_model.triangles))
