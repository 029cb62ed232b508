"""Cameras: Euler and 6D rotations, rigid transforms, perspective and orthographic projection."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from jaxface import render

# Jitted once per shape: much faster than op-by-op dispatch.
_euler_to_matrix = jax.jit(render.euler_to_matrix)
_rotation_6d_to_matrix = jax.jit(render.rotation_6d_to_matrix)
_rigid_transform = jax.jit(render.rigid_transform)
_project = jax.jit(render.project)


def _rx(a):
  c, s = np.cos(a), np.sin(a)
  return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a):
  c, s = np.cos(a), np.sin(a)
  return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a):
  c, s = np.cos(a), np.sin(a)
  return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _assert_rotations(r, atol=1e-5):
  r = np.asarray(r, np.float64)
  eye = np.broadcast_to(np.eye(3), r.shape)
  np.testing.assert_allclose(r @ np.swapaxes(r, -1, -2), eye, atol=atol)
  np.testing.assert_allclose(np.linalg.det(r), np.ones(r.shape[:-2]), atol=atol)


def test_euler_matches_scipy_and_explicit_matrices():
  rng = np.random.default_rng(0)
  angles = rng.uniform(-np.pi, np.pi, (6, 3))
  ours = np.asarray(_euler_to_matrix(jnp.asarray(angles, jnp.float32)))
  for (pitch, yaw, roll), r in zip(angles, ours):
    scipy_r = Rotation.from_euler("ZYX", [roll, yaw, pitch]).as_matrix()
    np.testing.assert_allclose(r, scipy_r, atol=1e-5)
    np.testing.assert_allclose(r, _rz(roll) @ _ry(yaw) @ _rx(pitch), atol=1e-5)
  _assert_rotations(ours)


def test_euler_single_axes_rotate_the_right_way():
  # A positive yaw turns the nose (+z) towards +x; a positive pitch turns it towards -y.
  r = np.asarray(_euler_to_matrix(jnp.array([[0.0, 0.5, 0.0], [0.5, 0.0, 0.0]])))
  np.testing.assert_allclose(r[0] @ [0, 0, 1], [np.sin(0.5), 0, np.cos(0.5)], atol=1e-6)
  np.testing.assert_allclose(r[1] @ [0, 0, 1], [0, -np.sin(0.5), np.cos(0.5)], atol=1e-6)


def test_euler_batched_over_leading_dims():
  rng = np.random.default_rng(1)
  angles = rng.uniform(-2, 2, (2, 3, 3)).astype(np.float32)
  batched = np.asarray(_euler_to_matrix(jnp.asarray(angles)))
  assert batched.shape == (2, 3, 3, 3)
  for i in range(2):
    for j in range(3):
      single = np.asarray(_euler_to_matrix(jnp.asarray(angles[i, j])))
      assert single.shape == (3, 3)
      np.testing.assert_allclose(batched[i, j], single, atol=1e-6)
  _assert_rotations(batched)


def test_6d_recovers_rotation_from_its_first_two_rows():
  rotations = Rotation.random(5, random_state=2).as_matrix()
  r6 = np.concatenate([rotations[:, 0], rotations[:, 1]], -1)
  ours = np.asarray(_rotation_6d_to_matrix(jnp.asarray(r6, jnp.float32)))
  np.testing.assert_allclose(ours, rotations, atol=1e-5)


def test_6d_of_arbitrary_vectors_is_a_rotation_keeping_the_first_direction():
  rng = np.random.default_rng(3)
  r6 = rng.normal(size=(2, 4, 6)) * rng.uniform(0.1, 10, (2, 4, 1))
  ours = np.asarray(_rotation_6d_to_matrix(jnp.asarray(r6, jnp.float32)))
  assert ours.shape == (2, 4, 3, 3)
  _assert_rotations(ours)
  a, b = r6[..., :3], r6[..., 3:]
  np.testing.assert_allclose(ours[..., 0, :], a / np.linalg.norm(a, axis=-1, keepdims=True),
                             atol=1e-5)
  # The second row lies in the plane of a and b, on b's side of a.
  normal = np.cross(a, b)
  np.testing.assert_allclose(np.sum(ours[..., 1, :] * normal, -1), 0.0, atol=1e-4)
  assert np.all(np.sum(ours[..., 1, :] * b, -1) > 0)


def test_6d_gradients_are_finite():
  rng = np.random.default_rng(4)
  r6 = jnp.asarray(rng.normal(size=(3, 6)), jnp.float32)
  weights = jnp.asarray(rng.normal(size=(3, 3, 3)), jnp.float32)
  grad = jax.jit(jax.grad(lambda x: jnp.sum(render.rotation_6d_to_matrix(x) * weights)))(r6)
  assert np.all(np.isfinite(np.asarray(grad)))
  assert np.any(np.asarray(grad) != 0)


def test_rigid_transform_matches_numpy():
  rng = np.random.default_rng(5)
  points = rng.normal(size=(2, 4, 3))
  rotation = Rotation.random(2, random_state=6).as_matrix()
  translation = rng.normal(size=(2, 3))
  ours = np.asarray(_rigid_transform(jnp.asarray(points, jnp.float32),
                                           jnp.asarray(rotation, jnp.float32),
                                           jnp.asarray(translation, jnp.float32)))
  expected = np.stack([(rotation[b] @ points[b].T).T + translation[b] for b in range(2)])
  np.testing.assert_allclose(ours, expected, atol=1e-5)


def _random_cameras(kind, rng, size=(6, 10)):
  rotation = jnp.asarray(Rotation.random(2, random_state=7).as_matrix(), jnp.float32)
  if kind == "perspective":
    translation = jnp.asarray(rng.normal(size=(2, 3)) * 5, jnp.float32)
    return render.perspective_camera(rotation, translation, focal=jnp.array([50.0, 80.0]),
                                     distance=jnp.array([100.0, 150.0]), image_size=size)
  translation = jnp.asarray(rng.normal(size=(2, 2)) * 0.1, jnp.float32)
  return render.orthographic_camera(rotation, translation, jnp.array([0.01, 0.02]),
                                    image_size=size)


def _expected_projection(camera, points):
  """The projection formulas written out per camera, float64."""
  height, width = camera.image_size
  xy, depth = [], []
  for b in range(points.shape[0]):
    r = np.asarray(camera.rotation[b], np.float64)
    f = float(camera.focal[b])
    t = np.asarray(camera.translation[b], np.float64)
    if camera.kind == "perspective":
      x, y, z = (points[b] @ r.T + t).T
      d = float(camera.distance[b]) - z
      xy.append(np.stack([width / 2 + f * x / d, height / 2 - f * y / d], -1))
      depth.append(d)
    else:
      x, y, z = (points[b] @ r.T).T
      xy.append(np.stack([(f * x + t[0] + 1) * width / 2,
                          height / 2 - (f * y + t[1]) * width / 2], -1))
      depth.append(-z)
  return np.stack(xy), np.stack(depth)


@pytest.mark.parametrize("kind", ["perspective", "orthographic"])
def test_project_matches_formulas(kind):
  rng = np.random.default_rng(8)
  camera = _random_cameras(kind, rng)
  points = rng.normal(size=(2, 5, 3)) * 20
  xy, depth = _project(camera, jnp.asarray(points, jnp.float32))
  assert xy.shape == (2, 5, 2) and depth.shape == (2, 5)
  expected_xy, expected_depth = _expected_projection(camera, points)
  np.testing.assert_allclose(np.asarray(xy), expected_xy, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(np.asarray(depth), expected_depth, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kind", ["perspective", "orthographic"])
def test_project_batch_does_not_mix_cameras(kind):
  rng = np.random.default_rng(9)
  camera = _random_cameras(kind, rng)
  points = jnp.asarray(rng.normal(size=(2, 5, 3)) * 20, jnp.float32)
  xy, depth = _project(camera, points)
  for b in range(2):
    single = jax.tree_util.tree_map(lambda v, b=b: v[b:b + 1], camera)
    xy_b, depth_b = _project(single, points[b:b + 1])
    np.testing.assert_allclose(np.asarray(xy[b]), np.asarray(xy_b[0]), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(np.asarray(depth[b]), np.asarray(depth_b[0]), rtol=1e-6,
                               atol=1e-5)
  # Different cameras really project the same point differently.
  xy_swapped, _ = _project(camera, points[::-1])
  assert not np.allclose(np.asarray(xy_swapped[0]), np.asarray(xy[1]), atol=1e-2)


@pytest.mark.parametrize("kind", ["perspective", "orthographic"])
def test_nose_forward_is_nearer(kind):
  identity = jnp.eye(3)[None]
  if kind == "perspective":
    camera = render.perspective_camera(identity, jnp.zeros((1, 3)), focal=100.0, distance=500.0,
                                       image_size=(8, 8))
  else:
    camera = render.orthographic_camera(identity, jnp.zeros((1, 2)), 0.01, image_size=(8, 8))
  points = jnp.array([[[0.0, 0.0, -30.0], [0.0, 0.0, 0.0], [0.0, 0.0, 40.0]]])
  xy, depth = _project(camera, points)
  depth = np.asarray(depth[0])
  assert depth[2] < depth[1] < depth[0]
  # Points on the optical axis land on the image centre.
  np.testing.assert_allclose(np.asarray(xy[0]), np.full((3, 2), 4.0), atol=1e-5)
  # +x goes right and +y goes up (smaller row) in the image.
  xy, _ = _project(camera, jnp.array([[[10.0, 0.0, 0.0], [0.0, 10.0, 0.0]]]))
  xy = np.asarray(xy[0])
  assert xy[0, 0] > 4.0 and abs(xy[0, 1] - 4.0) < 1e-5
  assert xy[1, 1] < 4.0 and abs(xy[1, 0] - 4.0) < 1e-5
