"""Renderer gradients: finite differences inside faces, silhouettes that move, no NaN."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxface import render
from tests.render import reference

SIZE = 32


def _scene(rings=8, segments=12):
  vertices, triangles = reference.uv_sphere(rings, segments)
  topology = render.make_topology(triangles)
  colours = 0.5 + 0.4 * np.sin(vertices / 17.0)  # smooth, varied per-vertex albedo
  camera = render.perspective_camera(
      render.euler_to_matrix(jnp.array([[0.3, 0.5, 0.1]])), jnp.zeros((1, 3)), focal=60.0,
      distance=200.0, image_size=(SIZE, SIZE))
  light = render.ambient_sh(0.7)[None].at[:, 1:4].set(jnp.array([[0.2, 0.1, 0.3]] * 3).T)
  return (jnp.asarray(vertices, jnp.float32)[None], topology,
          jnp.asarray(colours, jnp.float32)[None], camera, light)


def test_image_gradients_match_finite_differences_away_from_edges():
  vertices, topology, colours, camera, light = _scene()
  rng = np.random.default_rng(0)
  weights = jnp.asarray(rng.normal(size=(1, SIZE, SIZE, 3)), jnp.float32)

  @jax.jit
  def shade(v, l):
    return render.render(v, topology, camera, albedo=colours, light=l, edge_antialias=False)

  out = shade(vertices, light)
  bary = np.asarray(out.fragments.bary[0])
  interior = (np.asarray(out.fragments.triangle_id[0]) >= 0) & (bary.min(-1) > 0.1)
  assert interior.sum() > 100
  mask = jnp.asarray(interior[None, ..., None], jnp.float32)
  loss = jax.jit(lambda v, l: jnp.sum(shade(v, l).image * weights * mask))
  grad_v, grad_l = jax.grad(loss, argnums=(0, 1))(vertices, light)

  direction = jnp.asarray(rng.normal(size=vertices.shape), jnp.float32)
  step = 1e-2
  ids_plus = shade(vertices + step * direction, light).fragments.triangle_id
  ids_minus = shade(vertices - step * direction, light).fragments.triangle_id
  assert np.array_equal(np.asarray(ids_plus)[0][interior], np.asarray(ids_minus)[0][interior])
  numeric = (loss(vertices + step * direction, light)
             - loss(vertices - step * direction, light)) / (2 * step)
  analytic = jnp.sum(grad_v * direction)
  np.testing.assert_allclose(float(analytic), float(numeric), rtol=2e-2, atol=1e-3)

  light_direction = jnp.asarray(rng.normal(size=light.shape), jnp.float32)
  numeric_l = (loss(vertices, light + 0.1 * light_direction)
               - loss(vertices, light - 0.1 * light_direction)) / 0.2
  np.testing.assert_allclose(float(jnp.sum(grad_l * light_direction)), float(numeric_l),
                             rtol=1e-3, atol=1e-3)


def _iou(a, b):
  a, b = np.asarray(a) > 0.5, np.asarray(b) > 0.5
  return (a & b).sum() / max((a | b).sum(), 1)


def test_silhouette_loss_moves_the_mesh_onto_the_target():
  vertices, topology, colours, _, _ = _scene(12, 16)
  camera = render.perspective_camera(jnp.eye(3)[None], jnp.zeros((1, 3)), focal=60.0,
                                     distance=200.0, image_size=(48, 48))

  @jax.jit
  def silhouette(params):
    shift_mm = 10.0 * params["shift"]  # parameters of order one for Adam
    moved = vertices * jnp.exp(params["log_scale"]) + jnp.concatenate([shift_mm, jnp.zeros(1)])
    return render.render(moved, topology, camera, albedo=colours).mask

  target = silhouette({"shift": jnp.zeros(2), "log_scale": jnp.zeros(())})
  params = {"shift": jnp.array([1.4, -1.0]), "log_scale": jnp.log(jnp.array(0.75))}
  start = _iou(silhouette(params), target)
  optimiser = optax.adam(0.05)
  state = optimiser.init(params)

  @jax.jit
  def step(params, state):
    grads = jax.grad(lambda p: jnp.mean((silhouette(p) - target) ** 2))(params)
    updates, state = optimiser.update(grads, state)
    return optax.apply_updates(params, updates), state

  for _ in range(150):
    params, state = step(params, state)
  assert start < 0.7
  assert _iou(silhouette(params), target) > 0.95


def test_no_nan_gradients_on_degenerate_and_edge_on_triangles():
  rng = np.random.default_rng(3)
  vertices = rng.normal(scale=30.0, size=(1, 40, 3)).astype(np.float32)
  vertices[0, 5] = vertices[0, 4]  # duplicate vertex: zero-area triangles
  vertices[0, 6] = (vertices[0, 4] + vertices[0, 7]) / 2  # collinear
  vertices[0, 10:13, 2] = 0.0
  vertices[0, 10:13, 0] = 5.0  # a triangle seen exactly edge-on (plane x = 5)
  triangles = np.concatenate([[[4, 5, 7], [4, 6, 7], [10, 11, 12], [4, 4, 4]],
                              rng.integers(0, 40, size=(60, 3))]).astype(np.int32)
  topology = render.make_topology(triangles)
  camera = render.perspective_camera(jnp.eye(3)[None], jnp.zeros((1, 3)), focal=40.0,
                                     distance=120.0, image_size=(SIZE, SIZE))
  colours = jnp.asarray(rng.uniform(size=(1, 40, 3)), jnp.float32)
  light = render.ambient_sh(0.8)[None].at[:, 2].set(0.3)

  def loss(v, l, c):
    out = render.render(v, topology, camera, albedo=c, light=l, cull_backfaces=False,
                        capacity=render.Capacity(tiers=((2, None), (SIZE, 64))),
                        on_overflow="raise")
    return jnp.sum(out.image) + jnp.sum(out.mask) + 1e-3 * jnp.sum(out.depth)

  grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(jnp.asarray(vertices), light, colours)
  for g in grads:
    assert np.all(np.isfinite(np.asarray(g)))
  assert float(jnp.abs(grads[0]).sum()) > 0
