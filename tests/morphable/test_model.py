"""MorphableModel functions: linearity, jit/vmap agreement, normals, landmarks, regions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxface import morphable
from jaxface.errors import ModelFormatError
from jaxface.morphable import build
from jaxface.morphable import model as model_lib


def _tiny_model(seed=0, num_vertices=200):
  """A random model with every field filled (no mesh meaning), for algebra tests."""
  rng = np.random.default_rng(seed)
  v = num_vertices
  return model_lib.from_numpy(dict(
      mean=rng.normal(size=(v, 3)), shape_basis=rng.normal(size=(v, 3, 5)),
      expression_basis=rng.normal(size=(v, 3, 4)), albedo_mean=rng.uniform(size=(v, 3)),
      albedo_basis=rng.normal(size=(v, 3, 6)) * 0.1,
      triangles=rng.integers(0, v, size=(50, 3)), uv=rng.uniform(size=(v, 2)),
      landmark_vertices=rng.integers(0, v, size=(68, 3)),
      landmark_bary=rng.dirichlet(np.ones(3), size=68), region=rng.integers(0, 4, size=v),
      name="tiny", licence="none"))


def test_decode_is_linear_and_matches_numpy():
  model = _tiny_model()
  rng = np.random.default_rng(1)
  s1, s2 = rng.normal(size=(2, 5)).astype(np.float32)
  e1, e2 = rng.normal(size=(2, 4)).astype(np.float32)
  offset = lambda s, e: np.asarray(morphable.decode(model, s, e)) - np.asarray(model.mean)
  np.testing.assert_allclose(offset(2 * s1 - 3 * s2, 2 * e1 - 3 * e2),
                             2 * offset(s1, e1) - 3 * offset(s2, e2), rtol=1e-4, atol=1e-4)
  expected = (np.asarray(model.mean) + np.asarray(model.shape_basis) @ s1
              + np.asarray(model.expression_basis) @ e1)
  np.testing.assert_allclose(np.asarray(morphable.decode(model, s1, e1)), expected,
                             rtol=1e-5, atol=1e-4)


def test_jit_vmap_and_leading_dims_agree():
  model = _tiny_model()
  rng = np.random.default_rng(2)
  shapes = rng.normal(size=(3, 5)).astype(np.float32)
  exprs = rng.normal(size=(3, 4)).astype(np.float32)
  looped = np.stack([np.asarray(morphable.decode(model, s, e)) for s, e in zip(shapes, exprs)])
  vmapped = jax.vmap(morphable.decode, in_axes=(None, 0, 0))(model, shapes, exprs)
  jitted = jax.jit(morphable.decode)(model, shapes, exprs)  # model passed as a pytree
  np.testing.assert_allclose(np.asarray(vmapped), looped, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(jitted), looped, rtol=1e-5, atol=1e-5)
  albedos = jax.jit(jax.vmap(morphable.albedo, in_axes=(None, 0)))(model, rng.normal(size=(3, 6)))
  assert albedos.shape == (3, 200, 3)


def test_landmarks_3d_interpolates_barycentrically():
  model = _tiny_model()
  vertices = np.asarray(model.mean)
  expected = np.einsum("lcd,lc->ld", vertices[np.asarray(model.landmark_vertices)],
                       np.asarray(model.landmark_bary))
  np.testing.assert_allclose(np.asarray(morphable.landmarks_3d(model, model.mean)), expected,
                             rtol=1e-5, atol=1e-5)
  picked = np.asarray(model.landmarks)
  corners = np.asarray(model.landmark_vertices)
  best = np.asarray(model.landmark_bary).argmax(axis=1)
  np.testing.assert_array_equal(picked, corners[np.arange(68), best])


def test_vertex_normals_of_a_tetrahedron_point_outward_and_have_finite_gradients():
  vertices = jnp.array([[0., 0., 0.], [1., 0., 0.], [0., 1., 0.], [0., 0., 1.], [5., 5., 5.]])
  triangles = jnp.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], jnp.int32)
  normals = np.asarray(morphable.vertex_normals(vertices, triangles))
  centre = np.asarray(vertices[:4]).mean(axis=0)
  radial = np.asarray(vertices[:4]) - centre
  assert np.all(np.sum(normals[:4] * radial, axis=1) > 0)
  np.testing.assert_allclose(np.linalg.norm(normals[:4], axis=1), 1.0, rtol=1e-6)
  np.testing.assert_array_equal(normals[4], 0.0)  # unused vertex: zero, not NaN
  grad = jax.grad(lambda v: morphable.vertex_normals(v, triangles).sum())(vertices)
  assert np.all(np.isfinite(np.asarray(grad)))


def test_region_weights_follow_labels():
  model = _tiny_model()
  weights = np.asarray(morphable.region_weights(model))
  expected = np.asarray(morphable.PRNET_REGION_WEIGHTS)[np.asarray(model.region)]
  np.testing.assert_array_equal(weights, expected)


def test_numpy_round_trip_keeps_every_field():
  model = _tiny_model()
  again = model_lib.from_numpy(model_lib.to_numpy(model))
  for a, b in zip(jax.tree.leaves(model), jax.tree.leaves(again)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert (again.name, again.licence) == (model.name, model.licence)


def test_check_scale_rejects_metres():
  points = np.zeros((68, 3))
  points[36, 0], points[45, 0] = -0.045, 0.045
  with pytest.raises(ModelFormatError, match="units"):
    build.check_scale(points, "metre model")


def test_scale_direction_is_where_the_size_changes():
  model = _tiny_model(seed=3)
  mean = np.asarray(model.mean)
  outward = mean - mean.mean(0)
  size = lambda shape: np.sum(  # first-order size change: projection on the outward field
      (np.asarray(morphable.decode(model, shape, np.zeros(4))) - mean) * outward)
  direction = np.asarray(morphable.scale_direction(model))
  np.testing.assert_allclose(np.linalg.norm(direction), 1.0, rtol=1e-5)
  assert size(0.01 * direction) > 0
  rng = np.random.default_rng(4)
  for _ in range(3):  # any change orthogonal to it keeps the size
    other = rng.normal(size=5)
    other -= np.dot(other, direction) * direction
    assert abs(size(other)) < 1e-4 * abs(size(direction)) * np.linalg.norm(other)
  # and it is the steepest: no unit change grows the size faster
  for _ in range(3):
    other = rng.normal(size=5)
    assert size(other / np.linalg.norm(other)) <= size(direction) + 1e-6
