"""Coefficient regularisers: weighted squared norms of N(0, 1) coefficients."""

import jax
import jax.numpy as jnp


def coefficient_prior(coefficients: jax.Array) -> jax.Array:
  """Mean squared coefficient, [..., K] -> [...] (negative log N(0, I) up to constants / K)."""
  return jnp.mean(coefficients * coefficients, axis=-1)
