"""MLFL-GA's coarse encoder (seed 001 §2.1-2.2, §2.5): priors + ResNet-50 + RGA + FPN -> codes.

Pipeline:
1. Prior-information module (§2.1): the input is the RGB crop concatenated with prior
   channels, 68 landmark heatmaps (`landmark_heatmaps`, [B, H, W, 68]) or one landmark
   map (`landmark_map`, [B, H, W, 1]), plus the face mask [B, H, W, 1]; `prior_input`
   builds it. The backbone's first conv takes the 3 + K channels (K = `prior_channels`:
   69 or 2), adding 7·7·K·64 parameters to ResNet-50's stem.
2. ResNet-50 with a global relation-aware pyramid attention module (GRPAM, §2.2): RGA-S
   then RGA-C (`attention.RGA`) after each of the 4 stages (C2..C5). As in the RGA
   paper's official network, the attention sits inline: the reweighted map feeds both
   the next stage and the pyramid. `rga_stages` picks the stages (1-based) that get it.
3. FPN top-down fusion (Lin et al. 2017): 1x1 lateral convs to `fpn_width` channels,
   P5 = L5, P_i = L_i + upsample×2(P_{i+1}) (nearest), then a 3x3 conv on every level.
4. Global average pool of each fused level, concatenated ([B, 4·fpn_width]) -> Dense(
   `hidden`) -> relu -> one Dense head per code (DECA's regressor is 2048 -> 1024 ->
   codes; the paper gives no sizes). Heads start small (`head_init_scale`), so the first
   outputs are the mean face, frontal pose, `camera_scale_init` and ambient light.

Choices where the paper is vague (written down here, as DESIGN.md asks):
- pose: `pose` = head rotation as Euler angles (pitch, yaw, roll) in radians,
  R = Rz(roll) Ry(yaw) Rx(pitch) (`render.euler_to_matrix`); FLAME's jaw joint as
  axis-angle radians in `jaw_pose` (DECA's θ_jaw, used by the detail decoder);
- camera: v = s·P(R M) + t (§1.2), s > 0 in normalised image units per mm
  (`render.orthographic_camera`; [-1, 1] spans the image width), parameterised as
  s = camera_scale_init · exp(z) so it stays positive; t in normalised image units;
- light: 9 SH bands x RGB in `render.shade_sh`'s order, [B, 9, 3]; the DC bias starts at
  the value that gives irradiance `light_init` (`render.ambient_sh(light_init)`);
- RGA ratios 8/8/8 (the RGA code's defaults); FPN width 256 (FPN's); landmark heatmaps
  are unnormalised Gaussians (peak 1) of `sigma` pixels.

Cost at 224x224 (forward, per example, XLA cost analysis): 21.6 GMAC with RGA at all
stages, 12.5 with `rga_stages=(2, 3, 4)`, 9.4 without RGA (ResNet-50 alone: 4.0; the
72-channel stem adds 2.7, the FPN's 3x3 convs ~2.4). RGA-S at stage 1 holds a (56·56)²
relation matrix per example (39 MB float32, see `attention`). For CPU runs and tests use
small inputs, the tiny backbone, and/or `rga_stages=(3, 4)`.

Full size (ResNet-50, 224x224, 3 + 69 channels, all RGA stages, DECA's 100/50/50 codes):
38,437,468 parameters: backbone 23,724,416; RGA 10,077,168 (stages 1-4: 6,210,464,
551,068, 682,296, 2,633,340); FPN 3,344,384; regressor 1,291,500.
"""

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxface.nets import attention, resnet

NUM_LANDMARKS = 68
PRIOR_CHANNELS = {"heatmaps": NUM_LANDMARKS + 1, "map": 2}
"""Prior channels (landmark channels + 1 mask) per `prior_input` landmark mode."""
SH_DC_FOR_UNIT_IRRADIANCE = 2.0 / math.sqrt(math.pi)  # 1/(π·Y00), render.ambient_sh(1).


