"""The coefficient-vector contract: named parameter blocks <-> one flat vector.

A reconstruction network regresses, and the GAN-3DMM discriminator, the exporters and
the checkpoints store, one flat float vector per image. `CoefficientLayout` says which
named block sits where in it; `flatten`/`unflatten` convert between the flat vector and
the parameter dict the renderer and `jaxface.fit` use (DESIGN.md §2, "Coefficient
vector").

Blocks, in this order (absent ones are skipped):

  name         shape       units / meaning
  shape        [Ks]        identity coefficients, ~N(0, 1) by the model's contract
  expression   [Ke]        expression coefficients, ~N(0, 1)
  albedo       [Ka]        albedo coefficients, ~N(0, 1)
  rotation     [3]         head rotation, Euler radians (pitch x, yaw y, roll z) as
                           `jaxface.render.euler_to_matrix` reads them
  jaw          [3]         articulated (FLAME) models only: jaw axis-angle, radians, for
                           the "jaw" joint of `jaxface.morphable.decode_posed`
  translation  [3]         perspective: mm / PERSPECTIVE_TRANSLATION_UNIT_MM (units of
                           10 mm, as `jaxface.fit` optimises them, keeping them ~O(1));
               [2]         orthographic: the 2D t of v = s·P(R M) + t, normalised image
                           units ([-1, 1] across the width, y up)
  scale        [1]         orthographic only: s of v = s·P(R M) + t, normalised image
                           units per mm (`jaxface.render.orthographic_camera`)
  light        [9, 3]      9-band SH light per colour channel (27 numbers), the `light`
                           of `jaxface.render.shade_sh`

Shape, expression and albedo come first, so the part the GAN-3DMM discriminator judges
(`normalised`) is a prefix of the flat vector. The ordering of the first three follows
Deng et al.'s 257-d vector (id | exp | tex); the pose and light blocks are reordered.

`CoefficientLayout` is a frozen dataclass of tuples: hashable, so it can be a static
argument of `jax.jit`, and stored in a config.
"""

import dataclasses
import math
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp

from jaxface.morphable import model as model_lib

# Perspective translations are stored in units of 10 mm; must equal
# `jaxface.fit.fitting.TRANSLATION_UNIT_MM` (checked by the tests).
PERSPECTIVE_TRANSLATION_UNIT_MM = 10.0
CAMERA_KINDS = ("perspective", "orthographic")
# The blocks that are ~N(0, I) under the model's prior (the discriminator's input).
PRIOR_BLOCKS = ("shape", "expression", "albedo")


@dataclasses.dataclass(frozen=True)
class CoefficientLayout:
  """Ordered named blocks of a flat coefficient vector (static and hashable).

  Attributes:
    blocks: ((name, shape), ...) in vector order; `shape` is a tuple of positive ints,
      the block's trailing shape in the parameter dict (e.g. ("light", (9, 3))).
    camera: "perspective" or "orthographic": the camera kind the pose blocks belong to.
  """
  blocks: tuple
  camera: str = "perspective"

  def __post_init__(self):
    blocks = tuple((str(name), tuple(int(d) for d in shape)) for name, shape in self.blocks)
    object.__setattr__(self, "blocks", blocks)
    names = [name for name, _ in blocks]
    if len(set(names)) != len(names):
      raise ValueError(f"duplicate block names in {names}")
    for name, shape in blocks:
      if not shape or any(d <= 0 for d in shape):
        raise ValueError(f"block {name!r} needs a non-empty shape of positive sizes; "
                         f"got {shape}")
    if self.camera not in CAMERA_KINDS:
      raise ValueError(f"camera must be one of {CAMERA_KINDS}; got {self.camera!r}")

  @property
  def names(self) -> tuple:
    """Block names in vector order."""
    return tuple(name for name, _ in self.blocks)

  @property
  def shapes(self) -> dict:
    """{name: trailing shape} of every block."""
    return dict(self.blocks)

  @property
  def sizes(self) -> dict:
    """{name: number of vector entries} of every block."""
    return {name: math.prod(shape) for name, shape in self.blocks}

  @property
  def size(self) -> int:
    """Length of the flat vector."""
    return sum(self.sizes.values())

  def slice(self, name: str) -> slice:
    """The vector positions of block `name`."""
    start = 0
    for block, shape in self.blocks:
      if block == name:
        return slice(start, start + math.prod(shape))
      start += math.prod(shape)
    raise KeyError(f"no block {name!r} in layout {self.names}")

  def size_of(self, names: Sequence[str] = PRIOR_BLOCKS) -> int:
    """Total length of the named blocks (e.g. the discriminator's input size)."""
    return sum(self.sizes[self._check_name(n)] for n in names)

  def _check_name(self, name: str) -> str:
    if name not in self.names:
      raise KeyError(f"no block {name!r} in layout {self.names}")
    return name


def make_layout(*, num_shape: int, num_expression: int, num_albedo: int,
                camera: str = "perspective", jaw: bool = False) -> CoefficientLayout:
  """The standard layout for given basis sizes (what a config stores).

  Args:
    num_shape, num_expression, num_albedo: Ks, Ke, Ka.
    camera: "perspective" (translation [3] in 10 mm units, no scale) or "orthographic"
      (translation [2] in normalised image units, scale [1]).
    jaw: add the [3] jaw axis-angle block (articulated models such as FLAME).
  Returns:
    The layout, blocks in the order of the module docstring.
  """
  if camera not in CAMERA_KINDS:
    raise ValueError(f"camera must be one of {CAMERA_KINDS}; got {camera!r}")
  blocks = [("shape", (num_shape,)), ("expression", (num_expression,)),
            ("albedo", (num_albedo,)), ("rotation", (3,))]
  if jaw:
    blocks.append(("jaw", (3,)))
  if camera == "perspective":
    blocks.append(("translation", (3,)))
  else:
    blocks += [("translation", (2,)), ("scale", (1,))]
  blocks.append(("light", (9, 3)))
  return CoefficientLayout(blocks=tuple(blocks), camera=camera)


