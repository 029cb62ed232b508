"""Data parallelism: 8 simulated devices agree with 1, shard_map agrees with pmap."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxface.errors import JaxfaceError
from jaxface.train import parallel
from jaxface.train import state as state_lib
from tests.train import toy

BATCH = 16


@functools.cache
def one_step(parallelism: str, num_devices: int, *, noise: float = 0.0, steps: int = 1):
  """The toy after `steps` steps on the first `num_devices` devices, plus metrics."""
  mesh = parallel.make_mesh(num_devices)
  step = parallel.parallel_step(toy.make_train_step(noise=noise), parallelism=parallelism,
                                mesh=mesh)
  state = parallel.place_state(toy.init_state(jax.random.key(0)), parallelism=parallelism,
                               mesh=mesh)
  for i in range(steps):
    batch = parallel.shard_batch(toy.make_batch(i, BATCH), parallelism=parallelism,
                                 mesh=mesh)
    state, metrics = step(state, batch, jax.random.fold_in(jax.random.key(7), i))
  state = parallel.logical_state(state, parallelism=parallelism)
  metrics = {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}
  return state, metrics


def assert_same_state(a, b, rtol=1e-5, atol=1e-6):
  flat_a, flat_b = toy.flat_params(a), toy.flat_params(b)
  assert flat_a.keys() == flat_b.keys()
  for name in flat_a:
    np.testing.assert_allclose(flat_a[name], flat_b[name], rtol=rtol, atol=atol, err_msg=name)


@pytest.fixture(scope="module")
def single_device():
  return one_step("shard_map", 1)


@pytest.mark.parametrize("parallelism", ["shard_map", "pmap"])
def test_eight_devices_match_one_device(parallelism, single_device):
  assert jax.device_count() == 8
  reference, ref_metrics = single_device
  state, metrics = one_step(parallelism, 8)
  # Same global batch: pmean'd gradients (SGD generator: scale matters) and
  # cross-device BatchNorm statistics equal the 1-device ones.
  assert_same_state(state, reference)
  assert int(state.step) == int(reference.step) == 1
  ref_mean = np.asarray(reference.batch_stats["generator"]["BatchNorm_0"]["mean"])
  assert np.abs(ref_mean).max() > 1e-3  # the statistics did move
  for name, value in ref_metrics.items():
    np.testing.assert_allclose(metrics[name], value, rtol=1e-5, err_msg=name)  # [8] for pmap


def test_shard_map_and_pmap_draw_the_same_per_device_noise():
  noisy_sm, metrics_sm = one_step("shard_map", 8, noise=0.5)
  noisy_pm, metrics_pm = one_step("pmap", 8, noise=0.5)
  assert_same_state(noisy_sm, noisy_pm)
  np.testing.assert_allclose(metrics_pm["loss/regression"], metrics_sm["loss/regression"],
                             rtol=1e-5)
  clean, _ = one_step("shard_map", 8)
  kernel = lambda s: np.asarray(s.params["generator"]["Dense_0"]["kernel"])
  assert np.abs(kernel(noisy_sm) - kernel(clean)).max() > 1e-3


def test_device_rng_differs_per_device_and_path():
  mesh = parallel.make_mesh(8)
  from jax.sharding import PartitionSpec as P  # pylint: disable=import-outside-toplevel
  draw = lambda x, rng: x + jax.random.uniform(parallel.device_rng(rng), (1,))
  zeros = np.zeros((8, 1), np.float32)
  sm = jax.jit(jax.shard_map(draw, mesh=mesh, in_specs=(P("data"), P()),
                             out_specs=P("data"), check_vma=False))(zeros, jax.random.key(3))
  pm = jax.pmap(draw, axis_name="data", in_axes=(0, None))(zeros, jax.random.key(3))
  assert len(np.unique(np.asarray(sm))) == 8
  np.testing.assert_array_equal(np.asarray(sm), np.asarray(pm))


def test_donation_consumes_the_placed_state_but_not_the_original():
  mesh = parallel.make_mesh(8)
  original = toy.init_state(jax.random.key(0))
  placed = parallel.place_state(original, parallelism="shard_map", mesh=mesh)
  step = parallel.parallel_step(toy.make_train_step(), mesh=mesh)
  step(placed, parallel.shard_batch(toy.make_batch(0, BATCH), parallelism="shard_map",
                                    mesh=mesh), jax.random.key(0))
  assert placed.params["generator"]["Dense_0"]["kernel"].is_deleted()
  assert not original.params["generator"]["Dense_0"]["kernel"].is_deleted()


def test_replicate_round_trip():
  tree = {"w": jnp.arange(6.0).reshape(2, 3), "key": jax.random.key(5)}
  stacked = parallel.replicate(tree, jax.devices())
  assert stacked["w"].shape == (8, 2, 3)
  assert len({s.device for s in stacked["w"].addressable_shards}) == 8
  back = parallel.unreplicate(stacked)
  np.testing.assert_array_equal(back["w"], tree["w"])
  np.testing.assert_array_equal(jax.random.key_data(back["key"]),
                                jax.random.key_data(tree["key"]))


def test_user_mistakes_are_one_line_errors():
  mesh = parallel.make_mesh(8)
  with pytest.raises(JaxfaceError, match="divisible by the 8 devices"):
    parallel.shard_batch({"x": np.zeros((12, 2))}, parallelism="shard_map", mesh=mesh)
  with pytest.raises(JaxfaceError, match="unknown parallelism 'pjit'"):
    parallel.parallel_step(toy.make_train_step(), parallelism="pjit")
  with pytest.raises(JaxfaceError, match="asked for 9 devices"):
    parallel.make_mesh(9)


def test_apply_gradients_touches_one_network_and_not_the_step():
  state = toy.init_state(jax.random.key(0))
  grads = jax.tree.map(jnp.ones_like, state.params["generator"])
  new = state_lib.apply_gradients(state, "generator", grads)
  # SGD(0.1, momentum 0.9), first step: params - 0.1 * grads.
  np.testing.assert_allclose(new.params["generator"]["Dense_1"]["bias"],
                             state.params["generator"]["Dense_1"]["bias"] - 0.1, rtol=1e-6)
  assert new.params["discriminator"] is state.params["discriminator"]
  assert new.opt_states["discriminator"] is state.opt_states["discriminator"]
  assert int(new.step) == 0
  norms = state_lib.grad_norms({"generator": grads})
  n_params = sum(x.size for x in jax.tree.leaves(grads))
  np.testing.assert_allclose(norms["grad_norm/generator"], np.sqrt(n_params), rtol=1e-6)
  assert float(state_lib.global_norm({})) == 0.0
  with pytest.raises(JaxfaceError, match="one optimiser per network"):
    state_lib.TrainState.create(params=state.params, tx={"generator": state.tx["generator"]},
                                rng=jax.random.PRNGKey(0))
  raw = state_lib.TrainState.create(params=state.params, tx=state.tx, rng=jax.random.PRNGKey(0))
  assert jax.dtypes.issubdtype(raw.rng.dtype, jax.dtypes.prng_key)
