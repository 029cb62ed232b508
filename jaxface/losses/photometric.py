"""Photometric losses over face pixels (per-example values)."""

import chex
import jax
import jax.numpy as jnp


def masked_photometric_loss(rendered: jax.Array, target: jax.Array, mask: jax.Array, *,
                            norm: str = "l21", trim: float = 0.0) -> jax.Array:
  """Colour error over the masked pixels, normalised by the mask area.

  Args:
    rendered, target: [B, H, W, 3] linear RGB in [0, 1].
    mask: [B, H, W] weights in [0, 1] (face region ∩ rendered coverage).
    norm: "l21" (mean per-pixel Euclidean colour distance, robust, Deng et al. 2019)
      or "l2" (mean squared error, MLFL-GA's pixel MSE).
    trim: pixels whose colour distance is at least this (Euclidean, no gradient) leave
      the mask, sum and area alike: what the model cannot explain (occluders, cast
      shadows, highlights). 0 keeps every pixel.
  Returns:
    [B] loss per example; 0 where the mask is empty.
  """
  chex.assert_equal_shape([rendered, target])
  chex.assert_shape(mask, rendered.shape[:-1])
  diff = rendered - target
  squared = jnp.sum(diff * diff, axis=-1)
  if trim:
    mask = mask * (jax.lax.stop_gradient(squared) < trim * trim)
  if norm == "l21":
    # sqrt has an infinite gradient at 0: guard it.
    per_pixel = jnp.sqrt(jnp.where(squared > 1e-12, squared, 1e-12))
  elif norm == "l2":
    per_pixel = squared
  else:
    raise ValueError(f"unknown norm {norm!r}")
  area = jnp.sum(mask, axis=(1, 2))
  return jnp.sum(per_pixel * mask, axis=(1, 2)) / jnp.maximum(area, 1.0)
