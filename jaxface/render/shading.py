"""Shading: 9-band spherical-harmonics Lambertian lighting and Phong.

Normals, light directions and view directions are in the camera-aligned frame
(x right, y up, z towards the camera). Colours are linear RGB.
"""

import math

import jax
import jax.numpy as jnp

# Real orthonormal SH constants (bands 0-2) and the Lambertian kernel per band
# (pi, 2pi/3, pi/4; Ramamoorthi & Hanrahan 2001), folded together.
_Y00 = 0.5 * math.sqrt(1 / math.pi)
_Y1 = math.sqrt(3 / (4 * math.pi))
_Y2 = 0.5 * math.sqrt(15 / math.pi)
_Y20 = 0.25 * math.sqrt(5 / math.pi)
_A = (math.pi, 2 * math.pi / 3, math.pi / 4)


def _unit(v: jax.Array) -> jax.Array:
  squared = jnp.sum(v * v, axis=-1, keepdims=True)
  return v * jax.lax.rsqrt(jnp.maximum(squared, 1e-12))


def sh_basis(normals: jax.Array) -> jax.Array:
  """[..., 3] unit normals -> [..., 9] irradiance basis H_k(n) (MLFL-GA eq. 3).

  Order: (0,0), (1,-1) y, (1,0) z, (1,1) x, (2,-2) xy, (2,-1) yz, (2,0) 3z²-1,
  (2,1) xz, (2,2) x²-y²; each scaled by its band's Lambertian factor, so a light
  with coefficient 1/(pi·Y00) on k=0 and zeros elsewhere gives irradiance 1.
  """
  x, y, z = normals[..., 0], normals[..., 1], normals[..., 2]
  return jnp.stack([
      _A[0] * _Y00 * jnp.ones_like(x),
      _A[1] * _Y1 * y, _A[1] * _Y1 * z, _A[1] * _Y1 * x,
      _A[2] * _Y2 * x * y, _A[2] * _Y2 * y * z, _A[2] * _Y20 * (3 * z * z - 1),
      _A[2] * _Y2 * x * z, _A[2] * 0.5 * _Y2 * (x * x - y * y)], axis=-1)


def ambient_sh(intensity: float = 1.0) -> jax.Array:
  """[9, 3] SH light giving uniform irradiance `intensity` in every colour."""
  return jnp.zeros((9, 3)).at[0].set(intensity / (_A[0] * _Y00))


def shade_sh(albedo: jax.Array, normals: jax.Array, light: jax.Array) -> jax.Array:
  """Lambertian SH shading F = A ⊙ Σ_k l_k H_k(N).

  Args:
    albedo: [B, ..., 3] reflectance.
    normals: [B, ..., 3] normals (normalised here).
    light: [B, 9, 3] SH coefficients per colour (27 numbers per image).
  Returns:
    [B, ..., 3] radiance.
  """
  basis = sh_basis(_unit(normals))  # [B, ..., 9]
  flat = basis.reshape(basis.shape[0], -1, 9)
  irradiance = jnp.einsum("bnk,bkc->bnc", flat, light,
                          precision=jax.lax.Precision.HIGHEST).reshape(albedo.shape)
  return albedo * irradiance


def shade_phong(albedo: jax.Array, normals: jax.Array, positions: jax.Array, *,
                light_direction: jax.Array, light_colour: jax.Array, ambient: jax.Array,
                specular: float | jax.Array = 0.2, shininess: float = 20.0,
                eye: jax.Array | None = None) -> jax.Array:
  """Phong shading: ambient + diffuse + specular (GAN-3DMM).

  Args:
    albedo, normals, positions: [B, ..., 3]; positions in the camera-aligned frame, mm.
    light_direction: [B, 3] direction towards the light (normalised here).
    light_colour: [B, 3]; ambient: [B, 3] ambient light colour.
    specular: scalar or [B] specular reflectance (white highlights).
    shininess: Phong exponent.
    eye: [B, 3] camera position (default: far along +z, i.e. view direction +z).
  Returns:
    [B, ..., 3] radiance.
  """
  extra = (1,) * (albedo.ndim - 2)
  expand = lambda v: jnp.reshape(v, v.shape[:1] + extra + v.shape[1:])
  n = _unit(normals)
  l = expand(_unit(light_direction))
  if eye is None:
    view = jnp.broadcast_to(jnp.array([0.0, 0.0, 1.0]), n.shape)
  else:
    view = _unit(expand(eye) - positions)
  n_dot_l = jnp.sum(n * l, axis=-1, keepdims=True)
  reflected = 2 * n_dot_l * n - l
  r_dot_v = jnp.maximum(jnp.sum(reflected * view, axis=-1, keepdims=True), 0.0)
  lit = n_dot_l > 0
  # r_dot_v ** shininess has a NaN gradient at 0 for shininess < 1: guard the base.
  highlight = jnp.where(lit & (r_dot_v > 0), jnp.where(r_dot_v > 0, r_dot_v, 1.0) ** shininess, 0.0)
  specular = jnp.reshape(jnp.asarray(specular, albedo.dtype), (-1,) + extra + (1,))
  colour = expand(light_colour)
  return (albedo * expand(ambient) + albedo * colour * jnp.maximum(n_dot_l, 0.0)
          + specular * colour * highlight)