def layout_for(model: model_lib.MorphableModel, camera: str = "perspective"
               ) -> CoefficientLayout:
  """The standard layout of a model's bases for a camera kind.

  Args:
    model: the face model; its basis sizes give Ks, Ke, Ka, and a "jaw" joint in its
      skinning (FLAME) adds the jaw block.
    camera: "perspective" or "orthographic".
  Returns:
    The layout (e.g. BFM-sim 40/10/Ka, perspective: 40+10+Ka+3+3+27 entries).
  """
  jaw = model.skinning is not None and "jaw" in model.skinning.joint_names
  return make_layout(num_shape=model.num_shape, num_expression=model.num_expression,
                     num_albedo=model.num_albedo, camera=camera, jaw=jaw)


def _leading_shape(layout: CoefficientLayout, params: Mapping[str, jax.Array]) -> tuple:
  """Checks the dict against the layout; returns the broadcast leading shape."""
  missing = [n for n in layout.names if n not in params]
  extra = [n for n in params if n not in layout.names]
  if missing or extra:
    raise ValueError(f"parameters do not match the layout {layout.names}: missing "
                     f"{missing}, unexpected {extra}")
  leading = []
  for name, shape in layout.blocks:
    value = jnp.shape(params[name])
    if tuple(value[len(value) - len(shape):]) != shape or len(value) < len(shape):
      raise ValueError(f"block {name!r} must have trailing shape {shape}; got {value}")
    leading.append(tuple(value[:len(value) - len(shape)]))
  try:
    return jnp.broadcast_shapes(*leading)
  except ValueError as e:
    raise ValueError(f"leading shapes of the blocks do not broadcast: "
                     f"{dict(zip(layout.names, leading))}") from e


def flatten(layout: CoefficientLayout, params: Mapping[str, jax.Array]) -> jax.Array:
  """Concatenates the named blocks into the flat vector.

  Args:
    layout: the layout.
    params: {name: [..., *block shape]} with exactly the layout's blocks. Leading
      (batch) shapes broadcast, so a shared identity [Ks] can be flattened with
      per-frame poses [T, 3].
  Returns:
    [..., layout.size] vector (the blocks' common dtype).
  Raises:
    ValueError: missing or unexpected blocks, a wrong trailing shape, or leading shapes
      that do not broadcast.
  """
  leading = _leading_shape(layout, params)
  dtype = jnp.result_type(*(params[n] for n in layout.names))
  parts = [jnp.broadcast_to(jnp.asarray(params[name], dtype), leading + shape)
           .reshape(leading + (math.prod(shape),)) for name, shape in layout.blocks]
  return jnp.concatenate(parts, axis=-1)


def unflatten(layout: CoefficientLayout, vector: jax.Array) -> dict:
  """Splits a flat vector into the named blocks (inverse of `flatten`).

  Args:
    layout: the layout.
    vector: [..., layout.size].
  Returns:
    {name: [..., *block shape]}, e.g. light [..., 9, 3].
  Raises:
    ValueError: the last axis is not layout.size.
  """
  vector = jnp.asarray(vector)
  if vector.ndim < 1 or vector.shape[-1] != layout.size:
    raise ValueError(f"expected a [..., {layout.size}] vector for layout {layout.names}; "
                     f"got shape {vector.shape}")
  leading = vector.shape[:-1]
  return {name: vector[..., layout.slice(name)].reshape(leading + shape)
          for name, shape in layout.blocks}


def normalised(layout: CoefficientLayout,
               params: Mapping[str, jax.Array] | jax.Array,
               names: Sequence[str] = PRIOR_BLOCKS) -> jax.Array:
  """The prior-distributed part of the coefficients: what the GAN-3DMM discriminator sees.

  GAN-3DMM (seed 000, §1.1.1 (2) and §1.2.1, eq. 2) trains a discriminator to tell
  regressed 3DMM coefficients from samples of p_3DMM = N(0, I). jaxface's bases are
  scaled so that shape, expression and albedo coefficients are ~N(0, 1) (DESIGN.md §2),
  so no whitening is needed: "normalised" is the plain concatenation of those blocks.
  Pose, camera and light have no such prior and are left out.

  Args:
    layout: the layout.
    params: {name: [..., *block shape]} (as for `flatten`, may hold other blocks too)
      or a flat [..., layout.size] vector.
    names: the blocks to concatenate, in this order.
  Returns:
    [..., layout.size_of(names)] (Ks + Ke + Ka for the default names).
  """
  for name in names:
    layout._check_name(name)  # pylint: disable=protected-access
  if not isinstance(params, Mapping):
    params = unflatten(layout, params)
  sub = CoefficientLayout(blocks=tuple((n, layout.shapes[n]) for n in names),
                          camera=layout.camera)
  return flatten(sub, {n: params[n] for n in names})


def sample_prior(layout: CoefficientLayout, key: jax.Array, batch_shape: tuple = (),
                 names: Sequence[str] = PRIOR_BLOCKS, dtype=jnp.float32) -> jax.Array:
  """Samples of the model prior N(0, I) in the `normalised` layout (the "real" GAN input).

  Args:
    layout: the layout.
    key: a PRNG key.
    batch_shape: leading shape of the samples.
    names: the blocks, as for `normalised`.
  Returns:
    [*batch_shape, layout.size_of(names)] standard normal samples.
  """
  return jax.random.normal(key, tuple(batch_shape) + (layout.size_of(names),), dtype)
