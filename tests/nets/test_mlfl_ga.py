"""MLFL-GA encoder: landmark priors, RGA-S / RGA-C attention, FPN and heads."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxface import nets, render
from jaxface.nets import attention
from tests.nets.test_resnet import (
  KEY,
  abstract_init,
  apply,
  count,
  images,
  init,
  random_variables,
)

# ------------------------------------------------------------------------------------
# Priors.


def test_heatmap_peaks_at_the_landmark_pixel():
  landmarks = np.zeros((2, 68, 2), np.float32)
  landmarks[0, 0] = (10.5, 20.5)   # centre of pixel row 20, column 10
  landmarks[0, 1] = (3.2, 7.9)     # inside pixel row 7, column 3
  landmarks[1, 5] = (31.9, 0.1)    # inside the top-right pixel
  heat = nets.landmark_heatmaps(jnp.asarray(landmarks), (24, 32), sigma=2.0)
  assert heat.shape == (2, 24, 32, 68) and heat.dtype == jnp.float32
  assert float(heat.min()) >= 0.0 and float(heat.max()) <= 1.0
  peak = lambda b, k: np.unravel_index(np.argmax(heat[b, ..., k]), (24, 32))
  assert peak(0, 0) == (20, 10) and peak(0, 1) == (7, 3) and peak(1, 5) == (0, 31)
  assert float(heat[0, 20, 10, 0]) == pytest.approx(1.0)
  assert float(heat[0, 20, 11, 0]) == pytest.approx(math.exp(-1 / 8), rel=1e-5)  # 1 px, σ=2
  single = nets.landmark_map(jnp.asarray(landmarks), (24, 32), sigma=2.0)
  assert single.shape == (2, 24, 32, 1)
  np.testing.assert_allclose(single[..., 0], heat.max(-1))


@pytest.mark.parametrize("mode, channels", [("heatmaps", 72), ("map", 5)])
def test_prior_input_layout(mode, channels):
  x = images(2, size=16)
  landmarks = jnp.full((2, 68, 2), 8.0)
  mask = jnp.zeros((2, 16, 16)).at[:, 4:12, 4:12].set(1.0)
  prior = nets.prior_input(x, landmarks, mask, landmark_channels=mode)
  assert prior.shape == (2, 16, 16, channels) == (2, 16, 16, 3 + nets.PRIOR_CHANNELS[mode])
  np.testing.assert_array_equal(prior[..., :3], x)
  np.testing.assert_array_equal(prior[..., -1], mask)
  assert float(prior[0, 7, 7, 3]) == pytest.approx(math.exp(-0.5 / 18))  # d² = 0.5, σ = 3
  with pytest.raises(ValueError, match="landmark_channels"):
    nets.prior_input(x, landmarks, mask, landmark_channels="points")
  with pytest.raises(ValueError, match="mask"):
    nets.prior_input(x, landmarks, mask[:, :8])


# ------------------------------------------------------------------------------------
# Attention.


def rga_s_params(c, n, r=8):
  """Hand count of RGA-S (attention module docstring): θ, φ, ψ; ω; W."""
  ci, ni = max(1, c // r), max(1, n // r)
  k = 1 + ni
  kd = max(1, k // r)
  return 3 * (c * ci + 2 * ci) + (2 * n * ni + 2 * ni) + (k * kd + 2 * kd + kd + 2)


def rga_c_params(c, n, r=8):
  """Hand count of RGA-C: θ, φ, ψ over the N values of a channel; ω over 2C; W."""
  ci, ni = max(1, c // r), max(1, n // r)
  k = 1 + ci
  kd = max(1, k // r)
  return 3 * (n * ni + 2 * ni) + (2 * c * ci + 2 * ci) + (k * kd + 2 * kd + kd + 2)


@pytest.mark.parametrize("module, shape, expected", [
    # C=32, 8x8: θ, φ, ψ 3·(32·4 + 8) = 408; ω 2·64·8 + 16 = 1040; W 9·1 + 2 + 1 + 2 = 14.
    (attention.RGASpatial(), (1, 8, 8, 32), 1462),
    # θ, φ, ψ 3·(64·8 + 16) = 1584; ω 2·32·4 + 8 = 264; W 5·1 + 2 + 1 + 2 = 10.
    (attention.RGAChannel(), (1, 8, 8, 32), 1858),
    # ResNet-50 stage 1 at 224 (C=256, N=3136): 24,768 + 2,459,408 + 19,406.
    (attention.RGASpatial(), (1, 56, 56, 256), 2_503_582),
    # 3,690,288 + 16,448 + 146.
    (attention.RGAChannel(), (1, 56, 56, 256), 3_706_882),
    (attention.RGA(), (1, 7, 7, 2048), rga_s_params(2048, 49) + rga_c_params(2048, 49)),
])
def test_rga_parameter_counts(module, shape, expected):
  variables = abstract_init(module, jnp.zeros(shape), train=False)
  assert count(variables["params"]) == expected
  if isinstance(module, attention.RGASpatial):
    assert expected == rga_s_params(shape[3], shape[1] * shape[2])
  elif isinstance(module, attention.RGAChannel):
    assert expected == rga_c_params(shape[3], shape[1] * shape[2])


def test_relation_embed_is_a_conv_on_outgoing_and_incoming_relations():
  rng = np.random.default_rng(0)
  relations = rng.standard_normal((2, 5, 5)).astype(np.float32)
  kernel = rng.standard_normal((10, 3)).astype(np.float32)
  got = nets.relation_embed(jnp.asarray(relations), jnp.asarray(kernel))
  for b in range(2):
    for i in range(5):
      r_i = np.concatenate([relations[b, i, :], relations[b, :, i]])  # eq. 7
      np.testing.assert_allclose(got[b, i], r_i @ kernel, rtol=1e-5, atol=1e-5)


def test_attention_reweights_positions_and_channels_globally():
  x = 0.5 + images(2, size=6, channels=32)  # positive: the weights are out / x
  x_far = x.at[:, 0, 0, :].mul(3.0)         # change one corner position only
  both = jnp.concatenate([x, x_far])
  # down_ratio=1: W's hidden layer as wide as its input, so that no random draw leaves
  # it all below the relu (at these tiny sizes the default would give it 1 channel).
  for module, varies in ((attention.RGASpatial(down_ratio=1), "positions"),
                         (attention.RGAChannel(down_ratio=1), "channels")):
    variables = random_variables(module, x, train=False)
    out = apply(module, variables, both, train=False)
    weights = np.asarray(out / both)
    assert weights.shape == both.shape and (weights > 0).all() and (weights < 1).all()
    if varies == "positions":  # one weight per position, shared by its channels
      np.testing.assert_allclose(weights, weights[..., :1].repeat(32, -1), rtol=1e-4)
      assert np.ptp(weights[0, ..., 0]) > 1e-3
      # Global: the corner's change moves the weight of the opposite corner.
      assert abs(weights[0, 5, 5, 0] - weights[2, 5, 5, 0]) > 1e-5
    else:  # one weight per channel, shared by all positions
      np.testing.assert_allclose(weights, weights[:, :1, :1].repeat(6, 1).repeat(6, 2),
                                 rtol=1e-4)
      assert np.ptp(weights[0, 0, 0]) > 1e-3
      assert np.abs(weights[0, 0, 0] - weights[2, 0, 0]).max() > 1e-5


# ------------------------------------------------------------------------------------
# Encoder.


def _tiny_input(batch=2, size=32, seed=0):
  return images(batch, size=size, channels=3 + 69, seed=seed)


def test_encoder_outputs_and_batch_stats():
  model = nets.tiny_mlfl_ga()
  x = _tiny_input()
  variables = random_variables(model, x, train=False)
  assert {f"rga_{s}" for s in (1, 2, 3, 4)} <= set(variables["params"])
  assert variables["params"]["resnet"]["stem"]["conv"]["kernel"].shape == (7, 7, 72, 8)
  out, updates = apply(model, variables, x, train=True, mutable=["batch_stats"])
  assert {k: v.shape for k, v in out.items()} == {
      "shape": (2, 10), "expression": (2, 6), "albedo": (2, 5), "pose": (2, 3),
      "jaw_pose": (2, 3), "camera": (2, 3), "light": (2, 9, 3), "features": (2, 64)}
  assert all(v.dtype == jnp.float32 for v in out.values())
  assert np.all(np.isfinite(np.concatenate([v.reshape(2, -1) for v in out.values()], 1)))
  assert (out["camera"][:, 0] > 0).all()
  assert np.abs(out["shape"][0] - out["shape"][1]).max() > 1e-4
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), variables["batch_stats"],
                         updates["batch_stats"])
  assert all(jax.tree.leaves(changed["rga_1"])) and all(jax.tree.leaves(changed["resnet"]))


def test_encoder_heads_start_at_the_mean_face_and_ambient_light():
  model = nets.tiny_mlfl_ga(camera_scale_init=0.02, light_init=0.8)
  features = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (3, 64)), jnp.float32)
  params = init(model, features, method="regress")
  assert set(params["params"]) == {"fc", "heads_shape", "heads_expression", "heads_albedo",
                                   "heads_pose", "heads_camera", "heads_light", "jaw_head"}
  out = model.apply(params, features, method="regress")
  for name in ("shape", "expression", "albedo", "pose", "jaw_pose"):
    assert float(jnp.abs(out[name]).max()) < 0.05, name
  np.testing.assert_allclose(out["camera"][:, 0], 0.02, rtol=0.05)
  np.testing.assert_allclose(out["camera"][:, 1:], 0.0, atol=0.05)
  ambient = np.broadcast_to(render.ambient_sh(0.8), (3, 9, 3))
  np.testing.assert_allclose(out["light"], ambient, atol=0.05)
  assert not np.allclose(out["shape"][0], out["shape"][1], atol=0)


def test_group_norm_encoder_has_no_batch_stats():
  # 40 px: levels 10, 5, 3, 2 px, so the FPN's upsampling is not an exact doubling.
  x = _tiny_input(size=40)
  model = nets.tiny_mlfl_ga(norm="group", rga_stages=(3, 4))
  variables = abstract_init(model, x, train=True)
  assert set(variables) == {"params"}
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=True), variables, x)
  assert out["light"].shape == (2, 9, 3) and out["features"].shape == (2, 64)


def test_rga_stages_select_the_attention():
  x = _tiny_input()
  full = abstract_init(nets.tiny_mlfl_ga(), x, train=False)["params"]
  some = abstract_init(nets.tiny_mlfl_ga(rga_stages=(3, 4), rga_channel=False), x,
                       train=False)["params"]
  none = abstract_init(nets.tiny_mlfl_ga(rga_stages=()), x, train=False)["params"]
  assert not any(k.startswith("rga") for k in none)
  assert {k for k in some if k.startswith("rga")} == {"rga_3", "rga_4"}
  assert set(some["rga_3"]) == {"spatial"}
  # Tiny backbone at 32 px: stages (C, H·W) = (8, 64), (16, 16), (32, 4), (64, 1).
  sizes = ((8, 64), (16, 16), (32, 4), (64, 1))
  assert count(full) - count(none) == sum(rga_s_params(c, n) + rga_c_params(c, n)
                                          for c, n in sizes)
  assert count(some) - count(none) == sum(rga_s_params(c, n) for c, n in sizes[2:])


def test_encoder_rejects_bad_inputs():
  with pytest.raises(ValueError, match="3 \\+ 69"):
    abstract_init(nets.tiny_mlfl_ga(), images(1, channels=5), train=False)
  with pytest.raises(ValueError, match="rga_stages"):
    abstract_init(nets.tiny_mlfl_ga(rga_stages=(5,)), _tiny_input(), train=False)
  model = nets.tiny_mlfl_ga(prior_channels=nets.PRIOR_CHANNELS["map"])
  variables = abstract_init(model, images(1, channels=5), train=False)
  assert variables["params"]["resnet"]["stem"]["conv"]["kernel"].shape == (7, 7, 5, 8)


def test_full_size_parameter_count():
  model = nets.MLFLGAEncoder()
  variables = abstract_init(model, jnp.zeros((1, 224, 224, 72)), train=False)
  params = variables["params"]
  backbone = 23_508_032 + 7 * 7 * 69 * 64
  rga = sum(rga_s_params(c, n) + rga_c_params(c, n)
            for c, n in ((256, 56 * 56), (512, 28 * 28), (1024, 14 * 14), (2048, 7 * 7)))
  lateral = sum((c + 1) * 256 for c in (256, 512, 1024, 2048))
  smooth = 4 * (9 * 256 * 256 + 256)
  regressor = (1024 + 1) * 1024 + (1024 + 1) * (100 + 50 + 50 + 3 + 3 + 27 + 3)
  assert count(params["resnet"]) == backbone == 23_724_416
  assert count({k: v for k, v in params.items() if k.startswith("rga")}) == rga == 10_077_168
  assert count(params) == backbone + rga + lateral + smooth + regressor == 38_437_468


def test_landmark_vector_keeps_geometry_apart_from_position_and_size():
  rng = np.random.default_rng(0)
  landmarks = rng.uniform(20, 40, (1, 68, 2)).astype(np.float32)
  moved = landmarks * 1.5 + np.array([7.0, -3.0], np.float32)
  a, b = (np.asarray(nets.landmark_vector(jnp.asarray(x), 64)) for x in (landmarks, moved))
  assert a.shape == (1, nets.LANDMARK_VECTOR_SIZE)
  np.testing.assert_allclose(a[:, :136], b[:, :136], atol=1e-5)  # shape part: invariant
  np.testing.assert_allclose(b[:, 136:138] - a[:, 136:138],
                             (landmarks.mean(1) * 0.5 + [7.0, -3.0]) / 64, atol=1e-5)
  np.testing.assert_allclose(b[:, 138] - a[:, 138], np.log(1.5), atol=1e-5)
  np.testing.assert_allclose(np.sqrt(np.mean(np.sum(a[:, :136].reshape(68, 2) ** 2, -1))), 1.0,
                             rtol=1e-5)


def test_landmark_vector_feeds_the_regressor():
  x = _tiny_input()
  plain = abstract_init(nets.tiny_mlfl_ga(), x, train=False)["params"]
  with_vector = nets.tiny_mlfl_ga(landmark_vector=True)
  landmarks = jnp.full((x.shape[0], 68, 2), 16.0) + jnp.arange(68.0)[None, :, None] / 10
  params = abstract_init(with_vector, x, train=False, landmarks=landmarks)["params"]
  hidden = params["fc"]["kernel"].shape[1]
  assert count(params) - count(plain) == nets.LANDMARK_VECTOR_SIZE * hidden
  with pytest.raises(ValueError, match="needs landmarks"):
    abstract_init(with_vector, x, train=False)
  variables = random_variables(with_vector, x, train=False, landmarks=landmarks)
  a = apply(with_vector, variables, x, train=False, landmarks=landmarks)["shape"]
  b = apply(with_vector, variables, x, train=False, landmarks=landmarks * 1.1 + 3)["shape"]
  assert np.abs(np.asarray(a) - np.asarray(b)).max() > 1e-6  # the coordinates matter


def test_running_whitening_decorrelates_after_training_batches():
  rng = np.random.default_rng(0)
  mixing = rng.normal(size=(5, 5)) * np.array([3.0, 1.0, 0.5, 1.0, 2.0])[:, None]
  data = (rng.normal(size=(4000, 5)) @ mixing + 3.0).astype(np.float32)
  layer = nets.RunningWhitening(momentum=0.97)
  variables = layer.init(KEY, jnp.asarray(data[:2]), train=True)
  assert float(variables["batch_stats"]["weight"]) == 0.0  # init leaves no statistics
  np.testing.assert_array_equal(layer.apply(variables, data[:3], train=False), data[:3])
  step = jax.jit(lambda v, x: layer.apply(v, x, train=True, mutable=["batch_stats"]))
  for i in range(100):
    _, variables = step(variables, data[i * 40:(i + 1) * 40])
  out = np.asarray(layer.apply(variables, data, train=False))
  np.testing.assert_allclose(np.cov(out.T), np.eye(5), atol=0.15)
  np.testing.assert_allclose(out.mean(0), 0.0, atol=0.15)
