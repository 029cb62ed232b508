"""Checkpoints: exact round trips, pruning, empty workdirs, the serving export."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxface.errors import JaxfaceError
from jaxface.train import checkpoints, parallel
from jaxface.train import state as state_lib
from tests.train import toy


@pytest.fixture(scope="module")
def trained():
  """A toy state after two updates of both networks: nothing left at its initial value."""
  state = toy.init_state(jax.random.key(4))
  for i in range(2):
    for name in state.params:
      grads = jax.tree.map(lambda p, i=i: jnp.cos(p * (i + 2.0)), state.params[name])
      state = state_lib.apply_gradients(state, name, grads)
  stats = jax.tree.map(lambda x: x + 0.25, state.batch_stats)
  return state.replace(step=jnp.int32(2), batch_stats=stats, rng=jax.random.key(99))


def assert_states_equal(a, b):
  fa, fb = toy.flat_params(a), toy.flat_params(b)
  assert fa.keys() == fb.keys()
  for name in fa:
    np.testing.assert_array_equal(fa[name], fb[name], err_msg=name)
  assert int(a.step) == int(b.step)
  np.testing.assert_array_equal(jax.random.key_data(a.rng), jax.random.key_data(b.rng))


def test_round_trip_restores_everything(tmp_path, trained):
  with checkpoints.CheckpointManager.open(tmp_path, save_every=1, keep=3) as ckpt:
    assert ckpt.save(trained)
  template = toy.init_state(jax.random.key(0))
  with checkpoints.CheckpointManager.open(tmp_path, save_every=1, keep=3) as ckpt:
    restored = ckpt.restore_latest(template)
  assert (tmp_path / "checkpoints" / "2").is_dir()
  assert_states_equal(restored, trained)
  assert restored.tx is template.tx  # transforms come from the template
  count = restored.opt_states["discriminator"][0].count
  assert int(count) == 2  # Adam's step count survived


def test_restore_from_an_abstract_template_onto_a_mesh(tmp_path, trained):
  with checkpoints.CheckpointManager.open(tmp_path, save_every=1, keep=1) as ckpt:
    ckpt.save(trained)
    abstract = jax.eval_shape(toy.init_state, jax.random.key(0))
    mesh = parallel.make_mesh(8)
    restored = ckpt.restore_latest(abstract, sharding=NamedSharding(mesh, P()))
  assert_states_equal(restored, trained)
  kernel = restored.params["generator"]["Dense_0"]["kernel"]
  assert kernel.sharding.is_fully_replicated and len(kernel.sharding.device_set) == 8
  assert jax.dtypes.issubdtype(restored.rng.dtype, jax.dtypes.prng_key)


def test_keep_prunes_and_save_every_decides(tmp_path, trained):
  with checkpoints.CheckpointManager.open(tmp_path, save_every=2, keep=2) as ckpt:
    saved = [ckpt.save(trained.replace(step=np.int32(s))) for s in range(1, 9)]
    assert saved == [False, True, False, True, False, True, False, True]
    assert ckpt.save(trained.replace(step=np.int32(9)), force=True)
    assert not ckpt.save(trained.replace(step=np.int32(9)), force=True)  # already saved
    ckpt.wait_until_finished()
    assert ckpt.all_steps() == [8, 9]
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["8", "9"]


def test_empty_workdir_restores_none(tmp_path):
  with checkpoints.CheckpointManager.open(tmp_path / "new", save_every=5, keep=2) as ckpt:
    assert ckpt.latest_step() is None
    assert ckpt.restore_latest(toy.init_state(jax.random.key(0))) is None


def test_a_checkpoint_of_another_model_is_a_clear_error(tmp_path, trained):
  with checkpoints.CheckpointManager.open(tmp_path, save_every=1, keep=1) as ckpt:
    ckpt.save(trained)
    other = toy.init_state(jax.random.key(0))
    other = other.replace(tx={**other.tx, "generator": optax.adam(1e-3)},
                          opt_states={**other.opt_states,
                                      "generator": optax.adam(1e-3).init(other.params["generator"])})
    with pytest.raises(JaxfaceError, match=r"does not match the model.*opt_states\.generator"):
      ckpt.restore_latest(other)


def test_export_round_trip(tmp_path, trained):
  path = checkpoints.export_params(trained, tmp_path / "serve" / "generator.msgpack",
                                   names=("generator",), metadata={"config": "toy", "dims": [4, 3]})
  loaded = checkpoints.load_exported(path)
  assert set(loaded["params"]) == {"generator"} and set(loaded["batch_stats"]) == {"generator"}
  expected = jax.device_get(trained.params["generator"])
  for (_, got), (_, want) in zip(jax.tree_util.tree_leaves_with_path(loaded["params"]["generator"]),
                                 jax.tree_util.tree_leaves_with_path(expected)):
    np.testing.assert_array_equal(got, want)
  assert loaded["metadata"]["config"] == "toy" and loaded["metadata"]["step"] == 2
  assert list(loaded["metadata"]["dims"]) == [4, 3]
  assert [p.name for p in path.parent.iterdir()] == ["generator.msgpack"]  # no temp files
  # The exported variables run the model as they are.
  out = toy.GENERATOR.apply({"params": loaded["params"]["generator"],
                             "batch_stats": loaded["batch_stats"]["generator"]},
                            np.ones((2, toy.IN), np.float32), train=False)
  assert out.shape == (2, toy.OUT)


def test_export_errors_name_the_file(tmp_path, trained):
  path = checkpoints.export_params(trained, tmp_path / "p.msgpack")
  data = path.read_bytes()
  (tmp_path / "cut.msgpack").write_bytes(data[: len(data) // 2])
  with pytest.raises(JaxfaceError, match=r"cut\.msgpack: corrupt or truncated"):
    checkpoints.load_exported(tmp_path / "cut.msgpack")
  (tmp_path / "junk.msgpack").write_bytes(b"\xc1\x00garbage")
  with pytest.raises(JaxfaceError, match=r"junk\.msgpack: corrupt or truncated"):
    checkpoints.load_exported(tmp_path / "junk.msgpack")
  from flax import serialization  # pylint: disable=import-outside-toplevel
  (tmp_path / "other.msgpack").write_bytes(serialization.msgpack_serialize({"a": np.ones(2)}))
  with pytest.raises(JaxfaceError, match=r"other\.msgpack: not a jaxface parameter export"):
    checkpoints.load_exported(tmp_path / "other.msgpack")
  with pytest.raises(JaxfaceError, match=r"missing\.msgpack: no such parameter file"):
    checkpoints.load_exported(tmp_path / "missing.msgpack")
  with pytest.raises(JaxfaceError, match="no network named"):
    checkpoints.export_params(trained, tmp_path / "x.msgpack", names=("encoder",))
