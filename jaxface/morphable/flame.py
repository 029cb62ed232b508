"""FLAME's linear blend skinning (Li et al. 2017), pure jnp.

Joints (FLAME order): global, neck, jaw, left eye, right eye; parents (-1, 0, 1, 1, 1).
Pose is axis-angle per joint, [..., J, 3] radians. Pose correctives are driven by the
row-major flattened (R_j - I) of the non-root joints (FLAME's `lrotmin`).
"""

import jax
import jax.numpy as jnp

from jaxface.morphable import model as model_lib

_HIGHEST = jax.lax.Precision.HIGHEST


def axis_angle_to_matrix(axis_angle: jax.Array) -> jax.Array:
  """Rodrigues' formula, [..., 3] radians -> [..., 3, 3]; smooth (no NaN) at zero."""
  squared = jnp.sum(axis_angle ** 2, axis=-1, keepdims=True)
  small = squared < 1e-12
  safe = jnp.where(small, 1.0, squared)
  angle = jnp.sqrt(safe)
  # Taylor expansions near zero keep values and gradients finite.
  sin_term = jnp.where(small, 1.0 - squared / 6.0, jnp.sin(angle) / angle)
  cos_term = jnp.where(small, 0.5 - squared / 24.0, (1.0 - jnp.cos(angle)) / safe)
  x, y, z = axis_angle[..., 0], axis_angle[..., 1], axis_angle[..., 2]
  zero = jnp.zeros_like(x)
  skew = jnp.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape(
      axis_angle.shape[:-1] + (3, 3))
  eye = jnp.eye(3, dtype=axis_angle.dtype)
  return (eye + sin_term[..., None] * skew
          + cos_term[..., None] * jnp.matmul(skew, skew, precision=_HIGHEST))


def joints(skinning: model_lib.Skinning, vertices: jax.Array) -> jax.Array:
  """[..., J, 3] rest joint locations regressed from shaped vertices [..., V, 3]."""
  return jnp.einsum("jv,...vc->...jc", skinning.joint_regressor, vertices, precision=_HIGHEST)


def skin(skinning: model_lib.Skinning, vertices: jax.Array, pose: jax.Array) -> jax.Array:
  """Poses shaped vertices by pose correctives and linear blend skinning.

  Args:
    skinning: the model's `Skinning`.
    vertices: [..., V, 3] shaped (identity + expression) vertices, mm.
    pose: [..., J, 3] axis-angle per joint, radians.
  Returns:
    [..., V, 3] posed vertices, mm.
  """
  rest = joints(skinning, vertices)
  rotations = axis_angle_to_matrix(pose)  # [..., J, 3, 3]
  num_joints = rotations.shape[-3]
  feature = (rotations[..., 1:, :, :] - jnp.eye(3)).reshape(
      rotations.shape[:-3] + (9 * (num_joints - 1),))
  posed = vertices + jnp.einsum("vck,...k->...vc", skinning.pose_basis, feature,
                                precision=_HIGHEST)
  # World rotation and translation of each joint along the kinematic chain.
  world_r, world_t = [], []
  for j, parent in enumerate(skinning.parents):
    if parent < 0:
      world_r.append(rotations[..., j, :, :])
      world_t.append(rest[..., j, :])
    else:
      offset = rest[..., j, :] - rest[..., parent, :]
      world_r.append(jnp.matmul(world_r[parent], rotations[..., j, :, :], precision=_HIGHEST))
      world_t.append(world_t[parent] + jnp.einsum("...ab,...b->...a", world_r[parent], offset,
                                                  precision=_HIGHEST))
  world_r = jnp.stack(world_r, axis=-3)  # [..., J, 3, 3]
  # Transform relative to the rest pose: x -> R_j (x - rest_j) + t_j.
  world_t = jnp.stack(world_t, axis=-2) - jnp.einsum("...jab,...jb->...ja", world_r, rest,
                                                     precision=_HIGHEST)
  blend_r = jnp.einsum("vj,...jab->...vab", skinning.weights, world_r, precision=_HIGHEST)
  blend_t = jnp.einsum("vj,...ja->...va", skinning.weights, world_t, precision=_HIGHEST)
  return jnp.einsum("...vab,...vb->...va", blend_r, posed, precision=_HIGHEST) + blend_t


def decode_posed(model: model_lib.MorphableModel, shape: jax.Array, expression: jax.Array,
                 pose: jax.Array) -> jax.Array:
  """FLAME decode: identity + expression blendshapes, then pose correctives and LBS.

  Args:
    shape: [..., Ks]; expression: [..., Ke]; pose: [..., J, 3] axis-angle radians.
  Returns:
    [..., V, 3] posed vertices, mm.
  """
  if model.skinning is None:
    raise ValueError(f"model {model.name!r} has no skinning; use morphable.decode")
  return skin(model.skinning, model_lib.decode(model, shape, expression), pose)
