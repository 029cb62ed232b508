"""ResNet-18 / ResNet-50 backbones (He et al. 2016) in flax.linen, with per-stage outputs.

Architecture (torchvision's layout, so parameter counts and shapes match it):
- stem: conv 7x7/2 (pad 3, no bias) -> norm -> relu -> max pool 3x3/2 (pad 1);
- 4 stages of residual blocks, widths `width`·(1, 2, 4, 8); the first block of stages
  2-4 has stride 2. "basic" blocks (ResNet-18/34): conv 3x3 -> norm -> relu -> conv 3x3
  -> norm. "bottleneck" blocks (ResNet-50/101, the "v1.5" variant: the stride sits in the
  3x3 conv, not the first 1x1): conv 1x1 -> norm -> relu -> conv 3x3/s -> norm -> relu ->
  conv 1x1 (4x width) -> norm. A block whose stride or channel count changes projects its
  shortcut with conv 1x1/s -> norm. Convolutions have no bias; all padding is symmetric
  (as in PyTorch), not XLA's "SAME" (which pads strided convs asymmetrically).
- the last norm of every residual branch has its scale initialised to zero (Goyal et al.
  2017, "Accurate, large minibatch SGD"): each block starts as the identity on its
  shortcut, which steadies early training at large batch sizes.
- no classifier: `pooled` is the global average of the last stage.

Figures for 3 input channels (convolutions + norm scale/shift, no classifier):
ResNet-18 11,176,512 parameters; ResNet-50 23,508,032 (torchvision's 11,689,512 and
25,557,032 less their 1000-way fc). More input channels add 7·7·(C_in - 3)·64 to the stem.

Normalisation (`norm`):
- "batch": `nn.BatchNorm` (momentum 0.9 = PyTorch's 0.1, eps 1e-5). Its running averages
  live in the mutable "batch_stats" collection: call `apply(variables, x, train=True,
  mutable=["batch_stats"])` when training, `train=False` (running averages, nothing
  mutable) when evaluating. When training data-parallel (the train step under
  `jax.shard_map`/`jax.pmap` with a mesh axis "data"), pass `axis_name="data"` so the
  batch statistics are averaged over all devices (`lax.pmean`), i.e. computed over the
  global batch; without it every device normalises by its own per-device batch. The axis
  must then be bound (calling with train=True outside shard_map/pmap fails).
- "group": `nn.GroupNorm` with 32 groups (fewer, the largest divisor of the width, for
  tiny widths). No batch statistics, no "batch_stats" collection: better for small
  per-device batches; the same parameter count as "batch".
"""

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

NORMS = ("batch", "group")
BLOCKS = ("basic", "bottleneck")
BATCH_NORM_MOMENTUM = 0.9
NORM_EPSILON = 1e-5

# He initialisation over the output fan (torchvision's kaiming_normal_(mode="fan_out")).
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def num_groups(channels: int, max_groups: int = 32) -> int:
  """The largest divisor of `channels` that is at most `max_groups` (GroupNorm groups)."""
  return max(g for g in range(1, min(channels, max_groups) + 1) if channels % g == 0)


def make_norm(kind: str, channels: int, *, train: bool, axis_name: str | None = None,
              momentum: float = BATCH_NORM_MOMENTUM, zero_init: bool = False,
              dtype: Any = None, name: str | None = None) -> nn.Module:
  """A normalisation layer over the last axis, shared by the backbones and attention.

  Args:
    kind: "batch" (nn.BatchNorm; statistics over every axis but the last, averaged over
      `axis_name` devices when set) or "group" (nn.GroupNorm, `num_groups(channels)`).
    channels: size of the last axis of the input.
    train: batch statistics (True) or running averages (False); "batch" only.
    axis_name: mesh/pmap axis for cross-device batch statistics ("batch" only).
    momentum: running-average decay ("batch" only).
    zero_init: initialise the scale to 0 (last norm of a residual branch).
    dtype: computation dtype (None: from the inputs).
    name: submodule name.
  Returns:
    An unbound flax module; call it on [..., channels].
  """
  scale_init = nn.initializers.zeros if zero_init else nn.initializers.ones
  if kind == "batch":
    return nn.BatchNorm(use_running_average=not train, momentum=momentum,
                        epsilon=NORM_EPSILON, axis_name=axis_name, scale_init=scale_init,
                        dtype=dtype, name=name)
  if kind == "group":
    return nn.GroupNorm(num_groups=num_groups(channels), epsilon=NORM_EPSILON,
                        scale_init=scale_init, dtype=dtype, name=name)
  raise ValueError(f"norm must be one of {NORMS}; got {kind!r}")


