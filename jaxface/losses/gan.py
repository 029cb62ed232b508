"""GAN losses on coefficient vectors (GAN-3DMM's L_GAN, seed 000 eq. 2).

GAN-3DMM's discriminator D (a 3-layer MLP, `jaxface.nets`) tells 3DMM coefficient
vectors sampled from the model prior p_3DMM = N(0, I) ("real",
`jaxface.morphable.coefficients.sample_prior`) from the generator's regressed ones
("fake", `jaxface.morphable.coefficients.normalised`). Eq. 2 is the minimax game

  min_G max_D  E_{a ~ p_3DMM}[log D(a)] + E_{x ~ p_data}[log(1 - D(G(x)))],

trained by alternating D and G updates. The paper gives no further detail, so the
losses here take D's raw logits (D = sigmoid(logit)) and offer:

- "non_saturating" (default): D minimises -log D(a) - log(1 - D(G(x))); G minimises
  -log D(G(x)) (Goodfellow et al. 2014, §3: the same fixed point as eq. 2 with strong
  gradients early in training; what open GAN code uses by default).
- "minimax": D as above; G minimises eq. 2's own term log(1 - D(G(x))), literally.
  It saturates (vanishing gradient) when D rejects the fakes confidently.
- "lsgan": least squares (Mao et al. 2017, eq. 2 with a = 0, b = 1, c = 1): D minimises
  ½(D(a) - 1)² + ½ D(G(x))², G minimises ½(D(G(x)) - 1)², on the raw outputs.

Every log-sigmoid is a softplus of the logit: -log sigmoid(z) = softplus(-z) and
-log(1 - sigmoid(z)) = softplus(z), finite with finite gradients for any |z|.
"""

import jax
import jax.numpy as jnp

KINDS = ("non_saturating", "minimax", "lsgan")


def _logits(logits: jax.Array, name: str) -> jax.Array:
  """[B] or [B, 1] -> [B] float32."""
  logits = jnp.asarray(logits)
  if logits.ndim == 2 and logits.shape[-1] == 1:
    logits = logits[:, 0]
  if logits.ndim != 1:
    raise ValueError(f"{name} must be [B] or [B, 1] discriminator outputs; got {logits.shape}")
  return logits.astype(jnp.float32)


def _check_kind(kind: str) -> None:
  if kind not in KINDS:
    raise ValueError(f"unknown GAN loss kind {kind!r}; expected one of {KINDS}")


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array, *,
                       kind: str = "non_saturating") -> jax.Array:
  """Per-pair discriminator loss (D's side of GAN-3DMM eq. 2, as a minimisation).

  Args:
    real_logits: [B] or [B, 1] D outputs on prior samples a ~ N(0, I).
    fake_logits: same shape, D outputs on regressed coefficients G(x); pass them
      through `jax.lax.stop_gradient` (or differentiate w.r.t. D's parameters only) so
      the D update does not move G.
    kind: "non_saturating" or "minimax" (both: softplus(-real) + softplus(fake), the
      cross entropy with targets 1 / 0), or "lsgan" (½(real - 1)² + ½ fake²).
  Returns:
    [B] loss of each (real, fake) pair; the batch mean is D's objective.
  Raises:
    ValueError: shapes not [B] / [B, 1] or different, or an unknown kind.
  """
  _check_kind(kind)
  real = _logits(real_logits, "real_logits")
  fake = _logits(fake_logits, "fake_logits")
  if real.shape != fake.shape:
    raise ValueError(f"real and fake logits differ in shape: {real.shape} vs {fake.shape}")
  if kind == "lsgan":
    return 0.5 * jnp.square(real - 1.0) + 0.5 * jnp.square(fake)
  return jax.nn.softplus(-real) + jax.nn.softplus(fake)


def generator_loss(fake_logits: jax.Array, *, kind: str = "non_saturating") -> jax.Array:
  """Per-example generator (regressor) loss, G's side of GAN-3DMM eq. 2.

  Args:
    fake_logits: [B] or [B, 1] D outputs on the regressed coefficients G(x).
    kind: "non_saturating" (softplus(-fake) = -log D(G(x))), "minimax"
      (-softplus(fake) = log(1 - D(G(x))), eq. 2 literally; negative, tends to 0 from
      below as D is fooled) or "lsgan" (½(fake - 1)²).
  Returns:
    [B] loss per example.
  Raises:
    ValueError: a shape other than [B] / [B, 1], or an unknown kind.
  """
  _check_kind(kind)
  fake = _logits(fake_logits, "fake_logits")
  if kind == "lsgan":
    return 0.5 * jnp.square(fake - 1.0)
  if kind == "minimax":
    return -jax.nn.softplus(fake)
  return jax.nn.softplus(-fake)
