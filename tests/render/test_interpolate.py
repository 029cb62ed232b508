"""Barycentric interpolation of vertex attributes and bilinear UV texture sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxface import render

# Jitted once per shape: much faster than op-by-op dispatch.
_interpolate = jax.jit(render.interpolate)
_sample_texture = jax.jit(render.sample_texture)
_rasterize = jax.jit(render.rasterize, static_argnames=("image_size", "cull_backfaces"))


def _fragments(rng, batch=2, height=3, width=4, num_triangles=5):
  """Hand-made Fragments: random visible triangles, some background (bary 0 there)."""
  ids = rng.integers(0, num_triangles, (batch, height, width))
  ids[rng.uniform(size=ids.shape) < 0.3] = -1
  ids[0, 0, 0] = -1
  ids[-1, -1, -1] = num_triangles - 1
  bary = rng.uniform(0.05, 1, (batch, height, width, 3))
  bary /= bary.sum(-1, keepdims=True)
  bary[ids < 0] = 0.0
  mask = (ids >= 0).astype(np.float32)
  fragments = render.Fragments(triangle_id=jnp.asarray(ids, jnp.int32),
                               bary=jnp.asarray(bary, jnp.float32),
                               depth=jnp.asarray(mask), mask=jnp.asarray(mask),
                               overflow=jnp.zeros((batch,), jnp.int32))
  return fragments, ids, bary


def _interpolate_numpy(ids, bary, triangles, attributes):
  out = np.zeros(ids.shape + (attributes.shape[-1],))
  for b, i, j in np.ndindex(ids.shape):
    if ids[b, i, j] >= 0:
      attr = attributes[b] if attributes.ndim == 3 else attributes
      for k in range(3):
        out[b, i, j] += bary[b, i, j, k] * attr[triangles[ids[b, i, j], k]]
  return out


@pytest.mark.parametrize("shared", [False, True])
def test_interpolate_matches_numpy(shared):
  rng = np.random.default_rng(0)
  fragments, ids, bary = _fragments(rng)
  triangles = rng.permuted(np.tile(np.arange(7), (5, 1)), axis=1)[:, :3].astype(np.int32)
  attributes = rng.normal(size=(7, 2) if shared else (2, 7, 2))
  ours = np.asarray(_interpolate(fragments, jnp.asarray(triangles),
                                       jnp.asarray(attributes, jnp.float32)))
  assert ours.shape == (2, 3, 4, 2)
  np.testing.assert_allclose(ours, _interpolate_numpy(ids, bary, triangles, attributes),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(ours[ids < 0], 0.0)
  if shared:
    per_batch = _interpolate(fragments, jnp.asarray(triangles),
                                   jnp.broadcast_to(jnp.asarray(attributes, jnp.float32),
                                                    (2, 7, 2)))
    np.testing.assert_allclose(ours, np.asarray(per_batch), rtol=1e-6)


def test_interpolate_at_a_vertex_returns_its_attribute():
  rng = np.random.default_rng(1)
  fragments, ids, _ = _fragments(rng, batch=1)
  corner = np.zeros((1, 3, 4, 3), np.float32)
  corner[..., 1] = 1.0
  corner[ids < 0] = 0.0
  fragments = fragments.replace(bary=jnp.asarray(corner))
  triangles = np.array([[0, 1, 2], [3, 4, 5], [6, 0, 3], [1, 4, 6], [2, 5, 0]], np.int32)
  attributes = rng.normal(size=(1, 7, 3))
  ours = np.asarray(_interpolate(fragments, jnp.asarray(triangles),
                                       jnp.asarray(attributes, jnp.float32)))
  for i, j in np.ndindex(3, 4):
    expected = attributes[0, triangles[ids[0, i, j], 1]] if ids[0, i, j] >= 0 else 0.0
    np.testing.assert_allclose(ours[0, i, j], expected, rtol=1e-6)


def test_interpolate_of_rasterized_triangle_is_zero_off_mesh():
  xy = jnp.array([[[1.0, 1.0], [7.0, 1.5], [2.0, 6.5]]])
  triangles = jnp.array([[0, 1, 2]], jnp.int32)
  fragments = _rasterize(xy, jnp.full((1, 3), 10.0), triangles, image_size=(8, 8),
                               cull_backfaces=False)
  mask = np.asarray(fragments.mask[0]) > 0
  assert 0 < mask.sum() < 64
  colours = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
  out = np.asarray(_interpolate(fragments, triangles, colours))[0]
  np.testing.assert_array_equal(out[~mask], 0.0)
  np.testing.assert_allclose(out[mask].sum(-1), 1.0, rtol=1e-5)  # partition of unity
  # The screen position interpolated like any attribute gives back the pixel centre.
  position = np.asarray(_interpolate(fragments, triangles, xy))[0]
  rows, cols = np.nonzero(mask)
  np.testing.assert_allclose(position[mask], np.stack([cols + 0.5, rows + 0.5], -1), atol=1e-4)


def _texture(rng, height=4, width=8, channels=2):
  return rng.normal(size=(height, width, channels)).astype(np.float32)


def _texel_uv(i, j, height, width):
  return np.array([(j + 0.5) / width, 1 - (i + 0.5) / height], np.float32)


def test_sample_texture_at_texel_centres_is_exact():
  rng = np.random.default_rng(2)
  texture = np.stack([_texture(rng), _texture(rng)])
  uv = np.stack([np.stack([_texel_uv(i, j, 4, 8) for j in range(8)]) for i in range(4)])
  uv = np.broadcast_to(uv, (2, 4, 8, 2))
  ours = np.asarray(_sample_texture(jnp.asarray(texture), jnp.asarray(uv)))
  np.testing.assert_array_equal(ours, texture)


def test_sample_texture_v_points_up():
  texture = np.zeros((4, 8, 1), np.float32)
  texture[0] = 1.0  # the top row of the map
  uv = jnp.array([[[[0.5, 1.0], [0.5, 0.0], [0.3, 0.9]]]])
  ours = np.asarray(_sample_texture(jnp.asarray(texture), uv))[0, 0, :, 0]
  np.testing.assert_array_equal(ours, [1.0, 0.0, 1.0])


def test_sample_texture_midpoints_average_neighbours():
  rng = np.random.default_rng(3)
  texture = _texture(rng)
  uv, expected = [], []
  for i, j in [(0, 0), (1, 3), (2, 6), (3, 2)]:
    if j + 1 < 8:  # horizontal neighbours
      uv.append((_texel_uv(i, j, 4, 8) + _texel_uv(i, j + 1, 4, 8)) / 2)
      expected.append((texture[i, j] + texture[i, j + 1]) / 2)
    if i + 1 < 4:  # vertical neighbours
      uv.append((_texel_uv(i, j, 4, 8) + _texel_uv(i + 1, j, 4, 8)) / 2)
      expected.append((texture[i, j] + texture[i + 1, j]) / 2)
  # The centre of four texels averages all four.
  uv.append((_texel_uv(1, 4, 4, 8) + _texel_uv(2, 5, 4, 8)) / 2)
  expected.append(texture[1:3, 4:6].mean((0, 1)))
  ours = _sample_texture(jnp.asarray(texture), jnp.asarray(np.array(uv))[None, None])
  np.testing.assert_allclose(np.asarray(ours)[0, 0], np.array(expected), rtol=1e-6, atol=1e-6)


def test_sample_texture_clamps_outside_the_map():
  rng = np.random.default_rng(4)
  texture = _texture(rng)
  v_row1 = _texel_uv(1, 0, 4, 8)[1]
  u_col5 = _texel_uv(0, 5, 4, 8)[0]
  cases = [((-0.3, v_row1), texture[1, 0]), ((1.7, v_row1), texture[1, 7]),
           ((0.01, v_row1), texture[1, 0]), ((u_col5, 1.4), texture[0, 5]),
           ((u_col5, -2.0), texture[3, 5]), ((-1.0, 3.0), texture[0, 0]),
           ((5.0, -5.0), texture[3, 7])]
  uv = jnp.asarray(np.array([c[0] for c in cases], np.float32))[None, None]
  ours = np.asarray(_sample_texture(jnp.asarray(texture), uv))[0, 0]
  np.testing.assert_allclose(ours, np.array([c[1] for c in cases]), rtol=1e-6, atol=1e-6)


@jax.jit
def _texture_grad(texture, uv):
  """Gradient of channel 1 of the first sample w.r.t. the whole texture."""
  return jax.grad(lambda t: render.sample_texture(t, uv)[0, 0, 0, 1])(texture)


def test_sample_texture_matches_bilinear_formula_and_gradient():
  rng = np.random.default_rng(5)
  height, width = 5, 7
  texture = rng.normal(size=(height, width, 3)).astype(np.float32)
  for u, v in rng.uniform(0.1, 0.9, (4, 2)):
    x, y = u * width - 0.5, (1 - v) * height - 0.5  # continuous texel coordinates
    j, i = int(np.floor(x)), int(np.floor(y))
    fx, fy = x - j, y - i
    weights = np.zeros((height, width))
    weights[i, j], weights[i, j + 1] = (1 - fx) * (1 - fy), fx * (1 - fy)
    weights[i + 1, j], weights[i + 1, j + 1] = (1 - fx) * fy, fx * fy
    uv = jnp.array([[[[u, v]]]], jnp.float32)
    value = np.asarray(_sample_texture(jnp.asarray(texture), uv))[0, 0, 0]
    np.testing.assert_allclose(value, np.einsum("hw,hwc->c", weights, texture), rtol=1e-4,
                               atol=1e-5)
    grad = _texture_grad(jnp.asarray(texture), uv)
    expected = np.zeros((height, width, 3))
    expected[..., 1] = weights
    np.testing.assert_allclose(np.asarray(grad), expected, atol=1e-5)


def test_sample_texture_gradient_wrt_uv_matches_finite_differences():
  rng = np.random.default_rng(6)
  texture = jnp.asarray(_texture(rng, 5, 6, 1))
  uv = jnp.array([0.43, 0.61], jnp.float32)
  sample = jax.jit(lambda uv: render.sample_texture(texture, uv[None, None, None])[0, 0, 0, 0])
  grad = np.asarray(jax.jit(jax.grad(sample))(uv))
  step = 1e-3
  for k in range(2):
    delta = jnp.zeros(2).at[k].set(step)
    numeric = (float(sample(uv + delta)) - float(sample(uv - delta))) / (2 * step)
    np.testing.assert_allclose(grad[k], numeric, rtol=1e-2, atol=1e-3)


def test_shared_texture_equals_broadcast_texture():
  rng = np.random.default_rng(7)
  texture = jnp.asarray(_texture(rng, 3, 5, 3))
  uv = jnp.asarray(rng.uniform(-0.1, 1.1, (2, 3, 4, 2)), jnp.float32)
  shared = _sample_texture(texture, uv)
  per_batch = _sample_texture(jnp.broadcast_to(texture, (2, 3, 5, 3)), uv)
  assert shared.shape == (2, 3, 4, 3)
  np.testing.assert_array_equal(np.asarray(shared), np.asarray(per_batch))
  # Per-batch textures really are used per image.
  textures = jnp.stack([texture, -texture])
  both = np.asarray(_sample_texture(textures, uv))
  np.testing.assert_allclose(both[1], -np.asarray(shared)[1], rtol=1e-6)
  np.testing.assert_allclose(both[0], np.asarray(shared)[0], rtol=1e-6)


@pytest.mark.parametrize("size", [(1, 4), (4, 1), (1, 1)])
def test_sample_texture_single_row_or_column(size):
  rng = np.random.default_rng(8)
  texture = _texture(rng, *size, 2)
  height, width = size
  uv = np.stack([_texel_uv(i, j, height, width) for i in range(height) for j in range(width)])
  ours = np.asarray(_sample_texture(jnp.asarray(texture), jnp.asarray(uv)[None, None]))
  np.testing.assert_allclose(ours[0, 0], texture.reshape(-1, 2), rtol=1e-6)
