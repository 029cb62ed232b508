"""Skin colour loss (GAN-3DMM's L_skin, seed 000 §1.2.3 eq. 4).

GAN-3DMM pastes the render Î into the input photo I "by the face region given by the
68 landmarks" and compares the composite with the photo pixel by pixel,

  L_skin = ‖P(Î) - I‖₂,

"since after pasting the background pixels agree, the per-pixel L2 loss pulls the
rendered skin colour towards the input's". The paper is vague on the paste and the
normalisation; what jaxface does:

- P(Î) = Î·w + I·(1 - w) with w = face_mask · render_mask: the landmark face region
  (`jaxface.preprocess` face masks from the 68 points, jaw and raised brows) where the
  render actually covers it. Outside w the composite is the photo itself, so only the
  rendered face pixels get a gradient (and P(Î) - I = w·(Î - I)).
- ‖·‖₂ is the Euclidean norm of the whole difference image (over pixels and colour
  channels), divided by √(H·W): the root mean square over all H·W pixels of the
  per-pixel colour distance. Dividing by the pixel count makes the value independent of
  the resolution (the same crop at 2x the size gives the same loss); normalising by
  the image, not the face area, keeps the paper's whole-image comparison, so a face
  covering more of an aligned crop weighs more.
"""

import chex
import jax
import jax.numpy as jnp


def paste(rendered: jax.Array, image: jax.Array, face_mask: jax.Array,
          render_mask: jax.Array) -> jax.Array:
  """P(Î): the render pasted into the photo over the covered face region.

  Args:
    rendered: [B, H, W, 3] render Î.
    image: [B, H, W, 3] input photo I.
    face_mask: [B, H, W] face region from the 68 landmarks, in [0, 1].
    render_mask: [B, H, W] render coverage, in [0, 1] (soft at antialiased edges).
  Returns:
    [B, H, W, 3] Î·w + I·(1 - w), w = face_mask · render_mask.
  """
  chex.assert_rank(rendered, 4)
  chex.assert_equal_shape([rendered, image])
  chex.assert_shape([face_mask, render_mask], rendered.shape[:-1])
  w = (face_mask * render_mask)[..., None]
  return rendered * w + image * (1.0 - w)


def skin_loss(rendered: jax.Array, image: jax.Array, face_mask: jax.Array,
              render_mask: jax.Array) -> jax.Array:
  """GAN-3DMM eq. 4: ‖P(Î) - I‖₂ / √(H·W), per example.

  Args:
    rendered: [B, H, W, 3] render Î, linear RGB in [0, 1].
    image: [B, H, W, 3] input photo I, same range.
    face_mask: [B, H, W] face region from the 68 landmarks, in [0, 1].
    render_mask: [B, H, W] render coverage, in [0, 1].
  Returns:
    [B] sqrt(Σ_pixels Σ_channels (P(Î) - I)² / (H·W)): 0 to √3 for [0, 1] images;
    gradient zero (not NaN) at a perfect match.
  """
  diff = paste(rendered, image, face_mask, render_mask) - image.astype(rendered.dtype)
  height, width = rendered.shape[1:3]
  mean_squared = jnp.sum(diff * diff, axis=(1, 2, 3)) / (height * width)
  # sqrt's gradient is infinite at 0: evaluate it on a safe value there.
  positive = mean_squared > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, mean_squared, 1.0)), 0.0)
