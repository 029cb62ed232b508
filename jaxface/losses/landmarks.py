"""Landmark losses on the 68 iBUG points (per-example values, like optax losses)."""

import chex
import jax
import jax.numpy as jnp

# Upper/lower eyelid pairs (iBUG): (37, 41), (38, 40) right eye, (43, 47), (44, 46) left.
EYELID_PAIRS = ((37, 41), (38, 40), (43, 47), (44, 46))


def landmark_loss(predicted: jax.Array, target: jax.Array, *, weights: jax.Array | None = None,
                  norm: str = "l2", scale: jax.Array | float = 1.0,
                  robust: float = 0.0) -> jax.Array:
  """Mean distance between predicted and target 2D landmarks.

  Args:
    predicted, target: [B, 68, 2] pixels.
    weights: [68] or [B, 68] per-landmark weights (default 1).
    norm: "l2" (mean squared distance) or "l1" (mean absolute coordinate error).
    scale: pixels per unit of the result, e.g. the image size, so the loss does not
      depend on resolution.
    robust: with "l2" and robust = c > 0 (units of the result), each point's squared
      distance d^2 becomes c^2 log(1 + d^2 / c^2) (Cauchy): the same near 0, growing
      only logarithmically past c, so a few grossly misplaced points pull little.
  Returns:
    [B] loss per example.
  """
  chex.assert_equal_shape([predicted, target])
  chex.assert_rank(predicted, 3)
  diff = (predicted - target) / scale
  if norm == "l2":
    per_point = jnp.sum(diff * diff, axis=-1)
    if robust:
      per_point = robust ** 2 * jnp.log1p(per_point / robust ** 2)
  elif norm == "l1":
    per_point = jnp.sum(jnp.abs(diff), axis=-1)
  else:
    raise ValueError(f"unknown norm {norm!r}")
  if weights is None:
    return jnp.mean(per_point, axis=-1)
  weights = jnp.broadcast_to(weights, per_point.shape)
  return jnp.sum(per_point * weights, axis=-1) / jnp.maximum(jnp.sum(weights, axis=-1), 1e-8)


def eye_closure_loss(predicted: jax.Array, target: jax.Array, *,
                     scale: jax.Array | float = 1.0) -> jax.Array:
  """Eyelid-offset consistency (MLFL-GA L_mid): upper-minus-lower lid vectors agree.

  Args:
    predicted, target: [B, 68, 2] pixels.
    scale: pixels per unit of the result.
  Returns:
    [B] mean absolute difference of the four eyelid offset vectors.
  """
  chex.assert_equal_shape([predicted, target])
  upper = jnp.array([p[0] for p in EYELID_PAIRS])
  lower = jnp.array([p[1] for p in EYELID_PAIRS])
  offset = lambda x: x[:, upper] - x[:, lower]
  return jnp.mean(jnp.abs(offset(predicted) - offset(target)) / scale, axis=(1, 2))
