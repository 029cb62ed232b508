"""Landmark, eye-closure, photometric and prior losses against hand-computed values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxface.losses import landmarks, photometric, regularization


def test_landmark_loss_values():
  target = jnp.zeros((2, 68, 2))
  predicted = target.at[0, :, 0].set(3.0).at[1, 5].set(jnp.array([3.0, 4.0]))
  l2 = landmarks.landmark_loss(predicted, target)
  np.testing.assert_allclose(l2, [9.0, 25.0 / 68], rtol=1e-6)
  l1 = landmarks.landmark_loss(predicted, target, norm="l1", scale=2.0)
  np.testing.assert_allclose(l1, [1.5, 3.5 / 68], rtol=1e-6)
  weights = jnp.zeros(68).at[5].set(1.0)
  np.testing.assert_allclose(landmarks.landmark_loss(predicted, target, weights=weights),
                             [9.0, 25.0], rtol=1e-6)
  with pytest.raises(AssertionError):
    landmarks.landmark_loss(predicted[:, :60], target)


def test_robust_landmark_loss_is_quadratic_near_zero_and_logarithmic_far():
  target = jnp.zeros((1, 68, 2))
  near = target.at[0, 0, 0].set(0.1)
  far = target.at[0, 0, 0].set(100.0)
  plain = lambda p: float(landmarks.landmark_loss(p, target)[0])
  robust = lambda p: float(landmarks.landmark_loss(p, target, robust=2.0)[0])
  np.testing.assert_allclose(robust(near), plain(near), rtol=1e-2)
  np.testing.assert_allclose(robust(far), 4.0 * np.log1p(100.0 ** 2 / 4.0) / 68, rtol=1e-5)
  # A point 100 units off pulls with 2 d c^2 / (c^2 + d^2), not 2 d.
  gradient = jax.grad(lambda p: landmarks.landmark_loss(p, target, robust=2.0)[0])(far)
  np.testing.assert_allclose(gradient[0, 0, 0], 2 * 100.0 * 4.0 / (4.0 + 100.0 ** 2) / 68,
                             rtol=1e-4)


def test_eye_closure_sees_lid_offsets_not_translation():
  rng = np.random.default_rng(0)
  target = jnp.asarray(rng.normal(size=(1, 68, 2)) * 10)
  shifted = target + jnp.array([5.0, -2.0])
  assert float(landmarks.eye_closure_loss(shifted, target)[0]) < 1e-5
  closed = target.at[0, 37, 1].add(2.0)  # move one upper lid by 2 px
  np.testing.assert_allclose(landmarks.eye_closure_loss(closed, target), [2.0 / 8], rtol=1e-5)


def test_masked_photometric_loss():
  target = jnp.zeros((1, 4, 4, 3))
  rendered = target.at[0, 0, 0].set(jnp.array([3.0, 4.0, 0.0]))
  mask = jnp.zeros((1, 4, 4)).at[0, :2, :2].set(1.0)
  np.testing.assert_allclose(photometric.masked_photometric_loss(rendered, target, mask),
                             [5.0 / 4], rtol=1e-6)
  np.testing.assert_allclose(photometric.masked_photometric_loss(rendered, target, mask,
                                                                 norm="l2"), [25.0 / 4], rtol=1e-6)
  assert float(photometric.masked_photometric_loss(rendered, target, 0 * mask)[0]) == 0.0
  grad = jax.grad(lambda r: photometric.masked_photometric_loss(r, target, mask).sum())(target)
  assert np.all(np.isfinite(np.asarray(grad)))  # sqrt guarded at zero error


def test_coefficient_prior():
  np.testing.assert_allclose(regularization.coefficient_prior(jnp.array([[1.0, 2.0], [0.0, 0.0]])),
                             [2.5, 0.0])
