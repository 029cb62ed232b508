"""Skin colour (GAN-3DMM eq. 4) and face-mask consistency (MLFL-GA eq. 11) by hand."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxface import losses
from jaxface.losses import mask, skin


def skin_inputs():
  image = np.zeros((2, 2, 2, 3), np.float32)
  rendered = np.zeros((2, 2, 2, 3), np.float32)
  face = np.zeros((2, 2, 2), np.float32)
  cover = np.ones((2, 2, 2), np.float32)
  # Example 0: one covered face pixel off by (0.3, 0.4, 0) -> distance 0.5.
  rendered[0, 0, 0] = [0.3, 0.4, 0.0]
  face[0, 0, 0] = 1.0
  rendered[0, 1, 1] = [1.0, 1.0, 1.0]  # outside the face region: pasted away
  # Example 1: a face pixel at half coverage (soft edge) off by (1, 0, 0) -> 0.5 after
  # pasting; a face pixel the render does not cover (coverage 0) does not count.
  image[1] = 0.2
  rendered[1] = 0.2
  rendered[1, 0, 1] = [1.2, 0.2, 0.2]
  face[1, 0, 1] = 1.0
  cover[1, 0, 1] = 0.5
  rendered[1, 1, 0] = [0.9, 0.9, 0.9]
  face[1, 1, 0] = 1.0
  cover[1, 1, 0] = 0.0
  return tuple(map(jnp.asarray, (rendered, image, face, cover)))


def test_skin_loss_reference_values():
  rendered, image, face, cover = skin_inputs()
  # sqrt(Σ d² / (H·W)): example 0 sqrt(0.25 / 4) = 0.25; example 1 sqrt(0.5² / 4) = 0.25.
  np.testing.assert_allclose(skin.skin_loss(rendered, image, face, cover), [0.25, 0.25],
                             rtol=1e-6)
  pasted = skin.paste(rendered, image, face, cover)
  np.testing.assert_allclose(pasted[0, 0, 0], [0.3, 0.4, 0.0])
  np.testing.assert_allclose(pasted[0, 1, 1], [0.0, 0.0, 0.0])
  np.testing.assert_allclose(pasted[1, 0, 1], [0.7, 0.2, 0.2], rtol=1e-6)
  np.testing.assert_allclose(pasted[1, 1, 0], [0.2, 0.2, 0.2])
  assert losses.skin_loss is skin.skin_loss


def test_skin_loss_does_not_depend_on_resolution():
  rendered, image, face, cover = skin_inputs()
  up = lambda a: jnp.repeat(jnp.repeat(a, 3, axis=1), 3, axis=2)
  np.testing.assert_allclose(skin.skin_loss(up(rendered), up(image), up(face), up(cover)),
                             skin.skin_loss(rendered, image, face, cover), rtol=1e-6)


def test_skin_gradient_flows_only_through_rendered_face_pixels():
  rendered, image, face, cover = skin_inputs()
  grad = jax.grad(lambda r: skin.skin_loss(r, image, face, cover).sum())(rendered)
  weight = np.asarray(face * cover)
  assert np.all(np.asarray(grad)[weight == 0] == 0)
  assert np.abs(np.asarray(grad)[0, 0, 0]).max() > 0 and np.abs(np.asarray(grad)[1, 0, 1, 0]) > 0
  # A perfect match: loss 0, gradient 0 (not NaN) despite the square root.
  at_match = jax.grad(lambda r: skin.skin_loss(r, image, face, cover).sum())(image)
  np.testing.assert_array_equal(skin.skin_loss(image, image, face, cover), [0.0, 0.0])
  np.testing.assert_array_equal(at_match, 0.0)


def test_mask_consistency_reference_values():
  image = np.zeros((2, 2, 2, 3), np.float32)
  rendered = np.zeros((2, 2, 2, 3), np.float32)
  face = np.zeros((2, 2, 2), np.float32)
  # Example 0: face pixels (0,0) off by (0.3, 0.4, 0) and (0,1) exact; a huge error
  # outside the face (an occluder, the background) is ignored: (0.5 + 0) / 2.
  rendered[0, 0, 0] = [0.3, 0.4, 0.0]
  face[0, 0] = 1.0
  rendered[0, 1, 1] = [1.0, 1.0, 1.0]
  # Example 1: a face pixel the render leaves uncovered (background 0 vs skin
  # (0.6, 0.8, 0)) costs 1.0; soft weights 1 and 0.5: (1·1.0 + 0.5·0) / 1.5.
  image[1, 1, 1] = [0.6, 0.8, 0.0]
  face[1, 1, 1] = 1.0
  face[1, 0, 0] = 0.5
  loss = mask.mask_consistency_loss(jnp.asarray(rendered), jnp.asarray(image),
                                    jnp.asarray(face))
  np.testing.assert_allclose(loss, [0.25, 1.0 / 1.5], rtol=1e-6)
  empty = mask.mask_consistency_loss(jnp.asarray(rendered), jnp.asarray(image),
                                     jnp.zeros((2, 2, 2)))
  np.testing.assert_array_equal(empty, [0.0, 0.0])
  grad = jax.grad(lambda r: mask.mask_consistency_loss(r, jnp.asarray(image),
                                                       jnp.asarray(face)).sum())(
                                                           jnp.asarray(image))
  assert np.all(np.isfinite(np.asarray(grad)))
  assert losses.mask_consistency_loss is mask.mask_consistency_loss


def test_mask_consistency_is_zero_for_identical_images():
  image = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 5, 4, 3)), jnp.float32)
  face = jnp.ones((2, 5, 4))
  np.testing.assert_array_equal(mask.mask_consistency_loss(image, image, face), [0.0, 0.0])
  grad = jax.grad(lambda r: mask.mask_consistency_loss(r, image, face).sum())(image)
  np.testing.assert_array_equal(grad, 0.0)