def _conv(features: int, kernel: int, strides: int = 1, *, dtype: Any = None,
          name: str | None = None) -> nn.Conv:
  """k x k convolution without bias, symmetric padding k // 2 (PyTorch's)."""
  pad = kernel // 2
  return nn.Conv(features, (kernel, kernel), strides=strides, padding=((pad, pad), (pad, pad)),
                 use_bias=False, kernel_init=conv_init, dtype=dtype, name=name)


class BasicBlock(nn.Module):
  """ResNet-18/34 block: 3x3 conv (stride) -> norm -> relu -> 3x3 conv -> norm, + shortcut.

  Attributes:
    features: output channels.
    strides: spatial stride of the first conv and the shortcut projection.
    norm, axis_name, momentum, dtype: see `ResNet`.
  """
  features: int
  strides: int = 1
  norm: str = "batch"
  axis_name: str | None = None
  momentum: float = BATCH_NORM_MOMENTUM
  dtype: Any = None
  expansion: ClassVar[int] = 1

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Args: x [B, H, W, C]. Returns: [B, ceil(H/s), ceil(W/s), features]."""
    norm = lambda c, name, zero=False: make_norm(
        self.norm, c, train=train, axis_name=self.axis_name, momentum=self.momentum,
        zero_init=zero, dtype=self.dtype, name=name)
    y = _conv(self.features, 3, self.strides, dtype=self.dtype, name="conv1")(x)
    y = nn.relu(norm(self.features, "norm1")(y))
    y = _conv(self.features, 3, dtype=self.dtype, name="conv2")(y)
    y = norm(self.features, "norm2", zero=True)(y)
    shortcut = x
    if self.strides != 1 or x.shape[-1] != self.features:
      shortcut = _conv(self.features, 1, self.strides, dtype=self.dtype, name="proj")(x)
      shortcut = norm(self.features, "proj_norm")(shortcut)
    return nn.relu(y + shortcut)


class BottleneckBlock(nn.Module):
  """ResNet-50 v1.5 block: 1x1 -> 3x3 (stride) -> 1x1 (4x features) with norms, + shortcut.

  Attributes:
    features: bottleneck width; the block outputs 4·features channels.
    strides: spatial stride of the 3x3 conv and the shortcut projection.
    norm, axis_name, momentum, dtype: see `ResNet`.
  """
  features: int
  strides: int = 1
  norm: str = "batch"
  axis_name: str | None = None
  momentum: float = BATCH_NORM_MOMENTUM
  dtype: Any = None
  expansion: ClassVar[int] = 4

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Args: x [B, H, W, C]. Returns: [B, ceil(H/s), ceil(W/s), 4·features]."""
    norm = lambda c, name, zero=False: make_norm(
        self.norm, c, train=train, axis_name=self.axis_name, momentum=self.momentum,
        zero_init=zero, dtype=self.dtype, name=name)
    out = self.features * self.expansion
    y = _conv(self.features, 1, dtype=self.dtype, name="conv1")(x)
    y = nn.relu(norm(self.features, "norm1")(y))
    y = _conv(self.features, 3, self.strides, dtype=self.dtype, name="conv2")(y)
    y = nn.relu(norm(self.features, "norm2")(y))
    y = _conv(out, 1, dtype=self.dtype, name="conv3")(y)
    y = norm(out, "norm3", zero=True)(y)
    shortcut = x
    if self.strides != 1 or x.shape[-1] != out:
      shortcut = _conv(out, 1, self.strides, dtype=self.dtype, name="proj")(x)
      shortcut = norm(out, "proj_norm")(shortcut)
    return nn.relu(y + shortcut)


_BLOCK_CLASSES = {"basic": BasicBlock, "bottleneck": BottleneckBlock}


class Stem(nn.Module):
  """conv 7x7/2 -> norm -> relu -> max pool 3x3/2: [B, H, W, C] -> [B, H/4, W/4, width]."""
  width: int = 64
  norm: str = "batch"
  axis_name: str | None = None
  momentum: float = BATCH_NORM_MOMENTUM
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Args: x [B, H, W, C_in], any C_in. Returns: [B, ceil(H/4), ceil(W/4), width]."""
    x = _conv(self.width, 7, 2, dtype=self.dtype, name="conv")(x)
    x = make_norm(self.norm, self.width, train=train, axis_name=self.axis_name,
                  momentum=self.momentum, dtype=self.dtype, name="norm")(x)
    x = nn.relu(x)
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


class Stage(nn.Module):
  """`num_blocks` residual blocks; the first one carries the stride and the projection.

  Attributes:
    block: "basic" or "bottleneck".
    features: block width (bottleneck blocks output 4x this).
    num_blocks: number of blocks.
    strides: stride of the first block.
    norm, axis_name, momentum, dtype: see `ResNet`.
  """
  block: str
  features: int
  num_blocks: int
  strides: int = 1
  norm: str = "batch"
  axis_name: str | None = None
  momentum: float = BATCH_NORM_MOMENTUM
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Args: x [B, H, W, C]. Returns: [B, H/strides, W/strides, channels of the block]."""
    cls = _BLOCK_CLASSES[self.block]
    for i in range(self.num_blocks):
      x = cls(self.features, self.strides if i == 0 else 1, norm=self.norm,
              axis_name=self.axis_name, momentum=self.momentum, dtype=self.dtype,
              name=f"block{i + 1}")(x, train=train)
    return x


