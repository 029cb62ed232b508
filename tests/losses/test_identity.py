"""Identity loss: 1 - cos, shape checks, safe gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxface import losses


def test_known_values():
  a = jnp.asarray(np.random.default_rng(0).normal(size=(4, 128)), jnp.float32)
  np.testing.assert_allclose(losses.identity_loss(a, a), 0.0, atol=1e-6)
  np.testing.assert_allclose(losses.identity_loss(a, -a), 2.0, atol=1e-6)
  np.testing.assert_allclose(losses.identity_loss(a, 3.0 * a), 0.0, atol=1e-6)  # scale-free
  e = jnp.eye(4, 128)
  orthogonal = jnp.roll(e, 1, axis=0)
  np.testing.assert_allclose(losses.identity_loss(e, orthogonal), 1.0, atol=1e-6)
  assert losses.identity_loss(a, a).shape == (4,)


def test_matches_numpy_cosine():
  rng = np.random.default_rng(1)
  a, b = rng.normal(size=(2, 3, 16))
  want = 1 - np.sum(a * b, -1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
  np.testing.assert_allclose(losses.identity_loss(jnp.asarray(a), jnp.asarray(b)), want,
                             rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape_a,shape_b", [((2, 128), (3, 128)), ((2, 128), (2, 64)),
                                             ((128,), (128,)), ((2, 3, 8), (2, 3, 8))])
def test_shape_mismatch_raises(shape_a, shape_b):
  with pytest.raises(ValueError, match="identity_loss"):
    losses.identity_loss(jnp.zeros(shape_a), jnp.zeros(shape_b))


def test_gradient_finite_at_zero():
  b = jnp.asarray(np.random.default_rng(2).normal(size=(2, 8)), jnp.float32)
  zero = jnp.zeros((2, 8))
  assert np.allclose(losses.identity_loss(zero, b), 1.0)
  grad_a, grad_b = jax.grad(lambda x, y: jnp.sum(losses.identity_loss(x, y)),
                            argnums=(0, 1))(zero, b)
  assert bool(jnp.all(jnp.isfinite(grad_a))) and bool(jnp.all(jnp.isfinite(grad_b)))
  grad_zero = jax.grad(lambda x: jnp.sum(losses.identity_loss(x, x)))(zero)
  assert bool(jnp.all(jnp.isfinite(grad_zero)))


def test_gradient_matches_finite_differences():
  rng = np.random.default_rng(3)
  a, b = (jnp.asarray(x, jnp.float32) for x in rng.normal(size=(2, 1, 6)))
  f = lambda x: jnp.sum(losses.identity_loss(x, b))
  grad = np.asarray(jax.grad(f)(a))
  step = 1e-2
  for i in range(6):
    d = jnp.zeros((1, 6)).at[0, i].set(step)
    fd = (float(f(a + d)) - float(f(a - d))) / (2 * step)
    assert abs(fd - grad[0, i]) < 1e-3
