"""Data parallelism at the call site: meshes, `shard_map`/`pmap` wrappers, placement.

A train step is written once, per device: `train_step(state, batch, rng) -> (state,
metrics)`, averaging gradients, BatchNorm statistics and metrics over the named axis
`"data"` (`lax.pmean(x, "data")`). This module turns it into a global step:

- `parallelism="shard_map"` (default): `jax.jit(jax.shard_map(step, mesh, in_specs=(P(),
  P("data"), P()), out_specs=(P(), P())))`. The state is one logical copy replicated
  over the mesh (`replicate_state`), the batch is a global array `[B, ...]` sharded
  on its leading axis (`shard_batch`, or `data_pipelines.sharding` for several hosts),
  metrics come back as replicated scalars. The shard_map runs with `check_vma=False`:
  with the check on, JAX differentiates device-invariant params by summing their
  gradients over devices automatically (the transpose of the implicit broadcast), so
  a step's explicit `pmean` would give D times the mean gradient, unlike pmap. With
  it off both paths run the same per-device program; the price is that nothing
  verifies that the step's outputs are identical on all devices (pmean them).
- `parallelism="pmap"`: `jax.pmap(step, axis_name="data")`. The state is stacked
  `[D, ...]` (`replicate`/`unreplicate`), the batch is `[D, B/D, ...]`, metrics come
  back `[D]`.

Randomness: both wrappers give every device the same per-step key `rng` (replicated
for shard_map, broadcast with `in_axes=None` for pmap). A step that needs different
noise on each device calls `device_rng(rng)` = `fold_in(rng, axis_index("data"))`, so
the two paths draw identical numbers on the same devices and agree to float
tolerance. Per-device draws depend on the device count: a step that draws random
numbers gives different (equally valid) results on 1 and 8 devices; a step without
randomness gives the same results on any number of devices.

The wrappers also advance `state.step` by one, so steps never touch it.
"""

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxface.errors import JaxfaceError

DATA_AXIS = "data"
PARALLELISMS = ("shard_map", "pmap")

StepFn = Callable[[Any, Mapping[str, Any], jax.Array], tuple[Any, Mapping[str, jax.Array]]]


