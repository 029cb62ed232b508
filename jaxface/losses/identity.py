"""Identity loss: 1 - cosine similarity of face-recognition embeddings.

GAN-3DMM's L_id = 1 - cos(f(I), f(render)) and MLFL-GA's identity term, with f any net
of `jaxface.nets.RECOGNITION_NETS` (dlib's ResNet by default).
"""

import jax
import jax.numpy as jnp


def _safe_norm(x: jax.Array, eps: float) -> jax.Array:
  """Euclidean norm over the last axis, floored at eps (finite gradient at 0)."""
  # Clamp the squared norm before the sqrt: sqrt's gradient at 0 is infinite, and a
  # clamped branch gives a zero (not NaN) gradient there.
  return jnp.sqrt(jnp.maximum(jnp.sum(x * x, axis=-1), eps * eps))


def identity_loss(embedding_a: jax.Array, embedding_b: jax.Array, *, eps: float = 1e-6
                  ) -> jax.Array:
  """Per-example 1 - cos(a, b).

  Args:
    embedding_a: [B, D] embeddings (e.g. of the input photos).
    embedding_b: [B, D] embeddings (e.g. of the renders), same shape.
    eps: floor of each embedding's norm; a zero embedding gives cos = 0 (loss 1) and a
      finite gradient.
  Returns:
    [B] losses in [0, 2]: 0 for the same direction, 1 orthogonal, 2 opposite.
  Raises:
    ValueError: the shapes differ or are not [B, D].
  """
  if embedding_a.ndim != 2 or embedding_a.shape != embedding_b.shape:
    raise ValueError(f"identity_loss needs two [B, D] embeddings of the same shape; got "
                     f"{embedding_a.shape} and {embedding_b.shape}")
  a = embedding_a.astype(jnp.float32)
  b = embedding_b.astype(jnp.float32)
  # Elementwise product and sum, not a dot: dots default to reduced precision on GPUs.
  cos = jnp.sum(a * b, axis=-1) / (_safe_norm(a, eps) * _safe_norm(b, eps))
  return 1.0 - cos
