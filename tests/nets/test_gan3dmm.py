"""GAN-3DMM generator and coefficient discriminator."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxface import nets
from tests.nets.test_resnet import (
  KEY,
  abstract_init,
  apply,
  count,
  images,
  init,
  random_variables,
)


def test_generator_outputs_and_batch_stats():
  model = nets.Gan3dmmGenerator(num_coefficients=12, backbone="tiny")
  x = images(3)
  variables = random_variables(model, x, train=False)
  assert variables["params"]["head"]["kernel"].shape == (64, 12)  # tiny: 64 pooled features
  coefficients, updates = apply(model, variables, x, train=True, mutable=["batch_stats"])
  assert coefficients.shape == (3, 12) and coefficients.dtype == jnp.float32
  assert np.abs(coefficients[0] - coefficients[1]).max() > 1e-4  # depends on the image
  assert any(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)),
                                          variables["batch_stats"], updates["batch_stats"])))


def test_generator_starts_near_zero():
  model = nets.Gan3dmmGenerator(num_coefficients=62, backbone="resnet50")
  # Pooled ResNet-50 features after a relu: non-negative, O(1).
  features = jnp.asarray(np.random.default_rng(0).uniform(0, 2, (4, 2048)), jnp.float32)
  params = init(model, features, method="regress")
  kernel = params["params"]["head"]["kernel"]
  assert kernel.shape == (2048, 62)
  assert 0 < float(jnp.std(kernel)) < 1e-3
  coefficients = model.apply(params, features, method="regress")
  assert float(jnp.abs(coefficients).max()) < 0.1  # prior N(0, I): ≈ the mean face


def test_generator_parameter_count():
  # ResNet-50 (no classifier) + Dense 2048 -> 62 with bias.
  variables = abstract_init(nets.Gan3dmmGenerator(num_coefficients=62),
                            jnp.zeros((1, 224, 224, 3)), train=False)
  assert count(variables["params"]) == 23_508_032 + 2048 * 62 + 62 == 23_635_070


def test_generator_rejects_unknown_backbone():
  with pytest.raises(ValueError, match="backbone"):
    abstract_init(nets.Gan3dmmGenerator(num_coefficients=4, backbone="vgg"),
                  jnp.zeros((1, 32, 32, 3)), train=False)


@pytest.mark.parametrize("dim, expected", [
    (62, 295_425),   # (62+1)·512 + (512+1)·512 + (512+1) = 512·62 + 263,681
    (257, 395_265),  # Deng et al.'s 257 coefficients
])
def test_discriminator_parameter_count(dim, expected):
  variables = jax.eval_shape(nets.CoefficientDiscriminator().init, KEY, jnp.zeros((1, dim)))
  assert count(variables) == expected == 512 * dim + 263_681
  assert set(variables) == {"params"}


def test_discriminator_matches_a_reference_mlp():
  model = nets.CoefficientDiscriminator(hidden=(16, 8))
  rng = np.random.default_rng(0)
  z = jnp.asarray(rng.standard_normal((5, 10)), jnp.float32)
  variables = init(model, z)
  assert count(variables) == 11 * 16 + 17 * 8 + 9 * 1
  logits = jax.jit(model.apply)(variables, z)
  assert logits.shape == (5,) and logits.dtype == jnp.float32
  p = variables["params"]
  h = np.asarray(z, np.float64)
  for name in ("dense1", "dense2"):
    h = h @ np.asarray(p[name]["kernel"]) + np.asarray(p[name]["bias"])
    h = np.where(h > 0, h, 0.2 * h)  # leaky relu 0.2
  want = h @ np.asarray(p["dense3"]["kernel"]) + np.asarray(p["dense3"]["bias"])
  np.testing.assert_allclose(logits, want[:, 0], rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="B, D"):
    model.apply(variables, z[0])
