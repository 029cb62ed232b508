"""Face-mask consistency loss (MLFL-GA's L_mask, "FMCL", seed 001 eq. 11, in L_low).

MLFL-GA (§2.3.1) defines

  L_mask = Σ_i ρ_i ‖I - I_r‖₂ / Σ_i ρ_i,   ρ_i = 1 inside the face, 0 outside,

over the pixels i of the input photo I and the render I_r, with ρ the face
segmentation mask of the prior-information module (Nirkin et al.'s segmentation:
non-face pixels, including occluders such as glasses, hair, hands, weigh 0). So the
"mask consistency" is a photometric term restricted to, and normalised by the area of,
the face mask, which keeps occluders and background out of the loss. The paper is vague
on two points; what jaxface does:

- ‖·‖₂ is the per-pixel Euclidean distance of the RGB colours (not squared): the
  robust L2,1 form of Deng et al. 2019, which MLFL-GA's DECA-style pipeline inherits;
  squared errors are MLFL-GA's separate L_pix (eq. 12).
- ρ is the face mask alone, not intersected with the render's coverage, as eq. 11
  states: face pixels the render fails to cover are compared with the renderer's
  background colour and cost ‖I - background‖, which pulls the render's silhouette
  onto the face region (the "consistency" of the two masks). Pass
  `face_mask * render_mask` instead to score only pixels both cover.

The mask area is floored at one pixel (an empty mask gives 0), as in
`jaxface.losses.masked_photometric_loss(..., norm="l21")`, which computes nearly the
same sum; here a pixel that matches exactly costs exactly 0 (that function floors each
pixel's distance at 1e-6).
"""

import chex
import jax
import jax.numpy as jnp


def mask_consistency_loss(rendered: jax.Array, image: jax.Array, face_mask: jax.Array
                          ) -> jax.Array:
  """MLFL-GA eq. 11: mean colour distance between render and photo over the face mask.

  Args:
    rendered: [B, H, W, 3] render I_r (composited on the renderer's background), linear
      RGB in [0, 1].
    image: [B, H, W, 3] input photo I, same range.
    face_mask: [B, H, W] ρ: 1 on face pixels, 0 elsewhere (soft values weight pixels).
  Returns:
    [B] Σ ρ ‖I - I_r‖₂ / max(Σ ρ, 1); colour units (0 to √3 for [0, 1] images).
  Raises:
    AssertionError: shapes that do not match (chex).
  """
  chex.assert_rank(rendered, 4)
  chex.assert_equal_shape([rendered, image])
  chex.assert_shape(face_mask, rendered.shape[:-1])
  diff = rendered.astype(jnp.float32) - image.astype(jnp.float32)
  squared = jnp.sum(diff * diff, axis=-1)
  # sqrt's gradient is infinite at 0: take it of a safe value there (gradient 0).
  positive = squared > 0
  distance = jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)
  rho = face_mask.astype(jnp.float32)
  return jnp.sum(rho * distance, axis=(1, 2)) / jnp.maximum(jnp.sum(rho, axis=(1, 2)), 1.0)
