"""Relation-aware global attention (RGA; Zhang et al., CVPR 2020), spatial and channel.

RGA scores every feature node from its global relations: for node i of N nodes,
  r_{i,k} = θ(x_i)ᵀ φ(x_k)                    pairwise affinity (MLFL-GA eqs. 8-9),
  r_i = [r_{i,1..N}, r_{1..N,i}]              outgoing and incoming relations (eq. 7),
  y_i = [pool_c(ψ(x_i)), ω(r_i)]              embedded feature + embedded relations (eq. 6),
  a_i = sigmoid(W(y_i)),  out_i = a_i · x_i   attention by a small 1x1-conv network.
RGA-S (`RGASpatial`) takes the H·W positions of a [B, H, W, C] map as nodes (features:
the C channels) and gives one weight per position; RGA-C (`RGAChannel`) takes the C
channels as nodes (features: the H·W values of each channel) and gives one weight per
channel. `RGA` applies RGA-S then RGA-C, as the paper's joint "RGA-SC" module.

Structure, checked against the paper and its official code
(microsoft/Relation-Aware-Global-Attention-Networks, `RGA_Module`), with ratios
channel_ratio = spatial_ratio = down_ratio = 8 by default (the code's defaults):
- every "embedding" is a 1x1 conv without bias -> norm -> relu (θ, φ, ψ, ω and W's
  hidden layer); W's output layer is a 1x1 conv to 1 channel -> norm, no relu;
- RGA-S: θ, φ, ψ: C -> C/8; ω: 2N -> N/8; ψ's output is averaged over its channels (1
  value per node); W: 1 + N/8 -> (1 + N/8)//8 -> 1;
- RGA-C: θ, φ, ψ: N -> N/8 (on each channel's H·W vector); ω: 2C -> C/8; W: 1 + C/8
  -> (1 + C/8)//8 -> 1.
Deviations: hidden widths are at least 1 (the code's integer division gives 0 for tiny
maps); `norm` may be "group" instead of batch norm (see `resnet.make_norm`); 1x1 convs
use He-normal (fan-in) initialisation as the official `weights_init_kaiming`.

Parameters (no conv biases; each norm adds 2 per channel), with Ci = C//8, Ni = N//8:
- RGA-S: 3(C·Ci + 2Ci) + (2N·Ni + 2Ni) + (K·Kd + 2Kd + Kd + 2), K = 1 + Ni, Kd = K//8;
- RGA-C: 3(N·Ni + 2Ni) + (2C·Ci + 2Ci) + (K·Kd + 2Kd + Kd + 2), K = 1 + Ci, Kd = K//8.
Both depend on N = H·W: a module is tied to the feature-map size it was initialised at.
At 224x224 input, ResNet-50's stage 1 (C=256, 56x56, N=3136) gives 2,503,582 (RGA-S) and
3,706,882 (RGA-C) parameters.

Memory and compute: RGA-S builds the N x N relation matrix: N² floats per example, 39 MB
(float32) at stage 1 for a 224 input (N = 3136), kept for the backward pass (which adds
its gradient, another 39 MB): ~1.4 GB at batch 18. ω then costs 2·N²·N/8 multiply-adds
(7.7 GMAC per example at stage 1, about twice ResNet-50's whole forward pass of 4.0
GMAC); with RGA-C's N -> N/8 embeddings, RGA at stage 1 costs ~9.1 GMAC per example
(XLA cost analysis), stages 2-4 together ~3.1. RGA-C's relation matrix is only C x C.
`relation_embed` applies ω to [r_{i,:}, r_{:,i}] without materialising the 2N-wide
concatenation. Restrict attention to later stages (the encoder's `rga_stages`) for
small-memory or CPU runs.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxface.nets import resnet

DEFAULT_RATIO = 8
embed_init = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def relation_embed(relations: jax.Array, kernel: jax.Array) -> jax.Array:
  """A 1x1 conv on each node's relation vector [r_{i,1..N}, r_{1..N,i}] (eq. 7).

  Equivalent to `concatenate([relations, swapaxes(relations, 1, 2)], -1) @ kernel` but
  never forms the [B, N, 2N] tensor.

  Args:
    relations: [B, N, N], relations[b, i, k] = r_{i,k}.
    kernel: [2N, K]; rows 0..N-1 weigh the outgoing relations r_{i,·}, rows N..2N-1 the
      incoming ones r_{·,i}.
  Returns:
    [B, N, K].
  """
  n = relations.shape[-1]
  if relations.ndim != 3 or relations.shape[1] != n or kernel.shape[0] != 2 * n:
    raise ValueError(f"need relations [B, N, N] and kernel [2N, K]; got {relations.shape} "
                     f"and {kernel.shape}")
  return (jnp.einsum("bik,kc->bic", relations, kernel[:n])
          + jnp.einsum("bki,kc->bic", relations, kernel[n:]))


class Embedding(nn.Module):
  """1x1 conv (a Dense over the last axis, no bias) -> norm -> relu (optional).

  Attributes:
    features: output channels.
    relu: apply the relu (False for W's output layer).
    norm, axis_name, momentum, dtype: as `resnet.ResNet`.
  """
  features: int
  relu: bool = True
  norm: str = "batch"
  axis_name: str | None = None
  momentum: float = resnet.BATCH_NORM_MOMENTUM
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Args: x [B, ..., C_in]. Returns: [B, ..., features]."""
    y = nn.Dense(self.features, use_bias=False, kernel_init=embed_init, dtype=self.dtype,
                 name="conv")(x)
    y = resnet.make_norm(self.norm, self.features, train=train, axis_name=self.axis_name,
                         momentum=self.momentum, dtype=self.dtype, name="norm")(y)
    return nn.relu(y) if self.relu else y


class RelationEmbedding(nn.Module):
  """ω: `relation_embed` with a learnt [2N, features] kernel -> norm -> relu."""
  features: int
  norm: str = "batch"
  axis_name: str | None = None
  momentum: float = resnet.BATCH_NORM_MOMENTUM
  dtype: Any = None

  @nn.compact
  def __call__(self, relations: jax.Array, *, train: bool) -> jax.Array:
    """Args: relations [B, N, N]. Returns: [B, N, features]."""
    n = relations.shape[-1]
    kernel = self.param("kernel", embed_init, (2 * n, self.features), jnp.float32)
    if self.dtype is not None:
      relations, kernel = relations.astype(self.dtype), kernel.astype(self.dtype)
    y = relation_embed(relations, kernel)
    y = resnet.make_norm(self.norm, self.features, train=train, axis_name=self.axis_name,
                         momentum=self.momentum, dtype=self.dtype, name="norm")(y)
    return nn.relu(y)


class _RelationAttention(nn.Module):
  """Shared RGA core on a node-major tensor: nodes [B, N, D] -> attention logits [B, N]."""
  node_ratio: int
  feature_ratio: int
  down_ratio: int
  norm: str
  axis_name: str | None
  momentum: float
  dtype: Any

  @nn.compact
  def __call__(self, nodes: jax.Array, *, train: bool) -> jax.Array:
    """Args: nodes [B, N, D] (node i's feature vector x_i). Returns: [B, N] logits."""
    n, d = nodes.shape[1:]
    common = {"norm": self.norm, "axis_name": self.axis_name, "momentum": self.momentum,
              "dtype": self.dtype}
    inner = max(1, d // self.feature_ratio)   # θ, φ, ψ width
    relation = max(1, n // self.node_ratio)   # ω width
    theta = Embedding(inner, name="theta", **common)(nodes, train=train)
    phi = Embedding(inner, name="phi", **common)(nodes, train=train)
    relations = jnp.einsum("bic,bkc->bik", theta, phi)  # r_{i,k}, eqs. 8-9
    embedded = RelationEmbedding(relation, name="relation", **common)(relations, train=train)
    own = jnp.mean(Embedding(inner, name="psi", **common)(nodes, train=train), -1,
                   keepdims=True)
    y = jnp.concatenate([own, embedded], -1)  # eq. 6: [B, N, 1 + relation]
    hidden = max(1, y.shape[-1] // self.down_ratio)
    y = Embedding(hidden, name="w1", **common)(y, train=train)
    return Embedding(1, relu=False, name="w2", **common)(y, train=train)[..., 0]


class RGASpatial(nn.Module):
  """RGA-S: one attention weight per spatial position from its global relations.

  Attributes:
    channel_ratio: θ, φ, ψ reduce C channels to C // channel_ratio.
    spatial_ratio: ω reduces the 2N relations of a position to N // spatial_ratio.
    down_ratio: W's hidden layer has (1 + N // spatial_ratio) // down_ratio channels.
    norm, axis_name, momentum, dtype: as `resnet.ResNet`.
  """
  channel_ratio: int = DEFAULT_RATIO
  spatial_ratio: int = DEFAULT_RATIO
  down_ratio: int = DEFAULT_RATIO
  norm: str = "batch"
  axis_name: str | None = None
  momentum: float = resnet.BATCH_NORM_MOMENTUM
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Reweights the positions of a feature map.

    Args:
      x: [B, H, W, C] features (N = H·W must match the size at initialisation).
      train: batch statistics (norm="batch").
    Returns:
      [B, H, W, C] = a ⊙ x with a [B, H, W, 1] in (0, 1).
    """
    b, h, w, c = x.shape
    logits = _RelationAttention(self.spatial_ratio, self.channel_ratio, self.down_ratio,
                                self.norm, self.axis_name, self.momentum, self.dtype,
                                name="core")(x.reshape(b, h * w, c), train=train)
    return x * nn.sigmoid(logits).reshape(b, h, w, 1).astype(x.dtype)


class RGAChannel(nn.Module):
  """RGA-C: one attention weight per channel from its global relations to all channels.

  Attributes:
    channel_ratio: ω reduces the 2C relations of a channel to C // channel_ratio.
    spatial_ratio: θ, φ, ψ reduce each channel's N = H·W values to N // spatial_ratio.
    down_ratio: W's hidden layer has (1 + C // channel_ratio) // down_ratio channels.
    norm, axis_name, momentum, dtype: as `resnet.ResNet`.
  """
  channel_ratio: int = DEFAULT_RATIO
  spatial_ratio: int = DEFAULT_RATIO
  down_ratio: int = DEFAULT_RATIO
  norm: str = "batch"
  axis_name: str | None = None
  momentum: float = resnet.BATCH_NORM_MOMENTUM
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Reweights the channels of a feature map.

    Args:
      x: [B, H, W, C] features (H·W must match the size at initialisation).
      train: batch statistics (norm="batch").
    Returns:
      [B, H, W, C] = a ⊙ x with a [B, 1, 1, C] in (0, 1).
    """
    b, h, w, c = x.shape
    nodes = jnp.swapaxes(x.reshape(b, h * w, c), 1, 2)  # [B, C, N]: channel c's map.
    logits = _RelationAttention(self.channel_ratio, self.spatial_ratio, self.down_ratio,
                                self.norm, self.axis_name, self.momentum, self.dtype,
                                name="core")(nodes, train=train)
    return x * nn.sigmoid(logits).reshape(b, 1, 1, c).astype(x.dtype)


class RGA(nn.Module):
  """RGA-S followed by RGA-C (the paper's joint spatial-channel module, RGA-SC).

  Attributes:
    spatial, channel: which of the two to apply (at least one).
    channel_ratio, spatial_ratio, down_ratio, norm, axis_name, momentum, dtype: passed
      to both (see `RGASpatial`, `RGAChannel`).
  """
  spatial: bool = True
  channel: bool = True
  channel_ratio: int = DEFAULT_RATIO
  spatial_ratio: int = DEFAULT_RATIO
  down_ratio: int = DEFAULT_RATIO
  norm: str = "batch"
  axis_name: str | None = None
  momentum: float = resnet.BATCH_NORM_MOMENTUM
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Args: x [B, H, W, C]. Returns: [B, H, W, C] reweighted features."""
    if not (self.spatial or self.channel):
      raise ValueError("RGA needs spatial=True or channel=True")
    common = {"channel_ratio": self.channel_ratio, "spatial_ratio": self.spatial_ratio,
              "down_ratio": self.down_ratio, "norm": self.norm, "axis_name": self.axis_name,
              "momentum": self.momentum, "dtype": self.dtype}
    if self.spatial:
      x = RGASpatial(name="spatial", **common)(x, train=train)
    if self.channel:
      x = RGAChannel(name="channel", **common)(x, train=train)
    return x
