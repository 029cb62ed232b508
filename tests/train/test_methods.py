"""GAN-3DMM and MLFL-GA train steps: one data-parallel step on 8 simulated devices.

The steps run on a decimated BFM-sim front model (the landmark vertices plus a random
subset, re-triangulated in the image plane) so that a step compiles in seconds; the
layouts (Ks, Ke, Ka) are the real model's.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.spatial

from configs import gan3dmm as gan3dmm_config
from configs import mlfl_ga as mlfl_ga_config
from jaxface import morphable, render
from jaxface.train import gan3dmm, methods, mlfl_ga, parallel

KEY = jax.random.key(0, impl="rbg")  # fast init compiles (as the nets tests)
SIZE = 32
BATCH = 8


@functools.cache
def small_model() -> morphable.MorphableModel:
  """The front model cut down to ~300 vertices, same bases sizes and landmarks."""
  full = morphable.default_model("front")
  rng = np.random.default_rng(0)
  landmarks = np.unique(np.asarray(full.landmark_vertices))
  keep = np.unique(np.concatenate([landmarks, rng.choice(full.num_vertices, 300, False)]))
  mean = np.asarray(full.mean)[keep]
  triangles = scipy.spatial.Delaunay(mean[:, :2]).simplices.astype(np.int32)
  # Counter-clockwise seen from +z (the camera side), as the model's triangles.
  a, b, c = (mean[triangles[:, i], :2] for i in range(3))
  cross = (b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]
  triangles[cross < 0] = triangles[cross < 0][:, ::-1]
  remap = np.full(full.num_vertices, -1, np.int32)
  remap[keep] = np.arange(keep.size)
  take = lambda x: jnp.asarray(np.asarray(x)[keep])
  return full.replace(
      mean=take(full.mean), shape_basis=take(full.shape_basis),
      expression_basis=take(full.expression_basis), albedo_mean=take(full.albedo_mean),
      albedo_basis=take(full.albedo_basis), uv=take(full.uv), region=take(full.region),
      triangles=jnp.asarray(triangles),
      landmark_vertices=jnp.asarray(remap[np.asarray(full.landmark_vertices)]))


def smoke(config_module):
  config = config_module.get_config("smoke")
  config.input.image_size = SIZE
  config.render.on_overflow = "ignore"
  config.render.edge_antialias = False  # compiles much faster; same step code otherwise
  return config


def random_batch(frames: int, seed: int = 0) -> dict:
  """A DESIGN.md §2 batch (global batch 8) with ground truth of the front model's sizes."""
  rng = np.random.default_rng(seed)
  model = small_model()
  mask = np.zeros((BATCH, frames, SIZE, SIZE), np.float32)
  mask[..., 6:26, 8:24] = 1.0
  return {
      "image": rng.uniform(size=(BATCH, frames, SIZE, SIZE, 3)).astype(np.float32),
      "landmarks": rng.uniform(0.3 * SIZE, 0.7 * SIZE,
                               (BATCH, frames, 68, 2)).astype(np.float32),
      "mask": mask,
      "identity": np.arange(BATCH, dtype=np.int32),
      "shape": rng.normal(size=(BATCH, model.num_shape)).astype(np.float32),
      "expression": rng.normal(size=(BATCH, frames, model.num_expression)).astype(np.float32),
      "albedo": rng.normal(size=(BATCH, model.num_albedo)).astype(np.float32),
  }


def one_step(module, config, frames):
  """(state before, state after, metrics) of one shard_map step on 8 devices."""
  model = small_model()
  step_fn = module.make_train_step(config, model, render.make_topology(model.triangles))
  mesh = parallel.make_mesh()
  state = jax.jit(lambda k: module.init_state(config, k))(KEY)
  step = parallel.parallel_step(step_fn, mesh=mesh, donate=False)
  batch = parallel.shard_batch(random_batch(frames), parallelism="shard_map", mesh=mesh)
  new, metrics = step(parallel.replicate_state(state, mesh), batch, jax.random.key(1))
  return state, new, jax.device_get(metrics)


def changed(before, after) -> bool:
  return any(bool(jnp.any(a != b)) for a, b in zip(jax.tree.leaves(before),
                                                   jax.tree.leaves(after)))


def check_metrics(metrics, config, networks):
  assert all(np.isfinite(v) for v in metrics.values()), metrics
  enabled = {name for name, w in config.loss_weights.items() if w}
  assert {k[len("loss/"):] for k in metrics if k.startswith("loss/")} >= enabled | {"total"}
  for name in networks:
    assert f"grad_norm/{name}" in metrics and f"param_norm/{name}" in metrics
    assert metrics[f"grad_norm/{name}"] > 0