def _pixel_grid(size) -> tuple[jax.Array, jax.Array]:
  """Pixel-centre coordinates (x [H, W], y [H, W]): pixel (i, j) at (j + 0.5, i + 0.5)."""
  height, width = (size, size) if isinstance(size, int) else tuple(size)
  y, x = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32) + 0.5,
                      jnp.arange(width, dtype=jnp.float32) + 0.5, indexing="ij")
  return x, y


def landmark_heatmaps(landmarks: jax.Array, size, sigma: float = 3.0) -> jax.Array:
  """One Gaussian heatmap per landmark (the prior-information module's landmark channels).

  Args:
    landmarks: [B, L, 2] (L = 68, iBUG order) pixel coordinates, x right, y down, pixel
      (row i, column j) centred at (j + 0.5, i + 0.5).
    size: output size, an int or (height, width) in pixels.
    sigma: Gaussian standard deviation, pixels (3 at 224 px; scale with the size).
  Returns:
    [B, H, W, L] float32 in [0, 1]: exp(-d² / 2σ²), 1 where a landmark sits on a pixel
    centre.
  """
  if landmarks.ndim != 3 or landmarks.shape[-1] != 2:
    raise ValueError(f"landmarks must be [B, L, 2]; got {landmarks.shape}")
  x, y = _pixel_grid(size)
  lm = landmarks.astype(jnp.float32)[:, None, None]  # [B, 1, 1, L, 2]
  d2 = (x[..., None] - lm[..., 0]) ** 2 + (y[..., None] - lm[..., 1]) ** 2
  return jnp.exp(-d2 / (2.0 * sigma ** 2))


def landmark_map(landmarks: jax.Array, size, sigma: float = 3.0) -> jax.Array:
  """All landmarks in one channel: the maximum of their Gaussian heatmaps.

  Args:
    landmarks: [B, L, 2] pixels, as `landmark_heatmaps`.
    size: an int or (height, width) in pixels.
    sigma: Gaussian standard deviation, pixels.
  Returns:
    [B, H, W, 1] float32 in [0, 1].
  """
  return jnp.max(landmark_heatmaps(landmarks, size, sigma), axis=-1, keepdims=True)


def prior_input(images: jax.Array, landmarks: jax.Array, mask: jax.Array, *,
                landmark_channels: str = "heatmaps", sigma: float = 3.0) -> jax.Array:
  """The encoder input: RGB + landmark prior + face mask, concatenated on channels.

  Args:
    images: [B, H, W, 3] RGB in [0, 1].
    landmarks: [B, 68, 2] pixels (x right, y down, pixel centres at +0.5).
    mask: [B, H, W] or [B, H, W, 1] face mask in [0, 1] (1 = face).
    landmark_channels: "heatmaps" (68 channels) or "map" (1 channel).
    sigma: heatmap Gaussian standard deviation, pixels.
  Returns:
    [B, H, W, 3 + K] float32, K = PRIOR_CHANNELS[landmark_channels] (69 or 2).
  """
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"images must be [B, H, W, 3]; got {images.shape}")
  size = images.shape[1:3]
  if mask.ndim == 3:
    mask = mask[..., None]
  if mask.shape != images.shape[:3] + (1,):
    raise ValueError(f"mask must be [B, H, W] matching images {images.shape}; got {mask.shape}")
  if landmark_channels == "heatmaps":
    prior = landmark_heatmaps(landmarks, size, sigma)
  elif landmark_channels == "map":
    prior = landmark_map(landmarks, size, sigma)
  else:
    raise ValueError(f"landmark_channels must be one of {sorted(PRIOR_CHANNELS)}; "
                     f"got {landmark_channels!r}")
  return jnp.concatenate([images.astype(jnp.float32), prior, mask.astype(jnp.float32)], -1)


LANDMARK_VECTOR_SIZE = 68 * 2 + 3


