"""`TrainState`: everything a training run carries from step to step, as one pytree.

Methods with several networks and optimisers (GAN-3DMM's generator and
discriminator, MLFL-GA's coarse and detail stages) keep one entry per network in
each dict, under the same name: `params["generator"]`, `batch_stats["generator"]`,
`opt_states["generator"]`, `tx["generator"]`. A step updates the networks it
trains with `apply_gradients(state, name, grads)`, once per name.

`state.step` counts completed steps. The call-site wrapper
(`jaxface.train.parallel.parallel_step`) advances it, so a train step never touches
it, however many optimisers it applies.
"""

from collections.abc import Mapping
from typing import Any, Self

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxface.errors import JaxfaceError

PyTree = Any


@struct.dataclass
class TrainState:
  """The state of a training run (a pytree; `tx` is static).

  Attributes:
    step: [] int32, the number of completed train steps.
    params: name -> params pytree of that network (e.g. "generator", "discriminator").
    batch_stats: name -> BatchNorm statistics of that network ({} for a network
      without any; the dict may be empty).
    opt_states: name -> optax state of `tx[name]`.
    rng: a typed PRNG key (`jax.random.key`), the run's base key. The loop passes
      each step `jax.random.fold_in(rng, step)`, so randomness depends only on the
      seed and the step number (and resumes exactly); steps need not update it.
    tx: name -> optax transform (static, not saved: rebuilt from the config).
  """

  step: jax.Array
  params: dict[str, PyTree]
  batch_stats: dict[str, PyTree]
  opt_states: dict[str, PyTree]
  rng: jax.Array
  tx: dict[str, optax.GradientTransformation] = struct.field(pytree_node=False)

  @classmethod
  def create(cls, *, params: Mapping[str, PyTree],
             tx: Mapping[str, optax.GradientTransformation], rng: jax.Array,
             batch_stats: Mapping[str, PyTree] | None = None) -> Self:
    """A state at step 0 with freshly initialised optimiser states.

    Args:
      params: name -> params pytree; every name needs a transform in `tx`.
      tx: name -> optax transform. Names in `tx` without params are an error.
      rng: a typed key (`jax.random.key(seed)`) or a raw uint32 key
        (`jax.random.PRNGKey(seed)`, wrapped here).
      batch_stats: name -> BatchNorm statistics (default: none).
    Returns:
      The state, with `opt_states[name] = tx[name].init(params[name])`.
    """
    if set(params) != set(tx):
      raise JaxfaceError(f"TrainState: params have networks {sorted(params)} but the "
                         f"optimisers are for {sorted(tx)}; give one optimiser per network")
    if not _is_typed_key(rng):
      rng = jax.random.wrap_key_data(jnp.asarray(rng, jnp.uint32))
    return cls(step=jnp.zeros((), jnp.int32), params=dict(params),
               batch_stats=dict(batch_stats or {}),
               opt_states={name: tx[name].init(params[name]) for name in params},
               rng=rng, tx=dict(tx))


def _is_typed_key(x) -> bool:
  return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def apply_gradients(state: TrainState, name: str, grads: PyTree) -> TrainState:
  """One optimiser update of network `name` (its params and optimiser state only).

  Args:
    state: the current state.
    name: which network (a key of `state.params` and `state.tx`).
    grads: gradients with the structure of `state.params[name]`, already averaged
      over devices (`lax.pmean(grads, "data")`) inside a data-parallel step.
  Returns:
    The state with `params[name]` and `opt_states[name]` updated; `step` unchanged.
  """
  tx = state.tx[name]
  updates, opt_state = tx.update(grads, state.opt_states[name], state.params[name])
  params = optax.apply_updates(state.params[name], updates)
  return state.replace(params={**state.params, name: params},
                       opt_states={**state.opt_states, name: opt_state})


def global_norm(tree: PyTree) -> jax.Array:
  """[] float32 L2 norm of all leaves of `tree` together (0 for an empty tree)."""
  leaves = jax.tree.leaves(tree)
  if not leaves:
    return jnp.zeros((), jnp.float32)
  return optax.tree.norm(leaves).astype(jnp.float32)


def param_norms(state: TrainState) -> dict[str, jax.Array]:
  """{"param_norm/<name>": [] float32} for every network, for the metrics."""
  return {f"param_norm/{name}": global_norm(p) for name, p in state.params.items()}


def grad_norms(grads: Mapping[str, PyTree]) -> dict[str, jax.Array]:
  """{"grad_norm/<name>": [] float32} for a dict name -> gradients, for the metrics."""
  return {f"grad_norm/{name}": global_norm(g) for name, g in grads.items()}