def test_gan3dmm_step_updates_both_networks():
  config = smoke(gan3dmm_config)
  config.loss_weights.prior = 0.0  # a zero weight removes the term
  before, after, metrics = one_step(gan3dmm, config, frames=1)
  check_metrics(metrics, config, ("generator", "discriminator"))
  assert "loss/prior" not in metrics and "loss/identity" not in metrics
  assert {"loss/gan", "loss/skin", "loss/landmark", "loss/supervised",
          "loss/discriminator"} <= set(metrics)
  assert 0 < metrics["gan/real_prob"] < 1 and 0 < metrics["gan/fake_prob"] < 1
  for name in ("generator", "discriminator"):
    assert changed(before.params[name], after.params[name]), name
  assert changed(before.batch_stats["generator"], after.batch_stats["generator"])
  assert int(after.step) == 1


def test_mlfl_ga_step_updates_the_encoder():
  config = smoke(mlfl_ga_config)
  config.loss_weights.ssim = 0.0  # a zero weight removes the term
  before, after, metrics = one_step(mlfl_ga, config, frames=2)
  check_metrics(metrics, config, ("encoder",))
  assert "loss/ssim" not in metrics and "loss/identity" not in metrics
  assert {"loss/photometric", "loss/mask", "loss/landmark", "loss/eye_closure",
          "loss/shape_consistency", "loss/shape_reg", "loss/supervised"} <= set(metrics)
  assert changed(before.params["encoder"], after.params["encoder"])
  assert changed(before.batch_stats["encoder"], after.batch_stats["encoder"])


@functools.cache
def mlfl_ga_after_one_step(parallelism: str, num_devices: int):
  """MLFL-GA's encoder params and batch stats after one step (global batch 8, T=2)."""
  config = smoke(mlfl_ga_config)
  model = small_model()
  mesh = parallel.make_mesh(num_devices)
  step = parallel.parallel_step(
      mlfl_ga.make_train_step(config, model, render.make_topology(model.triangles)),
      parallelism=parallelism, mesh=mesh)
  state = parallel.place_state(jax.jit(lambda k: mlfl_ga.init_state(config, k))(KEY),
                               parallelism=parallelism, mesh=mesh)
  batch = parallel.shard_batch(random_batch(2), parallelism=parallelism, mesh=mesh)
  state, _ = step(state, batch, jax.random.key(1))
  state = parallel.logical_state(state, parallelism=parallelism)
  return jax.device_get((state.params["encoder"], state.batch_stats["encoder"]))


def test_mlfl_ga_pmap_step_on_eight_devices_matches_one_device():
  # The MLFL-GA step is deterministic, so the method's real step (BatchNorm with
  # cross-device statistics, pmean'd gradients) must agree with one device. GAN-3DMM's
  # draws different prior samples per device by design; the toy (test_parallel.py)
  # covers both wrappers, this covers a method's step under the pmap one.
  reference = mlfl_ga_after_one_step("shard_map", 1)
  result = mlfl_ga_after_one_step("pmap", 8)
  for a, b in zip(jax.tree.leaves(result), jax.tree.leaves(reference)):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)


def test_roll_frames_swaps_identities_within_each_sample():
  x = jnp.arange(2 * 3 * 2).reshape(6, 2)  # B=2 samples x T=3 frames, codes of size 2
  rolled = mlfl_ga.roll_frames(x, 3)
  # Frame t of sample b gets frame (t + 1) % T of the same sample.
  expected = np.array([x[1], x[2], x[0], x[4], x[5], x[3]])
  np.testing.assert_array_equal(rolled, expected)
  np.testing.assert_array_equal(mlfl_ga.roll_frames(x, 3, shift=3), x)
  np.testing.assert_array_equal(mlfl_ga.roll_frames(x[:4], 2), x[jnp.array([1, 0, 3, 2])])


def test_to_blocks_maps_encoder_outputs_to_the_orthographic_layout():
  n = 2
  codes = {"shape": jnp.ones((n, 40)), "expression": jnp.ones((n, 10)),
           "albedo": jnp.ones((n, 60)), "pose": jnp.full((n, 3), 0.1),
           "camera": jnp.array([[0.01, 0.2, 0.3]] * n), "light": jnp.zeros((n, 9, 3))}
  blocks = mlfl_ga.to_blocks(codes)
  layout = mlfl_ga.layout(mlfl_ga_config.get_config("smoke"))
  assert set(blocks) == set(layout.names)
  np.testing.assert_allclose(blocks["scale"][:, 0], 0.01)
  np.testing.assert_allclose(blocks["translation"], [[0.2, 0.3]] * n)
  assert layout.camera == "orthographic"


