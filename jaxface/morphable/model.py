"""The `MorphableModel` pytree and its pure functions (decode, albedo, landmarks).

Frame and units, for every model jaxface builds or loads: millimetres, right-handed,
+x towards the subject's left (image right when facing the camera), +y up, +z out of
the face towards a camera looking down -z. Albedo is linear reflectance in [0, 1].
All bases are scaled so that coefficients are ~N(0, 1).

Every function works on unbatched coefficients and on any leading batch dimensions,
and is pure, so `jit`, `vmap` and `grad` apply directly.
"""

from typing import Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxface.geometry import vertex_normals  # noqa: F401  (re-exported: part of the model API)

# Region labels of `MorphableModel.region` and PRNet's loss weights for them
# (landmarks : eyes-nose-mouth : other face : neck/ears = 16 : 4 : 3 : 0).
REGION_LANDMARK, REGION_EYES_NOSE_MOUTH, REGION_FACE, REGION_NECK_EARS = 0, 1, 2, 3
REGION_NAMES = ("landmark", "eyes_nose_mouth", "face", "neck_ears")
PRNET_REGION_WEIGHTS = (16.0, 4.0, 3.0, 0.0)

_HIGHEST = jax.lax.Precision.HIGHEST


@flax.struct.dataclass
class Skinning:
  """Linear blend skinning of an articulated model (FLAME).

  Attributes:
    joint_regressor: [J, V] rest joints = joint_regressor @ shaped vertices.
    weights: [V, J] skinning weights, rows sum to 1.
    pose_basis: [V, 3, 9*(J-1)] pose-corrective blendshapes, driven by the flattened
      (R_j - I) of the non-root joints (FLAME/SMPL order), in mm.
    parents: static tuple of J parent indices, -1 for the root.
    joint_names: static tuple of J names.
  """
  joint_regressor: jax.Array
  weights: jax.Array
  pose_basis: jax.Array
  parents: tuple = flax.struct.field(pytree_node=False, default=())
  joint_names: tuple = flax.struct.field(pytree_node=False, default=())


@flax.struct.dataclass
class MorphableModel:
  """A linear face model with topology, UVs, landmarks and regions (DESIGN.md §2).

  Attributes:
    mean: [V, 3] mean shape, mm.
    shape_basis: [V, 3, Ks] identity basis, mm per unit coefficient.
    expression_basis: [V, 3, Ke] expression basis, mm per unit coefficient.
    albedo_mean: [V, 3] mean linear RGB reflectance in [0, 1].
    albedo_basis: [V, 3, Ka] albedo basis, reflectance per unit coefficient.
    triangles: [F, 3] int32 vertex indices, counter-clockwise seen from outside.
    uv: [V, 2] texture coordinates in [0, 1], v up.
    landmark_vertices: [68, 3] int32, the vertices of the triangle (or repeated vertex)
      each iBUG-68 landmark lies in.
    landmark_bary: [68, 3] barycentric weights over `landmark_vertices`; vertex
      landmarks (BFM) have weights (1, 0, 0), FLAME's embedding general ones.
    region: [V] int32 region label (REGION_* above).
    skinning: `Skinning` for articulated models (FLAME), else None.
    name: static model name.
    licence: static licence notice of the source data.
  """
  mean: jax.Array
  shape_basis: jax.Array
  expression_basis: jax.Array
  albedo_mean: jax.Array
  albedo_basis: jax.Array
  triangles: jax.Array
  uv: jax.Array
  landmark_vertices: jax.Array
  landmark_bary: jax.Array
  region: jax.Array
  skinning: Optional[Skinning] = None
  name: str = flax.struct.field(pytree_node=False, default="")
  licence: str = flax.struct.field(pytree_node=False, default="")

  @property
  def num_vertices(self) -> int:
    return self.mean.shape[0]

  @property
  def num_triangles(self) -> int:
    return self.triangles.shape[0]

  @property
  def num_shape(self) -> int:
    return self.shape_basis.shape[-1]

  @property
  def num_expression(self) -> int:
    return self.expression_basis.shape[-1]

  @property
  def num_albedo(self) -> int:
    return self.albedo_basis.shape[-1]

  @property
  def landmarks(self) -> jax.Array:
    """[68] int32: the vertex nearest to each landmark (largest barycentric weight)."""
    pick = jnp.argmax(self.landmark_bary, axis=-1)
    return jnp.take_along_axis(self.landmark_vertices, pick[:, None], axis=-1)[:, 0]


def _combine(basis: jax.Array, coefficients: jax.Array) -> jax.Array:
  """[V, C, K] x [..., K] -> [..., V, C], at full float32 precision on accelerators."""
  return jnp.einsum("vck,...k->...vc", basis, coefficients, precision=_HIGHEST)


