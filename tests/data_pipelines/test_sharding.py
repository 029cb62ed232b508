"""Host batch -> shard_map and pmap layouts, on 8 simulated CPU devices (conftest)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from data_pipelines import sharding


@pytest.fixture(scope="module")
def mesh():
  assert jax.device_count() == 8, "tests/conftest.py sets XLA_FLAGS for 8 CPU devices"
  return jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def host_batch(rows=16):
  return {"image": np.arange(rows * 2 * 3, dtype=np.float32).reshape(rows, 2, 3),
          "identity": np.arange(100, 100 + rows, dtype=np.int32)}


def test_both_layouts_give_device_d_the_same_rows(mesh):
  batch = host_batch()
  per = 2
  placed = sharding.global_batch(batch, mesh)
  assert placed["image"].shape == (16, 2, 3)
  assert placed["image"].sharding.spec == P("data")
  for shard in placed["image"].addressable_shards:
    d = list(mesh.devices.flat).index(shard.device)
    np.testing.assert_array_equal(np.asarray(shard.data), batch["image"][d * per:(d + 1) * per])

  def per_device(image, identity):  # what each device sees, tagged with its axis index
    return image, identity, jnp.full(identity.shape, jax.lax.axis_index("data"))

  mapped = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=P("data"),
                                 out_specs=P("data")))(placed["image"], placed["identity"])
  stacked = sharding.pmap_batch(batch)
  assert stacked["image"].shape == (8, 2, 2, 3) and stacked["identity"].shape == (8, 2)
  pmapped = jax.pmap(per_device, axis_name="data", devices=list(mesh.devices.flat))(
      stacked["image"], stacked["identity"])
  for d in range(8):
    rows = slice(d * per, (d + 1) * per)
    np.testing.assert_array_equal(np.asarray(mapped[0])[rows], batch["image"][rows])
    np.testing.assert_array_equal(np.asarray(mapped[2])[rows], d)
    np.testing.assert_array_equal(np.asarray(pmapped[0])[d], batch["image"][rows])
    np.testing.assert_array_equal(np.asarray(pmapped[1])[d], batch["identity"][rows])
    np.testing.assert_array_equal(np.asarray(pmapped[2])[d], d)
  # pmap's slice d lives on the mesh's device d.
  devices = {shard.index[0].start: shard.device for shard in pmapped[0].addressable_shards}
  assert [devices[d] for d in range(8)] == list(mesh.devices.flat)


def test_a_batch_that_does_not_divide_is_a_clear_error(mesh):
  with pytest.raises(ValueError, match="12 rows does not divide over 8 local devices"):
    sharding.global_batch(host_batch(12), mesh)
  with pytest.raises(ValueError, match="12 rows does not divide over 8"):
    sharding.pmap_batch(host_batch(12))
  with pytest.raises(ValueError, match="share a leading batch axis"):
    sharding.pmap_batch({"a": np.zeros((8, 2)), "b": np.zeros((16,))})