def test_shape_consistency_needs_two_frames():
  config = smoke(mlfl_ga_config)
  config.input.frames = 1
  model = small_model()
  step_fn = mlfl_ga.make_train_step(config, model, render.make_topology(model.triangles))
  state = jax.eval_shape(lambda k: mlfl_ga.init_state(config, k), KEY)
  batch = jax.tree.map(jnp.asarray, random_batch(1))
  with pytest.raises(ValueError, match="frames >= 2"):
    jax.eval_shape(jax.vmap(step_fn, axis_name="data", in_axes=(None, 0, None)), state,
                   jax.tree.map(lambda x: x[None], batch), KEY)


@pytest.mark.parametrize("name", sorted(methods.METHODS))
@pytest.mark.parametrize("arg", [None, "smoke"])
def test_configs_build(name, arg):
  config = methods.config_module(name).get_config(arg)
  assert config.method == name
  for section in ("input", "model", "morphable", "render", "loss_weights", "loss", "train",
                  "eval"):
    assert section in config
  assert config.train.batch_size == config.input.batch_size
  for field in ("num_steps", "batch_size", "learning_rate", "log_every", "checkpoint_every",
                "keep_checkpoints", "image_every", "eval_every"):
    assert field in config.train
  method = methods.get(name)
  assert set(config.loss_weights) <= set(method.terms)
  if arg == "smoke":
    assert config.input.image_size <= 64 and config.loss_weights.identity == 0
  # The input section is exactly the pipeline's vocabulary (no unknown fields).
  assert set(config.input) <= {"data_dir", "batch_size", "frames", "image_size",
                               "shuffle_buffer", "seed", "augment", "augmentation",
                               "position_map", "ground_truth", "detail", "repeat", "prefetch"}


def test_cpu_learning_config_trains_without_the_renderer():
  config = methods.config_module("mlfl_ga").get_config("cpu")
  enabled = {name for name, w in config.loss_weights.items() if w}
  assert enabled == {"landmark", "supervised"}  # no term that renders
  assert config.model.landmark_vector and config.train.eval_every > 0
  assert config.train.batch_size == config.input.batch_size == 32
  with pytest.raises(ValueError, match="unknown config variant"):
    methods.config_module("mlfl_ga").get_config("gpu")


def test_learning_rate_schedules():
  config = methods.config_module("mlfl_ga").get_config("cpu")
  schedule = gan3dmm.learning_rate(config)
  assert float(schedule(0)) == pytest.approx(config.train.learning_rate)
  assert float(schedule(config.train.num_steps // 2)) == pytest.approx(
      config.train.learning_rate / 2, rel=1e-4)
  assert float(schedule(config.train.num_steps)) == pytest.approx(0.0, abs=1e-9)
  assert gan3dmm.learning_rate(methods.config_module("gan3dmm").get_config()) == 1e-4
  config.train.schedule = "step"
  with pytest.raises(ValueError, match="train.schedule"):
    gan3dmm.learning_rate(config)


def test_unknown_method_and_loss_weight_are_clear_errors():
  with pytest.raises(ValueError, match="unknown method"):
    methods.get("nope")
  config = smoke(gan3dmm_config)
  config.loss_weights.bogus = 1.0
  with pytest.raises(ValueError, match="bogus"):
    gan3dmm.make_train_step(config, small_model())


@pytest.mark.parametrize("name", sorted(methods.METHODS))
def test_predict_returns_the_layout_blocks(name):
  method = methods.get(name)
  config = smoke(methods.config_module(name))
  state = jax.eval_shape(lambda k: method.init_state(config, k), KEY)
  images = jax.ShapeDtypeStruct((2, SIZE, SIZE, 3), jnp.float32)
  landmarks = jax.ShapeDtypeStruct((2, 68, 2), jnp.float32)
  mask = jax.ShapeDtypeStruct((2, SIZE, SIZE), jnp.float32)
  blocks = jax.eval_shape(lambda s, i, l, m: method.predict(config, s, i, l, m), state, images,
                          landmarks, mask)
  layout = method.layout(config)
  assert {k: v.shape for k, v in blocks.items()} == {
      n: (2,) + shape for n, shape in layout.blocks}
