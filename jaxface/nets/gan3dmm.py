"""GAN-3DMM networks (seed 000): the coefficient "generator" and the coefficient discriminator.

Generator (paper §1.1.1): a ResNet-50 whose 1000-way classifier is replaced by a fully
connected layer to the flat 3DMM coefficient vector: ResNet-50 -> global average pool
(2048) -> Dense(num_coefficients). The paper feeds 224x224 face crops. The Dense layer
is initialised small (variance scaling `head_init_scale`, fan-in: weights of standard
deviation ~2e-4 for 2048 inputs), so the first regressed coefficients are ≈ 0, the
prior's mean face, instead of random faces far outside the prior. The flat layout (which
slices are shape, expression, albedo, pose, light) belongs to the config; the generator
only knows its length.

Discriminator (paper §1.1.1 (2), Fig. 3): "3 fully connected layers" on coefficient
vectors, telling samples of the prior N(0, I) from regressed vectors. The figure's layer
sizes and activations are not legible in the source, so this follows the common choice for
small MLP discriminators: Dense(512) -> leaky ReLU(0.2) -> Dense(512) -> leaky ReLU(0.2)
-> Dense(1), one logit per example (the GAN loss applies the sigmoid). Parameters for
input size D: (D + 1)·512 + (512 + 1)·512 + (512 + 1) = 512·D + 263,681.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax

from jaxface.nets import resnet


class Gan3dmmGenerator(nn.Module):
  """ResNet backbone -> global average pool -> Dense to the flat coefficient vector.

  Attributes:
    num_coefficients: length of the flat coefficient vector.
    backbone: "resnet50" (the paper's), "resnet18" or "tiny" (tests, smoke runs); see
      `resnet.BACKBONES`.
    norm: "batch" or "group" (see `resnet`).
    axis_name: data-parallel axis for cross-device batch norm ("data" when training
      under shard_map/pmap; None otherwise).
    head_init_scale: variance scale of the output layer's fan-in initialisation (small:
      initial coefficients ≈ 0).
    dtype: computation dtype; the output is cast to float32.
  """
  num_coefficients: int
  backbone: str = "resnet50"
  norm: str = "batch"
  axis_name: str | None = None
  head_init_scale: float = 1e-4
  dtype: Any = None

  def setup(self):
    self.resnet = resnet.make_backbone(self.backbone, norm=self.norm, axis_name=self.axis_name,
                                       dtype=self.dtype)
    self.head = nn.Dense(self.num_coefficients, dtype=self.dtype,
                         kernel_init=nn.initializers.variance_scaling(
                             self.head_init_scale, "fan_in", "truncated_normal"))

  def __call__(self, images: jax.Array, *, train: bool) -> jax.Array:
    """Regresses coefficient vectors from face crops.

    Args:
      images: [B, H, W, C] crops (the paper: 224x224 RGB in [0, 1]).
      train: batch statistics and "batch_stats" updates (norm="batch").
    Returns:
      [B, num_coefficients] float32 flat coefficient vectors (unitless, the prior is
      N(0, I) in the model's whitened coefficients).
    """
    return self.regress(self.resnet(images, train=train)["pooled"])

  def regress(self, features: jax.Array) -> jax.Array:
    """The output layer alone: [B, F] pooled backbone features -> [B, num_coefficients]."""
    return self.head(features).astype("float32")


class CoefficientDiscriminator(nn.Module):
  """3-layer MLP: coefficient vector -> one real/fake logit (GAN-3DMM's discriminator).

  Attributes:
    hidden: widths of the hidden layers (two for the paper's 3 layers).
    negative_slope: leaky ReLU slope of the hidden activations.
    dtype: computation dtype; the logits are cast to float32.
  """
  hidden: Sequence[int] = (512, 512)
  negative_slope: float = 0.2
  dtype: Any = None

  @nn.compact
  def __call__(self, coefficients: jax.Array) -> jax.Array:
    """Scores coefficient vectors.

    Args:
      coefficients: [B, D] flat coefficient vectors (prior samples or regressed).
    Returns:
      [B] float32 logits; > 0 means "from the prior N(0, I)".
    """
    if coefficients.ndim != 2:
      raise ValueError(f"coefficients must be [B, D]; got {coefficients.shape}")
    x = coefficients
    for i, width in enumerate(self.hidden):
      x = nn.leaky_relu(nn.Dense(width, dtype=self.dtype, name=f"dense{i + 1}")(x),
                        self.negative_slope)
    logits = nn.Dense(1, dtype=self.dtype, name=f"dense{len(self.hidden) + 1}")(x)
    return logits[:, 0].astype("float32")
