"""Mesh geometry shared by the face models and the renderer (pure jnp)."""

import jax
import jax.numpy as jnp


def vertex_normals(vertices: jax.Array, triangles: jax.Array) -> jax.Array:
  """Area-weighted unit vertex normals, outward for counter-clockwise triangles.

  Args:
    vertices: [..., V, 3].
    triangles: [F, 3] int32.
  Returns:
    [..., V, 3] unit normals; isolated vertices get (0, 0, 0) without NaN gradients.
  """
  a, b, c = (vertices[..., triangles[:, i], :] for i in range(3))
  face_normals = jnp.cross(b - a, c - a)  # length = 2 x area: area weighting
  summed = jnp.zeros_like(vertices)
  for i in range(3):
    summed = summed.at[..., triangles[:, i], :].add(face_normals)
  squared = jnp.sum(summed * summed, axis=-1, keepdims=True)
  safe = jnp.where(squared > 1e-20, squared, 1.0)
  return jnp.where(squared > 1e-20, summed * jax.lax.rsqrt(safe), 0.0)
