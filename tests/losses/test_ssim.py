"""SSIM structural consistency (MLFL-GA eq. 15) against scikit-image, scipy and by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import structural_similarity

from jaxface import losses
from jaxface.losses import ssim

C1, C2 = 0.01 ** 2, 0.03 ** 2


def images(seed=0, shape=(2, 16, 19, 3)):
  rng = np.random.default_rng(seed)
  x = ndimage.uniform_filter(rng.uniform(size=shape), size=(1, 3, 3, 1))
  y = np.clip(0.7 * x + 0.3 * rng.uniform(size=shape) + 0.05, 0, 1)
  return x.astype(np.float32), y.astype(np.float32)


def test_window_matches_scipy_gaussian():
  impulse = np.zeros(11)
  impulse[5] = 1.0
  expected = ndimage.gaussian_filter1d(impulse, 1.5, truncate=3.5, mode="constant")
  np.testing.assert_allclose(ssim.gaussian_window(11, 1.5), expected, rtol=1e-12)
  with pytest.raises(ValueError):
    ssim.gaussian_window(10, 1.5)


def test_unmasked_map_matches_skimage():
  x, y = images()
  ours = np.asarray(ssim.ssim_map(jnp.asarray(x), jnp.asarray(y)))
  for b in range(x.shape[0]):
    _, full = structural_similarity(x[b].astype(np.float64), y[b].astype(np.float64),
                                    channel_axis=-1, data_range=1.0, gaussian_weights=True,
                                    sigma=1.5, use_sample_covariance=False, full=True)
    np.testing.assert_allclose(ours[b], full, atol=2e-4)
    loss = ssim.ssim_loss(jnp.asarray(x), jnp.asarray(y), jnp.ones(x.shape[:-1]))[b]
    np.testing.assert_allclose(loss, 1.0 - full.mean(), atol=2e-5)
  ones = ssim.ssim_map(jnp.asarray(x), jnp.asarray(y), jnp.ones(x.shape[:-1]))
  np.testing.assert_allclose(ones, ours, atol=1e-5)  # an all-ones mask is no mask


def np_masked_ssim_loss(x, y, m):
  """Independent float64 reference: scipy Gaussian filters of m·x, m·x², ... over m."""
  blur = lambda a: ndimage.gaussian_filter(a, sigma=1.5, truncate=3.5, mode="reflect")
  mass = np.maximum(blur(m), 1e-6)
  out = []
  for c in range(x.shape[-1]):
    xc, yc = x[..., c].astype(np.float64), y[..., c].astype(np.float64)
    local = lambda a, xc=xc: blur(m * a) / mass
    mx, my = local(xc), local(yc)
    vx, vy, cxy = local(xc * xc) - mx ** 2, local(yc * yc) - my ** 2, local(xc * yc) - mx * my
    out.append((2 * mx * my + C1) * (2 * cxy + C2) / ((mx ** 2 + my ** 2 + C1) * (vx + vy + C2)))
  s = np.mean(out, axis=0)
  return np.sum(m * (1 - s)) / max(m.sum(), 1.0)


def face_masks(shape):
  _, h, w = shape
  yy, xx = np.mgrid[:h, :w]
  disc = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (0.35 * h) ** 2).astype(np.float32)
  soft = np.clip(disc * 0.8 + 0.1 * (xx % 3 == 0), 0, 1).astype(np.float32)
  return np.stack([disc, soft])


def test_masked_loss_matches_scipy_reference():
  x, y = images(1)
  masks = face_masks(x.shape[:-1])
  ours = ssim.ssim_loss(jnp.asarray(x), jnp.asarray(y), jnp.asarray(masks))
  expected = [np_masked_ssim_loss(x[b], y[b], masks[b]) for b in range(2)]
  np.testing.assert_allclose(ours, expected, atol=2e-5)


def test_pixels_outside_the_mask_never_matter():
  x, y = images(2)
  masks = face_masks(x.shape[:-1])
  outside = (masks[0] == 0)[None, ..., None]
  rng = np.random.default_rng(3)
  x2 = np.where(outside, rng.uniform(size=x.shape), x).astype(np.float32)
  y2 = np.where(outside, 0.0, y).astype(np.float32)  # e.g. the render's black background
  mask = jnp.asarray(np.stack([masks[0], masks[0]]))
  np.testing.assert_allclose(ssim.ssim_loss(jnp.asarray(x2), jnp.asarray(y2), mask),
                             ssim.ssim_loss(jnp.asarray(x), jnp.asarray(y), mask), atol=1e-6)


def test_mask_weighting_by_hand_with_a_one_tap_window():
  # One tap: local statistics are the pixel itself, so the variances and covariance
  # are 0 and SSIM = (2xy + C1) / (x² + y² + C1), averaged with the mask as weights.
  x = np.array([[0.5, 0.2], [0.9, 0.1]])
  y = np.array([[0.5, 0.4], [0.0, 0.1]])
  m = np.array([[1.0, 1.0], [0.0, 0.5]])
  s = {(0, 0): 1.0, (0, 1): (2 * 0.08 + C1) / (0.04 + 0.16 + C1), (1, 1): 1.0}
  expected = (1 * (1 - s[0, 0]) + 1 * (1 - s[0, 1]) + 0.5 * (1 - s[1, 1])) / 2.5
  loss = ssim.ssim_loss(jnp.asarray(x)[None, ..., None], jnp.asarray(y)[None, ..., None],
                        jnp.asarray(m)[None], window=1)
  np.testing.assert_allclose(loss, [expected], rtol=1e-5)
  assert expected == pytest.approx((0.04 / 0.2001) / 2.5, rel=1e-9)  # 0.0799600...


def test_global_eq15_by_hand():
  # Face pixels x = (0.2, 0.6), y = (0.4, 0.4): μx = μy = 0.4, σx² = 0.04, σy² = 0,
  # σxy = 0; luminance term 1, contrast-structure term C2 / (0.04 + C2).
  x = jnp.array([0.2, 0.6, 0.9, 0.0]).reshape(1, 2, 2, 1)
  y = jnp.array([0.4, 0.4, 0.0, 1.0]).reshape(1, 2, 2, 1)
  m = jnp.array([1.0, 1.0, 0.0, 0.0]).reshape(1, 2, 2)
  loss = ssim.ssim_loss(x, y, m, window=None)
  np.testing.assert_allclose(loss, [1 - 9e-4 / (0.04 + 9e-4)], rtol=1e-5)
  np.testing.assert_allclose(loss, [0.9779951], rtol=1e-5)


@pytest.mark.parametrize("window", [11, None])
def test_identical_images_and_empty_masks(window):
  x, _ = images(4)
  masks = jnp.asarray(face_masks(x.shape[:-1]))
  np.testing.assert_allclose(ssim.ssim_loss(jnp.asarray(x), jnp.asarray(x), masks,
                                            window=window), [0.0, 0.0], atol=1e-5)
  x, y = images(5)
  empty = ssim.ssim_loss(jnp.asarray(x), jnp.asarray(y), 0 * masks, window=window)
  np.testing.assert_array_equal(empty, [0.0, 0.0])


@pytest.mark.parametrize("window", [11, None])
def test_gradient_is_finite(window):
  x, y = images(6)
  masks = jnp.asarray(face_masks(x.shape[:-1]))
  f = jax.jit(jax.grad(lambda r, m: ssim.ssim_loss(r, jnp.asarray(y), m, window=window).sum(),
                       argnums=(0, 1)))
  for r in (jnp.asarray(x), jnp.asarray(y)):  # at a generic point and at the optimum
    for m in (masks, 0 * masks):
      gr, gm = f(r, m)
      assert np.all(np.isfinite(gr)) and np.all(np.isfinite(gm))
  gr, _ = f(jnp.asarray(x), masks)
  assert float(jnp.abs(gr).max()) > 0


def test_shape_checks_and_reexport():
  x, y = images()
  with pytest.raises(AssertionError):
    ssim.ssim_loss(jnp.asarray(x), jnp.asarray(y[:, :8]), None)
  with pytest.raises(AssertionError):
    ssim.ssim_loss(jnp.asarray(x), jnp.asarray(y), jnp.ones((2, 16, 18)))
  assert losses.ssim_loss is ssim.ssim_loss


def test_images_smaller_than_the_window_reflect_like_scipy():
  x, y = images(7, shape=(1, 4, 3, 2))
  m = face_masks((1, 4, 3))[1][None] + 0.05
  np.testing.assert_allclose(ssim.ssim_loss(jnp.asarray(x), jnp.asarray(y), jnp.asarray(m)),
                             [np_masked_ssim_loss(x[0], y[0], m[0])], atol=2e-5)