def landmark_vector(landmarks: jax.Array, width: int) -> jax.Array:
  """[B, 139] landmark coordinates as numbers, for the regressor (`landmark_vector=True`).

  Heatmaps quantise landmarks to the pixel grid; identity shows in sub-pixel landmark
  geometry, so the encoder can also take the coordinates themselves: the 68 points
  centred on their mean and divided by their RMS spread (136 numbers: pose, expression,
  identity), then the mean (2) and log spread (1) in units of the crop width (position
  and size: the camera).

  Args:
    landmarks: [B, 68, 2] pixels. width: the crop's width W, pixels.
  """
  centre = jnp.mean(landmarks, axis=1, keepdims=True)
  offsets = landmarks - centre
  spread = jnp.sqrt(jnp.mean(jnp.sum(offsets**2, -1), -1))[:, None, None] + 1e-6
  shape = (offsets / spread).reshape(landmarks.shape[0], -1)
  return jnp.concatenate([shape, centre[:, 0] / width - 0.5,
                          jnp.log(spread[:, 0, :1] / width)], -1).astype(jnp.float32)


class RunningWhitening(nn.Module):
  """Decorrelates a feature vector with running estimates of its mean and covariance.

  Landmark coordinates vary mostly with pose; identity lives in low-variance directions
  that gradient descent reaches slowly unless the input is whitened (a linear least-squares
  fit of shape from the landmark vector beats an MLP trained for thousands of steps on the
  raw vector, and the same MLP on the whitened vector beats both). A batch of 32 cannot
  estimate a 139 x 139 covariance, so training uses the running estimates too (updated
  first with the batch's moments, averaged over `axis_name` devices), as exponential
  moving averages with bias correction; no gradient flows through them. The transform is
  ZCA, (x - mean) · C^(-1/2), with C regularised by `epsilon` x its mean eigenvalue.

  Collections: "batch_stats" {"mean" [D], "second" [D, D] (EMA of x xᵀ), "weight" []
  (1 - momentum^steps, the bias correction)}.
  """
  momentum: float = 0.99
  epsilon: float = 1e-3
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """[B, D] -> [B, D] whitened (float32)."""
    x = x.astype(jnp.float32)
    d = x.shape[-1]
    mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((d,), jnp.float32))
    second = self.variable("batch_stats", "second", lambda: jnp.zeros((d, d), jnp.float32))
    weight = self.variable("batch_stats", "weight", lambda: jnp.zeros((), jnp.float32))
    if train and not self.is_initializing():
      batch_mean = jnp.mean(x, 0)
      batch_second = jnp.einsum("bi,bj->ij", x, x) / x.shape[0]
      if self.axis_name is not None:
        batch_mean, batch_second = jax.lax.pmean((batch_mean, batch_second), self.axis_name)
      m = self.momentum
      mean.value = m * mean.value + (1 - m) * jax.lax.stop_gradient(batch_mean)
      second.value = m * second.value + (1 - m) * jax.lax.stop_gradient(batch_second)
      weight.value = m * weight.value + (1 - m)
    w = jnp.maximum(weight.value, 1e-12)
    mu = mean.value / w
    covariance = second.value / w - jnp.outer(mu, mu)
    ridge = self.epsilon * jnp.maximum(jnp.trace(covariance) / d, 1e-12)
    values, vectors = jnp.linalg.eigh(covariance + ridge * jnp.eye(d))
    inverse_sqrt = (vectors / jnp.sqrt(jnp.maximum(values, ridge))) @ vectors.T
    # Before any statistics exist (init, or inference on an untrained net): identity.
    return jnp.where(weight.value > 0, (x - mu) @ inverse_sqrt, x)


def _upsample_to(x: jax.Array, shape: Sequence[int]) -> jax.Array:
  """Nearest-neighbour upsampling of [B, h, w, C] to [B, H, W, C] (×2 repeats if exact)."""
  b, h, w, c = x.shape
  height, width = shape
  if (height, width) == (2 * h, 2 * w):
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
  return jax.image.resize(x, (b, height, width, c), method="nearest")


