"""GAN losses (GAN-3DMM eq. 2) against values computed by hand with numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxface import losses
from jaxface.losses import gan

REAL = np.array([0.0, 2.0, -1.0])
FAKE = np.array([0.0, -1.0, 3.0])


def np_softplus(x):
  return np.log1p(np.exp(x))  # fine for the small |x| of these references (float64)


def test_discriminator_loss_reference_values():
  expected = np_softplus(-REAL) + np_softplus(FAKE)
  assert expected[0] == pytest.approx(2 * np.log(2.0))  # D(.) = 1/2 on both: 2 ln 2
  for kind in ("non_saturating", "minimax"):
    np.testing.assert_allclose(gan.discriminator_loss(REAL, FAKE, kind=kind), expected,
                               rtol=1e-6)
  # ½(r - 1)² + ½ f²: (½ + 0), (½ + ½), (2 + 4.5).
  np.testing.assert_allclose(gan.discriminator_loss(REAL, FAKE, kind="lsgan"),
                             [0.5, 1.0, 6.5], rtol=1e-6)


def test_generator_loss_reference_values():
  np.testing.assert_allclose(gan.generator_loss(FAKE), np_softplus(-FAKE), rtol=1e-6)
  np.testing.assert_allclose(gan.generator_loss(FAKE, kind="minimax"),
                             np.log(1.0 - 1.0 / (1.0 + np.exp(-FAKE))), rtol=1e-6)
  np.testing.assert_allclose(gan.generator_loss(FAKE, kind="lsgan"), [0.5, 2.0, 2.0],
                             rtol=1e-6)


def test_shapes_and_errors():
  column = gan.discriminator_loss(REAL[:, None], FAKE[:, None])
  assert column.shape == (3,)
  np.testing.assert_allclose(column, gan.discriminator_loss(REAL, FAKE))
  assert gan.generator_loss(jnp.zeros((5, 1))).shape == (5,)
  with pytest.raises(ValueError, match="differ"):
    gan.discriminator_loss(REAL, FAKE[:2])
  with pytest.raises(ValueError):
    gan.generator_loss(jnp.zeros((2, 3)))
  with pytest.raises(ValueError, match="kind"):
    gan.generator_loss(FAKE, kind="wasserstein")
  assert losses.discriminator_loss is gan.discriminator_loss
  assert losses.generator_loss is gan.generator_loss


def test_non_saturating_d_loss_is_minimised_by_confident_correct_logits():
  margins = np.array([-5.0, -1.0, 0.0, 1.0, 5.0, 20.0])
  values = gan.discriminator_loss(margins, -margins)  # real -> +m, fake -> -m
  assert np.all(np.diff(values) < 0)
  grad_real, grad_fake = jax.grad(lambda r, f: gan.discriminator_loss(r, f).sum(),
                                  argnums=(0, 1))(jnp.zeros(3), jnp.zeros(3))
  assert np.all(grad_real < 0) and np.all(grad_fake > 0)  # descent raises real, lowers fake


@pytest.mark.parametrize("kind", gan.KINDS)
def test_stable_at_large_logits(kind):
  big = jnp.array([100.0, -100.0])
  d_loss = lambda r, f: gan.discriminator_loss(r, f, kind=kind).sum()
  g_loss = lambda f: gan.generator_loss(f, kind=kind).sum()
  for real, fake in ((big, -big), (-big, big)):
    assert np.all(np.isfinite(gan.discriminator_loss(real, fake, kind=kind)))
    assert np.all(np.isfinite(gan.generator_loss(fake, kind=kind)))
    for grad in jax.grad(d_loss, argnums=(0, 1))(real, fake) + (jax.grad(g_loss)(fake),):
      assert np.all(np.isfinite(grad))
  if kind != "lsgan":
    right = gan.discriminator_loss(jnp.array([100.0]), jnp.array([-100.0]), kind=kind)
    wrong = gan.discriminator_loss(jnp.array([-100.0]), jnp.array([100.0]), kind=kind)
    assert float(right[0]) < 1e-30
    np.testing.assert_allclose(wrong, [200.0], rtol=1e-6)


def test_non_saturating_generator_keeps_its_gradient_when_d_rejects_the_fakes():
  fake = jnp.array([-100.0])  # D is sure the regressed coefficients are fake
  ns = jax.grad(lambda f: gan.generator_loss(f).sum())(fake)
  mm = jax.grad(lambda f: gan.generator_loss(f, kind="minimax").sum())(fake)
  np.testing.assert_allclose(ns, [-1.0], rtol=1e-6)
  assert abs(float(mm[0])) < 1e-30  # eq. 2's literal form saturates


def test_jit():
  f = jax.jit(lambda r, x: gan.discriminator_loss(r, x, kind="lsgan"))
  np.testing.assert_allclose(f(REAL, FAKE), [0.5, 1.0, 6.5], rtol=1e-6)
