"""Cameras: rotations, rigid transforms and projections to pixel coordinates. Batched.

Frames: the model frame of `jaxface.morphable` (+x left of the subject, +y up, +z
towards the camera). A camera looks down -z. Pixel coordinates have x to the right
and y down, with pixel (row i, column j) centred at (j + 0.5, i + 0.5); `depth` is the
distance along the viewing axis (smaller is nearer), in mm for perspective cameras and
in model units along -z for orthographic ones.
"""

import flax.struct
import jax
import jax.numpy as jnp

_HIGHEST = jax.lax.Precision.HIGHEST


def euler_to_matrix(angles: jax.Array) -> jax.Array:
  """Rotation from Euler angles, R = Rz(roll) Ry(yaw) Rx(pitch) (Deng et al. 2019).

  Args:
    angles: [..., 3] (pitch about x, yaw about y, roll about z), radians.
  Returns:
    [..., 3, 3] rotation matrices acting on column vectors.
  """
  cx, cy, cz = (jnp.cos(angles[..., i]) for i in range(3))
  sx, sy, sz = (jnp.sin(angles[..., i]) for i in range(3))
  one, zero = jnp.ones_like(cx), jnp.zeros_like(cx)
  rx = jnp.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1)
  ry = jnp.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1)
  rz = jnp.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1)
  shape = angles.shape[:-1] + (3, 3)
  return jnp.matmul(rz.reshape(shape), jnp.matmul(ry.reshape(shape), rx.reshape(shape),
                                                  precision=_HIGHEST), precision=_HIGHEST)


def _normalize(v: jax.Array) -> jax.Array:
  squared = jnp.sum(v * v, axis=-1, keepdims=True)
  return v * jax.lax.rsqrt(jnp.maximum(squared, 1e-12))


def rotation_6d_to_matrix(r6: jax.Array) -> jax.Array:
  """Rotation from the continuous 6D representation (Zhou et al. 2019).

  Args:
    r6: [..., 6], two 3-vectors orthonormalised by Gram-Schmidt into the first two
      rows of the matrix (PyTorch3D's convention); the third row is their cross product.
  Returns:
    [..., 3, 3] rotation matrices.
  """
  a, b = r6[..., :3], r6[..., 3:]
  b1 = _normalize(a)
  b2 = _normalize(b - jnp.sum(b1 * b, axis=-1, keepdims=True) * b1)
  return jnp.stack([b1, b2, jnp.cross(b1, b2)], axis=-2)


def rigid_transform(points: jax.Array, rotation: jax.Array, translation: jax.Array) -> jax.Array:
  """R p + t for [..., N, 3] points, [..., 3, 3] rotations and [..., 3] translations."""
  return (jnp.einsum("...ij,...nj->...ni", rotation, points, precision=_HIGHEST)
          + translation[..., None, :])


@flax.struct.dataclass
class Camera:
  """A batch of cameras; `project` maps model-frame points to pixels and depth.

  Attributes:
    rotation: [B, 3, 3] head rotation applied to the model before projection.
    translation: [B, 3] translation after rotation: mm for perspective cameras; for
      orthographic ones (x, y) is the 2D offset t of v = s·P(M) + t in normalised
      image units ([-1, 1] across the image width, y up) and z is ignored.
    focal: [B] focal length in pixels (perspective) or scale s in normalised image
      units per mm (orthographic).
    distance: [B] camera distance from the model origin along +z, mm (perspective).
    kind: static, "perspective" or "orthographic".
    image_size: static (height, width) in pixels.
  """
  rotation: jax.Array
  translation: jax.Array
  focal: jax.Array
  distance: jax.Array
  kind: str = flax.struct.field(pytree_node=False, default="perspective")
  image_size: tuple = flax.struct.field(pytree_node=False, default=(224, 224))


def perspective_camera(rotation, translation, *, focal, distance, image_size) -> Camera:
  """A pinhole camera at (0, 0, distance) looking down -z (Deng et al.: f=1015, d=10 dm)."""
  batch = rotation.shape[0]
  return Camera(rotation=rotation, translation=translation,
                focal=jnp.broadcast_to(jnp.asarray(focal, jnp.float32), (batch,)),
                distance=jnp.broadcast_to(jnp.asarray(distance, jnp.float32), (batch,)),
                kind="perspective", image_size=tuple(image_size))


def orthographic_camera(rotation, translation_2d, scale, *, image_size) -> Camera:
  """Weak perspective v = s·P(R M) + t (DECA, MLFL-GA), t in normalised image units."""
  batch = rotation.shape[0]
  translation = jnp.concatenate([translation_2d, jnp.zeros((batch, 1), translation_2d.dtype)], -1)
  return Camera(rotation=rotation, translation=translation,
                focal=jnp.broadcast_to(jnp.asarray(scale, jnp.float32), (batch,)),
                distance=jnp.zeros((batch,), jnp.float32), kind="orthographic",
                image_size=tuple(image_size))


def project(camera: Camera, points: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Projects model-frame points.

  Args:
    camera: a batch of B cameras.
    points: [B, N, 3] model-frame points, mm.
  Returns:
    (xy [B, N, 2] pixel coordinates, depth [B, N]; see the module docstring).
  """
  height, width = camera.image_size
  if camera.kind == "perspective":
    p = rigid_transform(points, camera.rotation, camera.translation)
    depth = camera.distance[:, None] - p[..., 2]
    safe = jnp.where(jnp.abs(depth) > 1e-6, depth, 1e-6)
    focal = camera.focal[:, None]
    x = width / 2 + focal * p[..., 0] / safe
    y = height / 2 - focal * p[..., 1] / safe
    return jnp.stack([x, y], -1), depth
  if camera.kind == "orthographic":
    p = rigid_transform(points, camera.rotation, jnp.zeros_like(camera.translation))
    v = camera.focal[:, None, None] * p[..., :2] + camera.translation[:, None, :2]
    x = (v[..., 0] + 1.0) * (width / 2)
    y = height / 2 - v[..., 1] * (width / 2)  # [-1, 1] spans the width; square pixels
    return jnp.stack([x, y], -1), -p[..., 2]
  raise ValueError(f"unknown camera kind {camera.kind!r}")
