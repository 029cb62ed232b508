"""Sparse silhouette antialiasing: the same image and gradients as the dense form."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxface import render
from tests.render import reference

SIZE = 48


def _scene():
  vertices, triangles = reference.uv_sphere(12, 16)
  topology = render.make_topology(triangles)
  camera = render.perspective_camera(
      render.euler_to_matrix(jnp.array([[0.3, 0.5, 0.1], [-0.2, 1.2, 0.0]])),
      jnp.array([[5.0, 0.0, 0.0], [-8.0, 4.0, 0.0]]), focal=90.0, distance=200.0,
      image_size=(SIZE, SIZE))
  vertices = jnp.asarray(vertices, jnp.float32)[None].repeat(2, 0)
  xy, depth = render.project(camera, vertices)
  fragments = render.rasterize(xy, depth, topology.triangles, image_size=(SIZE, SIZE))
  rng = np.random.default_rng(0)
  image = jnp.asarray(rng.uniform(size=(2, SIZE, SIZE, 4)), jnp.float32)
  return image, fragments, xy, topology


def test_sparse_antialias_equals_dense_and_has_its_gradients():
  image, fragments, xy, topology = _scene()
  dense = render.antialias(image, fragments, xy, topology)
  sparse, overflow = render.antialias_silhouettes(image, fragments, xy, topology, 1024)
  assert np.all(np.asarray(overflow) == 0)
  changed = np.abs(np.asarray(dense - image)).max(-1) > 1e-6
  assert changed.sum() > 50  # the silhouettes really are blended
  np.testing.assert_allclose(np.asarray(sparse), np.asarray(dense), atol=1e-6)
  weights = jnp.asarray(np.random.default_rng(1).normal(size=image.shape), jnp.float32)
  grad_dense = jax.grad(lambda v: jnp.sum(render.antialias(image, fragments, v, topology)
                                          * weights))(xy)
  grad_sparse = jax.grad(lambda v: jnp.sum(render.antialias_silhouettes(
      image, fragments, v, topology, 1024)[0] * weights))(xy)
  assert np.abs(np.asarray(grad_dense)).max() > 1e-3
  np.testing.assert_allclose(np.asarray(grad_sparse), np.asarray(grad_dense), atol=1e-5)


def test_sparse_antialias_counts_the_pairs_it_leaves_hard():
  image, fragments, xy, topology = _scene()
  dense = np.asarray(render.antialias(image, fragments, xy, topology))
  _, needed = render.antialias_silhouettes(image, fragments, xy, topology, 4 * SIZE * SIZE)
  sparse, overflow = render.antialias_silhouettes(image, fragments, xy, topology, 16)
  # Candidates per image: horizontal + vertical, beyond 16 of each are left out.
  assert np.all(np.asarray(needed) == 0)
  assert np.all(np.asarray(overflow) > 0)
  differs = np.abs(np.asarray(sparse) - dense).max(-1) > 1e-6
  assert differs.sum() > 0
  # Pixels the blend never touches are unchanged either way.
  untouched = np.abs(dense - np.asarray(image)).max(-1) < 1e-7
  np.testing.assert_array_equal(np.asarray(sparse)[untouched], np.asarray(image)[untouched])