def decode(model: MorphableModel, shape: jax.Array, expression: jax.Array) -> jax.Array:
  """Vertices of a face with the given identity and expression, before any pose.

  Args:
    model: the face model.
    shape: [..., Ks] identity coefficients (~N(0, 1)).
    expression: [..., Ke] expression coefficients (~N(0, 1)).
  Returns:
    [..., V, 3] vertices in the model frame, mm.
  """
  return (model.mean + _combine(model.shape_basis, shape)
          + _combine(model.expression_basis, expression))


def albedo(model: MorphableModel, coefficients: jax.Array) -> jax.Array:
  """Per-vertex linear RGB reflectance, not clipped (clip where it is displayed).

  Args:
    coefficients: [..., Ka] albedo coefficients (~N(0, 1)).
  Returns:
    [..., V, 3] reflectance, nominally in [0, 1].
  """
  return model.albedo_mean + _combine(model.albedo_basis, coefficients)


def landmarks_3d(model: MorphableModel, vertices: jax.Array) -> jax.Array:
  """The 68 iBUG landmarks on a mesh of this model's topology.

  Args:
    vertices: [..., V, 3].
  Returns:
    [..., 68, 3] landmark positions (barycentric interpolation of the embedding).
  """
  corners = vertices[..., model.landmark_vertices, :]  # [..., 68, 3, 3]
  return jnp.sum(corners * model.landmark_bary[..., None], axis=-2)


def scale_direction(model: MorphableModel) -> jax.Array:
  """[Ks] unit vector: the identity coefficients along which the face's size grows fastest.

  Size is the mean face's spread about its centroid; to first order a coefficient
  change dc changes it by dc . g with g = basis^T (mean - centroid) (per unit of size),
  so coefficient changes orthogonal to g leave the size alone. A single photo says
  almost nothing about absolute size (it trades with camera distance), so a fit can
  restrain this direction alone (`fit.FitConfig.scale_prior`).
  """
  basis = model.shape_basis.reshape(-1, model.shape_basis.shape[-1])  # [3V, Ks]
  outward = (model.mean - model.mean.mean(0)).reshape(-1)
  gradient = jnp.matmul(basis.T, outward, precision=_HIGHEST)
  return gradient / jnp.linalg.norm(gradient)


def region_weights(model: MorphableModel,
                   weights: tuple[float, ...] = PRNET_REGION_WEIGHTS) -> jax.Array:
  """[V] per-vertex loss weights from the region labels (default PRNet 16:4:3:0)."""
  return jnp.asarray(weights, jnp.float32)[model.region]


def to_numpy(model: MorphableModel) -> dict[str, np.ndarray]:
  """Flat dict of numpy arrays (+ metadata) for `np.savez`; inverse of `from_numpy`."""
  arrays = {k: np.asarray(getattr(model, k)) for k in (
      "mean", "shape_basis", "expression_basis", "albedo_mean", "albedo_basis",
      "triangles", "uv", "landmark_vertices", "landmark_bary", "region")}
  arrays["name"] = np.asarray(model.name)
  arrays["licence"] = np.asarray(model.licence)
  if model.skinning is not None:
    s = model.skinning
    arrays.update(skin_joint_regressor=np.asarray(s.joint_regressor),
                  skin_weights=np.asarray(s.weights), skin_pose_basis=np.asarray(s.pose_basis),
                  skin_parents=np.asarray(s.parents, np.int32),
                  skin_joint_names=np.asarray(s.joint_names))
  return arrays


def from_numpy(arrays) -> MorphableModel:
  """Builds a model from `to_numpy`'s dict (or an open `.npz`), as jnp arrays."""
  skinning = None
  if "skin_weights" in arrays:
    skinning = Skinning(
        joint_regressor=jnp.asarray(arrays["skin_joint_regressor"], jnp.float32),
        weights=jnp.asarray(arrays["skin_weights"], jnp.float32),
        pose_basis=jnp.asarray(arrays["skin_pose_basis"], jnp.float32),
        parents=tuple(int(p) for p in arrays["skin_parents"]),
        joint_names=tuple(str(n) for n in arrays["skin_joint_names"]))
  as_float = lambda k: jnp.asarray(arrays[k], jnp.float32)
  as_int = lambda k: jnp.asarray(arrays[k], jnp.int32)
  return MorphableModel(
      mean=as_float("mean"), shape_basis=as_float("shape_basis"),
      expression_basis=as_float("expression_basis"), albedo_mean=as_float("albedo_mean"),
      albedo_basis=as_float("albedo_basis"), triangles=as_int("triangles"), uv=as_float("uv"),
      landmark_vertices=as_int("landmark_vertices"), landmark_bary=as_float("landmark_bary"),
      region=as_int("region"), skinning=skinning, name=str(arrays["name"]),
      licence=str(arrays["licence"]))