class MLFLGAEncoder(nn.Module):
  """MLFL-GA coarse encoder E_c: prior-augmented image -> FLAME/albedo/camera/light codes.

  Attributes:
    num_shape, num_expression, num_albedo: code sizes (DECA/FLAME: 100, 50, 50).
    prior_channels: K, the input's channels beyond RGB (69: heatmaps + mask; 2: map + mask).
    predict_jaw: regress `jaw_pose` (FLAME's jaw, axis-angle).
    backbone: "resnet50" (the paper's), "resnet18" or "tiny" (`resnet.BACKBONES`).
    norm: "batch" or "group", for the backbone and the attention modules.
    axis_name: data-parallel axis for cross-device batch norm ("data" under
      shard_map/pmap when training; None otherwise).
    rga_stages: 1-based stages followed by RGA (() for none).
    rga_spatial, rga_channel: use RGA-S / RGA-C there.
    rga_channel_ratio, rga_spatial_ratio, rga_down_ratio: RGA reductions (see `attention`).
    fpn_width: channels of the lateral and output convs.
    hidden: width of the regressor's hidden layer.
    head_init_scale: variance scale of the heads' initialisation (small: codes ≈ 0).
    camera_scale_init: orthographic scale s at initialisation, normalised image units
      per mm (0.01: a ~200 mm wide head spans the crop).
    light_init: uniform irradiance of the initial SH light.
    landmark_vector: also feed the regressor `landmark_vector(landmarks)`, whitened by
      `RunningWhitening` (a jaxface extension; the call then needs `landmarks`).
    dtype: computation dtype; outputs are float32.
  """
  num_shape: int = 100
  num_expression: int = 50
  num_albedo: int = 50
  prior_channels: int = PRIOR_CHANNELS["heatmaps"]
  predict_jaw: bool = True
  backbone: str = "resnet50"
  norm: str = "batch"
  axis_name: str | None = None
  rga_stages: Sequence[int] = (1, 2, 3, 4)
  rga_spatial: bool = True
  rga_channel: bool = True
  rga_channel_ratio: int = attention.DEFAULT_RATIO
  rga_spatial_ratio: int = attention.DEFAULT_RATIO
  rga_down_ratio: int = attention.DEFAULT_RATIO
  fpn_width: int = 256
  hidden: int = 1024
  head_init_scale: float = 1e-4
  camera_scale_init: float = 0.01
  light_init: float = 1.0
  landmark_vector: bool = False
  dtype: Any = None

  def setup(self):
    self.resnet = resnet.make_backbone(self.backbone, norm=self.norm, axis_name=self.axis_name,
                                       dtype=self.dtype)
    num_stages = len(self.resnet.stage_sizes)
    if any(s not in range(1, num_stages + 1) for s in self.rga_stages):
      raise ValueError(f"rga_stages must be in 1..{num_stages}; got {self.rga_stages}")
    self.rga = {str(s): attention.RGA(
        spatial=self.rga_spatial, channel=self.rga_channel,
        channel_ratio=self.rga_channel_ratio, spatial_ratio=self.rga_spatial_ratio,
        down_ratio=self.rga_down_ratio, norm=self.norm, axis_name=self.axis_name,
        dtype=self.dtype) for s in self.rga_stages}
    conv = lambda k: nn.Conv(self.fpn_width, (k, k), padding=((k // 2,) * 2,) * 2,
                             kernel_init=resnet.conv_init, dtype=self.dtype)
    self.lateral = [conv(1) for _ in range(num_stages)]
    self.smooth = [conv(3) for _ in range(num_stages)]
    self.fc = nn.Dense(self.hidden, dtype=self.dtype)
    init = nn.initializers.variance_scaling(self.head_init_scale, "fan_in", "truncated_normal")
    dense = lambda n, bias_init=nn.initializers.zeros: nn.Dense(
        n, kernel_init=init, bias_init=bias_init, dtype=self.dtype)

    def light_bias(key, shape, dtype=jnp.float32):
      del key
      dc = self.light_init * SH_DC_FOR_UNIT_IRRADIANCE
      return jnp.zeros((9, 3), dtype).at[0].set(dc).reshape(shape)

    self.heads = {"shape": dense(self.num_shape), "expression": dense(self.num_expression),
                  "albedo": dense(self.num_albedo), "pose": dense(3), "camera": dense(3),
                  "light": dense(27, light_bias)}
    if self.predict_jaw:
      self.jaw_head = dense(3)
    if self.landmark_vector:
      self.whiten_landmarks = RunningWhitening(axis_name=self.axis_name)

  def __call__(self, x: jax.Array, *, train: bool, landmarks: jax.Array | None = None) -> dict:
    """Encodes a batch of prior-augmented crops.

    Args:
      x: [B, H, W, 3 + prior_channels] from `prior_input` (the paper: 224x224; the RGA
        modules are tied to the size they were initialised at).
      train: batch statistics and "batch_stats" updates (norm="batch").
      landmarks: [B, 68, 2] pixels; required (and only used) with `landmark_vector`.
    Returns:
      float32 dict: "shape" [B, num_shape], "expression" [B, num_expression], "albedo"
      [B, num_albedo] (coefficients, ~N(0, 1) under the model); "pose" [B, 3] Euler
      radians (pitch, yaw, roll); "jaw_pose" [B, 3] axis-angle radians (predict_jaw);
      "camera" [B, 3] (s, tx, ty): s normalised image units per mm (> 0), t normalised
      image units; "light" [B, 9, 3] SH coefficients; "features" [B, 4·fpn_width
      (+ 139 with landmark_vector)] the pooled pyramid (+ the landmark vector).
    """
    if x.ndim != 4 or x.shape[-1] != 3 + self.prior_channels:
      raise ValueError(f"input must be [B, H, W, 3 + {self.prior_channels}] (RGB + "
                       f"priors, see prior_input); got {x.shape}")
    if self.landmark_vector and (landmarks is None or landmarks.shape != (x.shape[0], 68, 2)):
      raise ValueError("landmark_vector=True needs landmarks [B, 68, 2]; got "
                       f"{None if landmarks is None else landmarks.shape}")
    x = self.resnet.stem(x, train=train)
    levels = []
    for i, stage in enumerate(self.resnet.stages):
      x = stage(x, train=train)
      if str(i + 1) in self.rga:
        x = self.rga[str(i + 1)](x, train=train)
      levels.append(x)
    # FPN top-down pathway.
    fused = [None] * len(levels)
    top = None
    for i in reversed(range(len(levels))):
      lateral = self.lateral[i](levels[i])
      top = lateral if top is None else lateral + _upsample_to(top, lateral.shape[1:3])
      fused[i] = self.smooth[i](top)
    pooled = [jnp.mean(p, axis=(1, 2)) for p in fused]
    if self.landmark_vector:
      vector = self.whiten_landmarks(landmark_vector(landmarks, x.shape[2]), train=train)
      pooled.append(vector.astype(pooled[0].dtype))
    return self.regress(jnp.concatenate(pooled, -1))

  def regress(self, features: jax.Array) -> dict:
    """The regressor alone: pooled pyramid features -> codes.

    Args:
      features: [B, 4·fpn_width] concatenated global averages of the fused levels
        (+ the landmark vector).
    Returns:
      The output dict of `__call__` ("features" is the input).
    """
    h = nn.relu(self.fc(features))
    raw = {name: head(h).astype(jnp.float32) for name, head in self.heads.items()}
    camera = raw["camera"]
    out = {
        "shape": raw["shape"], "expression": raw["expression"], "albedo": raw["albedo"],
        "pose": raw["pose"],
        "camera": jnp.concatenate(
            [self.camera_scale_init * jnp.exp(camera[:, :1]), camera[:, 1:]], -1),
        "light": raw["light"].reshape(-1, 9, 3),
        "features": features.astype(jnp.float32),
    }
    if self.predict_jaw:
      out["jaw_pose"] = self.jaw_head(h).astype(jnp.float32)
    return out


def tiny_mlfl_ga(**kw) -> MLFLGAEncoder:
  """A tiny encoder for tests and CPU smoke runs: tiny backbone, narrow FPN and regressor."""
  return MLFLGAEncoder(**{"backbone": "tiny", "fpn_width": 16, "hidden": 32, "num_shape": 10,
                          "num_expression": 6, "num_albedo": 5, **kw})
