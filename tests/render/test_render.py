"""`render()`: composition of the stages, texture path, and data-parallel transforms."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from jaxface import render
from tests.render import reference

SIZE = 24
# Jitted: eager op-by-op rendering is slow on CPU.
_render = jax.jit(render.render, static_argnames=("edge_antialias", "cull_backfaces", "capacity"))


def _batch(batch):
  vertices, triangles = reference.uv_sphere()
  angles = jnp.stack([jnp.linspace(-0.4, 0.4, batch), jnp.linspace(-1.0, 1.0, batch),
                      jnp.zeros(batch)], -1)
  camera = render.perspective_camera(render.euler_to_matrix(angles), jnp.zeros((batch, 3)),
                                     focal=45.0, distance=200.0, image_size=(SIZE, SIZE))
  points = jnp.broadcast_to(jnp.asarray(vertices, jnp.float32), (batch,) + vertices.shape)
  colours = jnp.asarray(0.3 + 0.5 * np.abs(np.sin(vertices / 20.0)), jnp.float32)
  light = jnp.broadcast_to(render.ambient_sh(0.8).at[2].set(0.4), (batch, 9, 3))
  return points, render.make_topology(triangles), camera, colours, light


def test_uniform_light_and_background_composite():
  points, topology, camera, colours, _ = _batch(2)
  background = jnp.full((2, SIZE, SIZE, 3), 0.25)
  out = _render(points, topology, camera, albedo=colours,
                      light=jnp.broadcast_to(render.ambient_sh(1.0), (2, 9, 3)),
                      background=background, edge_antialias=False)
  unlit = _render(points, topology, camera, albedo=colours, background=background,
                        edge_antialias=False)
  np.testing.assert_allclose(np.asarray(out.image), np.asarray(unlit.image), atol=1e-5)
  mask = np.asarray(out.mask)
  assert set(np.unique(mask)) == {0.0, 1.0}
  np.testing.assert_allclose(np.asarray(out.image)[mask == 0], 0.25)


def test_texture_path_matches_vertex_colours_for_a_constant_texture():
  points, topology, camera, _, light = _batch(2)
  uv = jnp.asarray(np.random.default_rng(0).uniform(size=(points.shape[1], 2)), jnp.float32)
  texture = jnp.broadcast_to(jnp.array([0.6, 0.4, 0.3]), (8, 8, 3))
  by_texture = _render(points, topology, camera, texture=texture, uv=uv, light=light)
  by_albedo = _render(points, topology, camera,
                            albedo=jnp.broadcast_to(jnp.array([0.6, 0.4, 0.3]), points.shape[1:]),
                            light=light)
  np.testing.assert_allclose(np.asarray(by_texture.image), np.asarray(by_albedo.image), atol=1e-5)


def test_phong_lights_the_side_facing_the_light():
  points, topology, camera, colours, _ = _batch(1)
  light = render.PhongLight(direction=jnp.array([[1.0, 0.0, 0.3]]),
                            colour=jnp.ones((1, 3)), ambient=jnp.full((1, 3), 0.1),
                            specular=jnp.array([0.3]))
  out = _render(points, topology, camera, albedo=jnp.full_like(colours, 0.5),
                      light=light, edge_antialias=False)
  image, mask = np.asarray(out.image[0]).mean(-1), np.asarray(out.mask[0]) > 0
  right, left = image[:, SIZE // 2 + 2:][mask[:, SIZE // 2 + 2:]], image[:, :SIZE // 2 - 2][
      mask[:, :SIZE // 2 - 2]]
  assert right.mean() > 2 * left.mean()  # +x (image right) faces the light


def _render_fn(topology, colours):
  def fn(points, rotation, light):
    camera = render.perspective_camera(rotation, jnp.zeros((rotation.shape[0], 3)), focal=45.0,
                                       distance=200.0, image_size=(SIZE, SIZE))
    out = _render(points, topology, camera, albedo=colours, light=light)
    return out.image, out.mask
  return fn


def test_shard_map_and_pmap_match_the_single_device_result():
  devices = jax.devices()
  assert len(devices) == 8  # tests/conftest.py simulates 8 CPU devices
  points, topology, camera, colours, light = _batch(8)
  fn = _render_fn(topology, colours)
  expected_image, expected_mask = jax.jit(fn)(points, camera.rotation, light)

  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  sharded = jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=(P("data"), P("data"), P("data")),
                                  out_specs=(P("data"), P("data"))))
  image, mask = sharded(points, camera.rotation, light)
  np.testing.assert_allclose(np.asarray(image), np.asarray(expected_image), atol=1e-5)
  np.testing.assert_allclose(np.asarray(mask), np.asarray(expected_mask), atol=1e-5)

  per_device = lambda x: x.reshape((8, 1) + x.shape[1:])
  image, mask = jax.pmap(fn)(per_device(points), per_device(camera.rotation), per_device(light))
  np.testing.assert_allclose(np.asarray(image).reshape(expected_image.shape),
                             np.asarray(expected_image), atol=1e-5)

  # A gradient through the sharded renderer equals the single-device one.
  loss = lambda f: (lambda p, r, l: jnp.sum(f(p, r, l)[0] ** 2))
  single = jax.grad(loss(jax.jit(fn)), argnums=2)(points, camera.rotation, light)
  multi = jax.grad(loss(sharded), argnums=2)(points, camera.rotation, light)
  np.testing.assert_allclose(np.asarray(multi), np.asarray(single), rtol=1e-4, atol=1e-4)


def test_vmap_over_groups_matches_one_batch():
  points, topology, camera, colours, light = _batch(4)
  fn = _render_fn(topology, colours)
  image, mask = jax.jit(fn)(points, camera.rotation, light)
  group = lambda x: x.reshape((2, 2) + x.shape[1:])
  image_v, mask_v = jax.jit(jax.vmap(fn))(group(points), group(camera.rotation), group(light))
  np.testing.assert_allclose(np.asarray(image_v).reshape(image.shape), np.asarray(image), atol=1e-5)
  np.testing.assert_allclose(np.asarray(mask_v).reshape(mask.shape), np.asarray(mask), atol=1e-5)
