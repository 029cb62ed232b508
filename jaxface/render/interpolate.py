"""Attribute interpolation through barycentrics and bilinear UV texture sampling."""

import jax
import jax.numpy as jnp

from jaxface.render.rasterize import Fragments


def interpolate(fragments: Fragments, triangles: jax.Array, attributes: jax.Array) -> jax.Array:
  """Interpolates per-vertex attributes at every pixel.

  Args:
    fragments: from `rasterize`, batch B.
    triangles: [F, 3] int32.
    attributes: [B, V, C] (or [V, C], shared by the batch): colours, normals, UVs...
  Returns:
    [B, H, W, C]; zero on background pixels.
  """
  if attributes.ndim == 2:
    attributes = jnp.broadcast_to(attributes, fragments.bary.shape[:1] + attributes.shape)
  corners = triangles[jnp.maximum(fragments.triangle_id, 0)]  # [B, H, W, 3]

  def one(attr, idx, bary):
    return jnp.einsum("hwkc,hwk->hwc", attr[idx], bary)

  return jax.vmap(one)(attributes, corners, fragments.bary)


def sample_texture(texture: jax.Array, uv: jax.Array) -> jax.Array:
  """Bilinear lookup of UV coordinates in a texture map, clamped at the border.

  Args:
    texture: [B, Ht, Wt, C] (or [Ht, Wt, C], shared).
    uv: [B, H, W, 2] in [0, 1], u to the right, v up (row 0 of the map is v = 1).
  Returns:
    [B, H, W, C]; differentiable w.r.t. the texture and the coordinates.
  """
  if texture.ndim == 3:
    texture = jnp.broadcast_to(texture, uv.shape[:1] + texture.shape)
  height, width = texture.shape[1:3]
  x = jnp.clip(uv[..., 0] * width - 0.5, 0.0, width - 1.0)
  y = jnp.clip((1.0 - uv[..., 1]) * height - 0.5, 0.0, height - 1.0)
  x0 = jnp.clip(jnp.floor(x), 0, width - 2).astype(jnp.int32) if width > 1 else jnp.zeros_like(x, jnp.int32)
  y0 = jnp.clip(jnp.floor(y), 0, height - 2).astype(jnp.int32) if height > 1 else jnp.zeros_like(y, jnp.int32)
  x1 = jnp.minimum(x0 + 1, width - 1)
  y1 = jnp.minimum(y0 + 1, height - 1)
  fx = (x - x0)[..., None]
  fy = (y - y0)[..., None]

  def one(tex, x0, x1, y0, y1, fx, fy):
    top = tex[y0, x0] * (1 - fx) + tex[y0, x1] * fx
    bottom = tex[y1, x0] * (1 - fx) + tex[y1, x1] * fx
    return top * (1 - fy) + bottom * fy

  return jax.vmap(one)(texture, x0, x1, y0, y1, fx, fy)
