"""Host batch -> device layouts for the two data-parallel paths of `jaxface.train`.

A host's input pipeline yields numpy batches with leaves `[B_host, ...]` (its share of
the global batch). The train step runs per device under either

- `jax.shard_map` over a 1-D mesh with axis "data" (`jaxface.train.make_mesh`): the
  batch must be global `jax.Array`s `[B_global, ...]` sharded `P("data")` on the
  leading axis. `global_batch` builds them with `jax.make_array_from_process_local_data`,
  which works with one host or many (each host passes only its own rows);
- `jax.pmap`: leaves `[local_devices, B_host / local_devices, ...]`, built by
  `pmap_batch`.

In both layouts local device d (in `mesh.local_devices` / pmap device order) holds host
rows [d * per, (d + 1) * per), per = B_host / local_devices, so the two paths train on
the same examples per device.
"""

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def per_device_rows(batch: Mapping[str, Any], num_devices: int) -> int:
  """Rows per device of a host batch; ValueError unless every leaf's B divides evenly.

  Args:
    batch: name -> array `[B_host, ...]`.
    num_devices: this host's devices that share it.
  Returns:
    B_host / num_devices.
  """
  sizes = {name: np.shape(x)[0] if np.ndim(x) else None for name, x in batch.items()}
  rows = set(sizes.values())
  if len(rows) != 1 or None in rows:
    raise ValueError(f"batch leaves must share a leading batch axis, got {sizes}")
  (size,) = rows
  if size % num_devices:
    raise ValueError(f"host batch of {size} rows does not divide over {num_devices} local "
                     f"devices: choose a global batch size divisible by the device count")
  return size // num_devices


def global_batch(batch: Mapping[str, Any], mesh: jax.sharding.Mesh, *,
                 axis: str = DATA_AXIS) -> dict[str, jax.Array]:
  """A host batch as global arrays sharded over the mesh's data axis (shard_map path).

  Args:
    batch: name -> numpy array `[B_host, ...]`, this process's rows, in the order its
      input pipeline produced them.
    mesh: a 1-D mesh with axis `axis` over the devices of every process.
    axis: the mesh axis the batch is split over.
  Returns:
    name -> `jax.Array` `[B_host * process_count, ...]` with `NamedSharding(mesh,
    P(axis))`; this host's local devices hold its rows, in local mesh order.
  Raises:
    ValueError: when B_host does not divide over this host's devices of the mesh.
  """
  local = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
  per_device_rows(batch, len(local))
  sharding = NamedSharding(mesh, P(axis))
  return {name: jax.make_array_from_process_local_data(sharding, np.asarray(x))
          for name, x in batch.items()}


def pmap_batch(batch: Mapping[str, Any], num_devices: int | None = None) -> dict[str, np.ndarray]:
  """A host batch reshaped for `jax.pmap`: leaves `[D, B_host / D, ...]`.

  Args:
    batch: name -> numpy array `[B_host, ...]`.
    num_devices: D, the pmap's devices on this host (default `jax.local_device_count()`).
  Returns:
    name -> numpy array `[D, B_host / D, ...]`; slice d goes to the pmap's device d.
  Raises:
    ValueError: when B_host does not divide over D.
  """
  num_devices = jax.local_device_count() if num_devices is None else num_devices
  rows = per_device_rows(batch, num_devices)
  return {name: np.reshape(x, (num_devices, rows) + np.shape(x)[1:]) for name, x in batch.items()}
