"""Shading: the SH irradiance basis, ambient and directional SH light, Phong terms and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxface import render

# Jitted once per shape: much faster than op-by-op dispatch.
_sh_basis = jax.jit(render.sh_basis)
_shade_sh = jax.jit(render.shade_sh)
_shade_phong = jax.jit(render.shade_phong)


def _unit_normals(rng, shape):
  n = rng.normal(size=shape + (3,))
  return n / np.linalg.norm(n, axis=-1, keepdims=True)


def _sh_reference(n):
  """Real SH of bands 0-2 (no Condon-Shortley phase) times the Lambertian band factors."""
  x, y, z = n[..., 0], n[..., 1], n[..., 2]
  pi = np.pi
  band0 = [np.full_like(x, 1 / (2 * np.sqrt(pi)))]
  band1 = [np.sqrt(3 / (4 * pi)) * y, np.sqrt(3 / (4 * pi)) * z, np.sqrt(3 / (4 * pi)) * x]
  band2 = [np.sqrt(15 / (4 * pi)) * x * y, np.sqrt(15 / (4 * pi)) * y * z,
           np.sqrt(5 / (16 * pi)) * (3 * z ** 2 - 1), np.sqrt(15 / (4 * pi)) * x * z,
           np.sqrt(15 / (16 * pi)) * (x ** 2 - y ** 2)]
  factors = [pi] + [2 * pi / 3] * 3 + [pi / 4] * 5
  return np.stack([f * b for f, b in zip(factors, band0 + band1 + band2)], -1)


def test_sh_basis_matches_written_out_formulas():
  rng = np.random.default_rng(0)
  normals = _unit_normals(rng, (2, 7))
  ours = np.asarray(_sh_basis(jnp.asarray(normals, jnp.float32)))
  assert ours.shape == (2, 7, 9)
  np.testing.assert_allclose(ours, _sh_reference(normals), atol=1e-5)


def test_sh_basis_reproduces_clamped_cosine_irradiance():
  # Ramamoorthi-Hanrahan: the 9-term basis approximates E(n) = ∫ max(n·ω, 0) L(ω) dω; for
  # L = Y10 (a light along +z), E(n) = (2π/3) Y10(n) exactly (only band 1 present).
  rng = np.random.default_rng(1)
  normals = _unit_normals(rng, (50,))
  basis = np.asarray(_sh_basis(jnp.asarray(normals, jnp.float32)))
  np.testing.assert_allclose(basis[:, 2], 2 * np.pi / 3 * np.sqrt(3 / (4 * np.pi))
                             * normals[:, 2], atol=1e-5)


@pytest.mark.parametrize("intensity", [1.0, 0.37])
def test_ambient_light_is_uniform(intensity):
  rng = np.random.default_rng(2)
  normals = _unit_normals(rng, (2, 3, 4)) * rng.uniform(0.5, 3, (2, 3, 4, 1))  # not unit
  albedo = rng.uniform(0, 1, (2, 3, 4, 3))
  light = jnp.broadcast_to(render.ambient_sh(intensity), (2, 9, 3))
  shaded = _shade_sh(jnp.asarray(albedo, jnp.float32), jnp.asarray(normals, jnp.float32),
                           light)
  np.testing.assert_allclose(np.asarray(shaded), intensity * albedo, rtol=1e-5, atol=1e-6)


def test_sh_shading_is_linear_in_light():
  rng = np.random.default_rng(3)
  albedo = jnp.asarray(rng.uniform(0, 1, (2, 5, 3)), jnp.float32)
  normals = jnp.asarray(_unit_normals(rng, (2, 5)), jnp.float32)
  l1, l2 = (jnp.asarray(rng.normal(size=(2, 9, 3)), jnp.float32) for _ in range(2))
  shade = lambda light: np.asarray(_shade_sh(albedo, normals, light))
  np.testing.assert_allclose(shade(1.5 * l1 - 0.7 * l2), 1.5 * shade(l1) - 0.7 * shade(l2),
                             rtol=1e-4, atol=1e-5)


def test_sh_shading_normalises_normals():
  rng = np.random.default_rng(8)
  albedo = jnp.asarray(rng.uniform(0, 1, (2, 4, 3)), jnp.float32)
  normals = _unit_normals(rng, (2, 4))
  light = jnp.asarray(rng.normal(size=(2, 9, 3)), jnp.float32)
  scaled = normals * rng.uniform(0.2, 5, (2, 4, 1))
  shade = lambda n: np.asarray(_shade_sh(albedo, jnp.asarray(n, jnp.float32), light))
  np.testing.assert_allclose(shade(scaled), shade(normals), rtol=1e-4, atol=1e-5)


def test_sh_shading_matches_numpy_per_image():
  rng = np.random.default_rng(4)
  albedo = rng.uniform(0, 1, (2, 3, 2, 3))
  normals = _unit_normals(rng, (2, 3, 2))
  light = rng.normal(size=(2, 9, 3))
  ours = np.asarray(_shade_sh(jnp.asarray(albedo, jnp.float32),
                                    jnp.asarray(normals, jnp.float32),
                                    jnp.asarray(light, jnp.float32)))
  expected = np.stack([albedo[b] * (_sh_reference(normals[b]) @ light[b]) for b in range(2)])
  np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)


def test_light_along_z_brightens_normals_facing_z():
  light = render.ambient_sh(0.5).at[2].set(0.3)[None]  # order-1 term along +z
  normals = jnp.array([[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]])
  shaded = np.asarray(_shade_sh(jnp.full((1, 3, 3), 0.8), normals, light))
  assert np.all(shaded[0, 0] > shaded[0, 1]) and np.all(shaded[0, 1] > shaded[0, 2])
  np.testing.assert_allclose(shaded[0, 1], 0.4, atol=1e-6)  # side-on: ambient only


def _phong_reference(albedo, normals, positions, light_direction, light_colour, ambient,
                     specular, shininess, eye=None):
  """Per-point Phong with numpy loops over the batch, float64."""
  out = np.zeros(np.shape(albedo))
  specular = np.broadcast_to(np.asarray(specular, np.float64), (albedo.shape[0],))
  for b in range(albedo.shape[0]):
    l = light_direction[b] / np.linalg.norm(light_direction[b])
    for idx in np.ndindex(albedo.shape[1:-1]):
      n = normals[b][idx] / np.linalg.norm(normals[b][idx])
      if eye is None:
        v = np.array([0.0, 0.0, 1.0])
      else:
        v = eye[b] - positions[b][idx]
        v = v / np.linalg.norm(v)
      n_dot_l = n @ l
      r = 2 * n_dot_l * n - l
      highlight = max(r @ v, 0.0) ** shininess if n_dot_l > 0 else 0.0
      out[b][idx] = (albedo[b][idx] * ambient[b] + albedo[b][idx] * light_colour[b]
                     * max(n_dot_l, 0.0) + specular[b] * light_colour[b] * highlight)
  return out


def _phong_inputs(rng, shape):
  batch = shape[0]
  return dict(albedo=rng.uniform(0, 1, shape + (3,)),
              normals=_unit_normals(rng, shape) + np.array([0, 0, 0.8]),
              positions=rng.normal(size=shape + (3,)) * 10,
              light_direction=rng.normal(size=(batch, 3)) + np.array([0, 0, 1.0]),
              light_colour=rng.uniform(0.5, 1, (batch, 3)),
              ambient=rng.uniform(0, 0.3, (batch, 3)))


@pytest.mark.parametrize("shape", [(2, 3, 4), (2, 6)], ids=["BHW", "BV"])
@pytest.mark.parametrize("with_eye", [False, True])
def test_phong_matches_numpy(shape, with_eye):
  rng = np.random.default_rng(5)
  inputs = _phong_inputs(rng, shape)
  specular = np.array([0.2, 0.6])
  eye = np.array([[0.0, 0.0, 40.0], [5.0, -3.0, 30.0]]) if with_eye else None
  ours = _shade_phong(**{k: jnp.asarray(v, jnp.float32) for k, v in inputs.items()},
                            specular=jnp.asarray(specular, jnp.float32), shininess=7.0,
                            eye=None if eye is None else jnp.asarray(eye, jnp.float32))
  assert ours.shape == shape + (3,)
  expected = _phong_reference(**inputs, specular=specular, shininess=7.0, eye=eye)
  np.testing.assert_allclose(np.asarray(ours), expected, rtol=1e-4, atol=1e-5)


def test_phong_head_on_highlight():
  albedo = jnp.array([[[0.3, 0.5, 0.7]]])
  z = jnp.array([[[0.0, 0.0, 1.0]]])
  colour, ambient = jnp.array([[0.9, 0.8, 0.6]]), jnp.array([[0.1, 0.2, 0.05]])
  out = _shade_phong(albedo, z, jnp.zeros((1, 1, 3)), light_direction=z[:, 0],
                           light_colour=colour, ambient=ambient, specular=0.25, shininess=20.0)
  expected = albedo * ambient + albedo * colour + 0.25 * colour
  np.testing.assert_allclose(np.asarray(out), np.asarray(expected), rtol=1e-6)


def _mirror(d, n):
  n = np.asarray(n, np.float64) / np.linalg.norm(n)
  return 2 * (n @ d) * n - d


# (normal, light): head-on from behind, oblique from behind, and a grazing normal lit from
# behind whose mirrored light direction still points towards the viewer (r·v > 0).
_BEHIND = [([0.0, 0.0, 1.0], [0.0, 0.0, -1.0]), ([0.0, 0.0, 1.0], [0.3, -0.2, -1.0]),
           ([1.0, 0.0, 0.3], list(_mirror(np.array([-1.0, 0.0, 0.5]), [1.0, 0.0, 0.3])))]


@pytest.mark.parametrize("normal, light", _BEHIND)
def test_phong_light_behind_gives_ambient_only(normal, light):
  n = np.asarray(normal) / np.linalg.norm(normal)
  assert n @ light < 0  # the light is behind the surface
  rng = np.random.default_rng(6)
  albedo = jnp.asarray(rng.uniform(0, 1, (1, 4, 3)), jnp.float32)
  normals = jnp.broadcast_to(jnp.array(normal), (1, 4, 3))
  ambient = jnp.array([[0.1, 0.2, 0.3]])
  out = _shade_phong(albedo, normals, jnp.zeros((1, 4, 3)),
                           light_direction=jnp.array([light]),
                           light_colour=jnp.ones((1, 3)), ambient=ambient, specular=1.0,
                           shininess=0.5)
  np.testing.assert_allclose(np.asarray(out), np.asarray(albedo * ambient[:, None]), rtol=1e-6)


@pytest.mark.parametrize("shininess", [0.5, 20.0])
@pytest.mark.parametrize("with_eye", [False, True])
def test_phong_gradients_are_finite_at_the_edges(shininess, with_eye):
  # Normals/lights chosen so that r·v = 0 exactly while lit (n = l = +x, v = +z), n·l = 0
  # exactly (n = +z, l = +x), lit and unlit generic cases, and a normal facing away.
  normals = jnp.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.3, 0.1, 1.0],
                        [0.0, 0.0, -1.0]],
                       [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0],
                        [0.2, 0.2, 0.9]]])
  light = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
  positions = jnp.zeros_like(normals)
  eye = jnp.array([[0.0, 0.0, 50.0], [0.0, 0.0, 50.0]]) if with_eye else None
  albedo = jnp.full_like(normals, 0.5)

  def loss(albedo, normals, light):  # shininess stays a Python constant, as in use
    out = render.shade_phong(albedo, normals, positions, light_direction=light,
                             light_colour=jnp.ones((2, 3)), ambient=jnp.full((2, 3), 0.1),
                             specular=0.5, shininess=shininess, eye=eye)
    return jnp.sum(out)

  value, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(albedo, normals, light)
  assert np.isfinite(float(value))
  for g in grads:
    assert np.all(np.isfinite(np.asarray(g)))
  # The generic lit normal (0.3, 0.1, 1) has a nonzero gradient: the check is not vacuous.
  assert np.any(np.asarray(grads[1])[0, 3] != 0)


def test_phong_batch_does_not_mix():
  rng = np.random.default_rng(7)
  inputs = {k: jnp.asarray(v, jnp.float32) for k, v in _phong_inputs(rng, (2, 5)).items()}
  specular = jnp.array([0.1, 0.9])
  both = _shade_phong(**inputs, specular=specular, shininess=5.0)
  for b in range(2):
    one = _shade_phong(**{k: v[b:b + 1] for k, v in inputs.items()},
                             specular=specular[b:b + 1], shininess=5.0)
    np.testing.assert_allclose(np.asarray(both[b]), np.asarray(one[0]), rtol=1e-6)
  swapped = dict(inputs, light_direction=inputs["light_direction"][::-1])
  other = _shade_phong(**swapped, specular=specular, shininess=5.0)
  assert not np.allclose(np.asarray(other), np.asarray(both), atol=1e-3)