def make_mesh(num_devices: int | None = None, *,
              devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """A 1-D mesh with the axis "data" (AxisType.Auto) over the first devices.

  Args:
    num_devices: how many of `devices` to use (default all of them).
    devices: the devices (default `jax.devices()`, every process's devices, in
      jax's order).
  Returns:
    A `Mesh` of shape [num_devices] with axis name "data".
  """
  devices = list(jax.devices() if devices is None else devices)
  num_devices = len(devices) if num_devices is None else num_devices
  if not 1 <= num_devices <= len(devices):
    raise JaxfaceError(f"make_mesh: asked for {num_devices} devices, "
                       f"{len(devices)} are available")
  return jax.make_mesh((num_devices,), (DATA_AXIS,),
                       axis_types=(jax.sharding.AxisType.Auto,),
                       devices=devices[:num_devices])


def check_parallelism(parallelism: str) -> str:
  """`parallelism` if it is one of PARALLELISMS, else a one-line JaxfaceError."""
  if parallelism not in PARALLELISMS:
    raise JaxfaceError(f"unknown parallelism {parallelism!r}: use one of {PARALLELISMS}")
  return parallelism


def device_rng(rng: jax.Array, axis_name: str = DATA_AXIS) -> jax.Array:
  """A key different on each device: `fold_in(rng, axis_index(axis_name))`.

  Call inside a train step (under shard_map or pmap) for per-device noise
  (augmentation, dropout, discriminator prior samples).
  """
  return jax.random.fold_in(rng, jax.lax.axis_index(axis_name))


def _counting(step_fn: StepFn) -> StepFn:
  """`step_fn` that also advances `state.step` by one."""
  def counted(state, batch, rng):
    new_state, metrics = step_fn(state, batch, rng)
    return new_state.replace(step=state.step + 1), metrics
  return counted


def parallel_step(step_fn: StepFn, *, parallelism: str = "shard_map",
                  mesh: jax.sharding.Mesh | None = None,
                  donate: bool = True) -> StepFn:
  """Wraps a per-device train step for data-parallel execution.

  The wrapper is cached per (step_fn, parallelism, mesh, donate), so a second run
  with the same step function (a notebook, a resumed run in one process) reuses the
  compiled program.

  Args:
    step_fn: `(state, batch, rng) -> (state, metrics)`, pure, per device, using
      `lax.pmean(..., "data")`; it must not advance `state.step` (done here).
      Metrics are scalars, identical on all devices (pmean them).
    parallelism: "shard_map" (jit + shard_map over `mesh`) or "pmap".
    mesh: a 1-D mesh with axis "data" (default `make_mesh()`, all devices); for
      "pmap" its devices are the pmap devices.
    donate: donate the input state's buffers to the output (the caller must not
      use the state passed in after the call).
  Returns:
    `step(state, batch, rng) -> (state, metrics)`. shard_map: state replicated on
    the mesh (`replicate_state`), batch leaves `[B, ...]` sharded on axis 0
    (`shard_batch`), rng one key; metrics are replicated scalars. pmap: state from
    `replicate`, batch leaves `[D, B/D, ...]`, rng one key (broadcast); metrics `[D]`.
  """
  check_parallelism(parallelism)
  mesh = make_mesh() if mesh is None else mesh
  try:
    hash(step_fn)
  except TypeError:  # an unhashable callable object: build it uncached
    return _build_parallel_step(step_fn, parallelism, mesh, donate)
  return _cached_parallel_step(step_fn, parallelism, mesh, donate)


def _build_parallel_step(step_fn: StepFn, parallelism: str, mesh: jax.sharding.Mesh,
                         donate: bool) -> StepFn:
  """`parallel_step` without the cache (arguments already checked)."""
  counted = _counting(step_fn)
  if parallelism == "pmap":
    return jax.pmap(counted, axis_name=DATA_AXIS, in_axes=(0, 0, None),
                    devices=list(mesh.devices.flat), donate_argnums=(0,) if donate else ())
  # check_vma=False: explicit pmean of gradients, as under pmap (module docstring).
  sharded = jax.shard_map(counted, mesh=mesh, in_specs=(P(), P(DATA_AXIS), P()),
                          out_specs=(P(), P()), check_vma=False)
  return jax.jit(sharded, donate_argnums=(0,) if donate else ())


_cached_parallel_step = functools.lru_cache(maxsize=16)(_build_parallel_step)


def replicate_state(state: Any, mesh: jax.sharding.Mesh) -> Any:
  """The state as global arrays replicated on every device of `mesh` (shard_map path).

  Always a copy, so donating the result to a step leaves the caller's state usable.
  (`device_put(..., may_alias=False)` is not enough: the copy on the source device
  can still share its buffer.)
  """
  sharding = NamedSharding(mesh, P())
  return jax.tree.map(
      lambda x: jax.device_put(jnp.copy(x) if isinstance(x, jax.Array) else x, sharding),
      state)


def replicate(tree: Any, devices: Sequence[jax.Device]) -> Any:
  """Stacks one copy of every leaf per device: leaves `[D, ...]`, sharded (pmap path).

  Each device receives its own copy directly (no `[D, ...]` buffer on one device).
  """
  devices = list(devices)
  sharding = NamedSharding(jax.sharding.Mesh(np.asarray(devices), (DATA_AXIS,)),
                           P(DATA_AXIS))

  def put(x):
    x = jnp.asarray(x)[None]
    return jax.make_array_from_single_device_arrays(
        (len(devices),) + x.shape[1:], sharding, [jax.device_put(x, d) for d in devices])

  return jax.tree.map(put, tree)


def unreplicate(tree: Any) -> Any:
  """The first device's copy of a `[D, ...]` tree from `replicate`/pmap: leaves `[...]`."""
  return jax.tree.map(lambda x: x.addressable_shards[0].data[0], tree)


def place_state(state: Any, *, parallelism: str, mesh: jax.sharding.Mesh) -> Any:
  """The state placed for `parallel_step(..., parallelism, mesh)`."""
  if check_parallelism(parallelism) == "pmap":
    return replicate(state, list(mesh.devices.flat))
  return replicate_state(state, mesh)


def logical_state(state: Any, *, parallelism: str) -> Any:
  """One logical copy of a placed state (unreplicated for pmap; as is for shard_map)."""
  return unreplicate(state) if check_parallelism(parallelism) == "pmap" else state


def shard_batch(batch: Mapping[str, Any], *, parallelism: str,
                mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
  """Places a global host batch (leaves `[B, ...]`) for one process.

  Args:
    batch: name -> numpy array `[B, ...]`, B divisible by the mesh size D.
    parallelism: "shard_map" (global arrays sharded on axis 0) or "pmap" (leaves
      reshaped to `[D, B/D, ...]`, one slice per device).
    mesh: the step's mesh.
  Returns:
    The placed batch. With several processes each host holds only its own examples:
    use `data_pipelines.sharding` to build global arrays instead.
  """
  check_parallelism(parallelism)
  if jax.process_count() > 1:
    raise JaxfaceError("shard_batch places a single-process batch; with several hosts "
                       "pass place_batch built from data_pipelines.sharding")
  num = mesh.devices.size
  for name, x in batch.items():
    if np.ndim(x) == 0 or np.shape(x)[0] % num:
      raise JaxfaceError(f"batch[{name!r}] has shape {np.shape(x)}: its leading (batch) "
                         f"axis must be divisible by the {num} devices")
  if parallelism == "shard_map":
    return jax.device_put(dict(batch), NamedSharding(mesh, P(DATA_AXIS)))
  sharding = NamedSharding(mesh, P(DATA_AXIS))
  return {name: jax.device_put(np.reshape(x, (num, -1) + np.shape(x)[1:]), sharding)
          for name, x in batch.items()}