class ResNet(nn.Module):
  """A ResNet backbone returning every stage's output (for FPNs) and the pooled features.

  The submodules `stem` and `stages` (a list) are public so that encoders can run the
  stages one at a time and insert attention between them (see `mlfl_ga`).

  Attributes:
    stage_sizes: blocks per stage: (2, 2, 2, 2) ResNet-18, (3, 4, 6, 3) ResNet-50.
    block: "basic" or "bottleneck".
    width: channels of the stem and of stage 1's blocks (64 for the standard nets);
      stage i has width·2^(i-1) (x4 for bottlenecks).
    norm: "batch" or "group" (see the module docstring).
    axis_name: the data-parallel axis for cross-device batch norm; pass "data" when the
      train step runs under shard_map/pmap over the "data" mesh axis. None: per device.
    momentum: BatchNorm running-average decay.
    dtype: computation dtype (e.g. jnp.bfloat16 on accelerators); params stay float32.
  """
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  block: str = "bottleneck"
  width: int = 64
  norm: str = "batch"
  axis_name: str | None = None
  momentum: float = BATCH_NORM_MOMENTUM
  dtype: Any = None

  @property
  def stage_channels(self) -> tuple[int, ...]:
    """Channels of each stage's output."""
    expansion = _BLOCK_CLASSES[self.block].expansion
    return tuple(self.width * 2 ** i * expansion for i in range(len(self.stage_sizes)))

  def setup(self):
    if self.block not in BLOCKS:
      raise ValueError(f"block must be one of {BLOCKS}; got {self.block!r}")
    if self.norm not in NORMS:
      raise ValueError(f"norm must be one of {NORMS}; got {self.norm!r}")
    common = {"norm": self.norm, "axis_name": self.axis_name, "momentum": self.momentum,
              "dtype": self.dtype}
    self.stem = Stem(self.width, **common)
    self.stages = [Stage(self.block, self.width * 2 ** i, n, 1 if i == 0 else 2, **common)
                   for i, n in enumerate(self.stage_sizes)]

  def __call__(self, x: jax.Array, *, train: bool) -> dict:
    """Runs the backbone.

    Args:
      x: [B, H, W, C] images (any C, e.g. RGB in [0, 1] plus prior channels).
      train: batch statistics and "batch_stats" updates (norm="batch") if True.
    Returns:
      {"stages": list of the stage outputs, stage i [B, H/2^(i+1), W/2^(i+1),
      stage_channels[i]] (i = 1..4; 56, 28, 14, 7 px at 224 input), "pooled": [B,
      stage_channels[-1]] global average of the last stage}.
    """
    if x.ndim != 4:
      raise ValueError(f"ResNet input must be [B, H, W, C]; got {x.shape}")
    x = self.stem(x, train=train)
    stages = []
    for stage in self.stages:
      x = stage(x, train=train)
      stages.append(x)
    return {"stages": stages, "pooled": jnp.mean(x, axis=(1, 2))}


def resnet18(**kw) -> ResNet:
  """ResNet-18: basic blocks (2, 2, 2, 2), width 64, 512 pooled features."""
  return ResNet(**{"stage_sizes": (2, 2, 2, 2), "block": "basic", "width": 64, **kw})


def resnet50(**kw) -> ResNet:
  """ResNet-50 v1.5: bottlenecks (3, 4, 6, 3), width 64, 2048 pooled features."""
  return ResNet(**{"stage_sizes": (3, 4, 6, 3), "block": "bottleneck", "width": 64, **kw})


def tiny_resnet(**kw) -> ResNet:
  """A tiny ResNet for tests and CPU smoke runs: basic blocks (1, 1, 1, 1), width 8."""
  return ResNet(**{"stage_sizes": (1, 1, 1, 1), "block": "basic", "width": 8, **kw})


BACKBONES: dict[str, Callable[..., ResNet]] = {
    "resnet18": resnet18, "resnet50": resnet50, "tiny": tiny_resnet}
"""Backbone constructors by config name; each takes ResNet's fields as keywords."""


def make_backbone(name: str, **fields) -> ResNet:
  """The backbone called `name` (a `BACKBONES` key); ValueError listing them otherwise."""
  if name not in BACKBONES:
    raise ValueError(f"backbone must be one of {sorted(BACKBONES)}; got {name!r}")
  return BACKBONES[name](**fields)
