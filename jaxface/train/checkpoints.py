"""Checkpoints (the only Orbax module) and the params-only export for serving.

Training checkpoints: `CheckpointManager.open(workdir, save_every=N, keep=K)` keeps
the K newest states under `<workdir>/checkpoints/<step>/`. Orbax writes each step to
a temporary folder and renames it when complete, so a process killed mid-save leaves
the previous checkpoint as the latest. Saves are asynchronous: the arrays are copied
to host memory before `save` returns (so the caller may donate the state to the next
step) and written in the background; `close()` waits for them.

What is saved: the whole `TrainState` except the static optimiser transforms `tx`:
`step`, `params`, `batch_stats`, `opt_states` (every optimiser) and `rng`. The typed
PRNG key is stored as its raw data (`jax.random.key_data`, uint32) and wrapped again
on restore with the template's key implementation, because checkpoint formats hold
plain arrays only.

Multi-host: every process calls `save`/`restore_latest` with the same state; Orbax
writes replicated arrays once.

Serving export: `export_params` writes `{"params", "batch_stats", "metadata"}` of the
chosen networks as one msgpack file (`flax.serialization`), atomically;
`load_exported` reads it back as nested dicts of numpy arrays.
"""

import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any, Self

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization

from jaxface import files
from jaxface.errors import JaxfaceError
from jaxface.train.state import TrainState

CHECKPOINT_FOLDER = "checkpoints"
EXPORT_FORMAT = "jaxface-params-v1"


def _arrays(state: TrainState) -> dict[str, Any]:
  """The state's array fields except `rng`, as a plain dict."""
  return {"step": state.step, "params": state.params, "batch_stats": state.batch_stats,
          "opt_states": state.opt_states}


def _saveable(state: TrainState) -> dict[str, Any]:
  """The state as a plain dict of arrays (rng as raw uint32 key data, no `tx`)."""
  return {**_arrays(state), "rng": jax.random.key_data(state.rng)}


def _key_impl(key: Any):
  """The PRNG implementation of a typed key or of its abstract ShapeDtypeStruct."""
  found = []
  jax.eval_shape(lambda k: found.append(jax.random.key_impl(k)) or 0, key)
  return found[0]


def _summary(error: Exception) -> str:
  """Orbax's mismatch message in one line: its first sentence and first differing path."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  if not lines:
    return type(error).__name__
  text = lines[0].split(". ")[0]
  if text.endswith(":") and len(lines) > 1:
    text = f"{text} {lines[1].rstrip(':')}"
  return text


class CheckpointManager:
  """Saves and restores `TrainState`s in a workdir (a thin wrapper of Orbax's manager).

  Use `CheckpointManager.open(...)`, as a context manager or closing it at exit.
  """

  def __init__(self, manager: ocp.CheckpointManager, save_every: int):
    self._manager = manager
    self.save_every = save_every

  @classmethod
  def open(cls, workdir: str | os.PathLike, *, save_every: int, keep: int | None,
           asynchronous: bool = True) -> Self:
    """Opens (creating if needed) `<workdir>/checkpoints`.

    Args:
      workdir: the run's folder.
      save_every: `save` without `force` saves when `step % save_every == 0`.
      keep: how many of the newest checkpoints to keep (None: all).
      asynchronous: write in a background thread (`close` waits).
    """
    if save_every < 1 or (keep is not None and keep < 1):
      raise JaxfaceError(f"checkpoints: save_every={save_every} and keep={keep} must "
                         "be at least 1")
    directory = pathlib.Path(workdir).absolute() / CHECKPOINT_FOLDER
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, cleanup_tmp_directories=True,
        enable_async_checkpointing=asynchronous)
    return cls(ocp.CheckpointManager(directory, options=options), save_every)

  @property
  def directory(self) -> pathlib.Path:
    """The folder holding one subfolder per saved step."""
    return pathlib.Path(self._manager.directory)

  def all_steps(self) -> list[int]:
    """Steps with a complete checkpoint on disk, ascending (waits for pending saves)."""
    self._manager.wait_until_finished()
    self._manager.reload()
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    """The newest complete checkpoint's step, None if none (waits for pending saves)."""
    steps = self.all_steps()
    return steps[-1] if steps else None

  def should_save(self, step: int) -> bool:
    """Whether `save(state)` at `step` writes a checkpoint (without `force`)."""
    return step % self.save_every == 0 and step != self._manager.latest_step()

  def save(self, state: TrainState, *, force: bool = False) -> bool:
    """Saves `state` if its step is a multiple of `save_every` (or `force`).

    Args:
      state: one logical copy of the state (unreplicated for pmap; replicated
        global arrays for shard_map are fine).
      force: save whatever the step (at exit), unless this step is already saved.
    Returns:
      Whether a checkpoint was started.
    """
    step = int(jax.device_get(state.step))
    if step == self._manager.latest_step() or not (force or self.should_save(step)):
      return False
    return bool(self._manager.save(step, args=ocp.args.StandardSave(_saveable(state)),
                                   force=True))

  def restore_latest(self, template: TrainState, *,
                     sharding: jax.sharding.Sharding | None = None) -> TrainState | None:
    """The newest checkpoint as a state shaped like `template`, or None if there is none.

    Args:
      template: a state (concrete, or abstract from `jax.eval_shape`) with the same
        networks and optimisers; its `tx` is kept.
      sharding: where to put every restored array (e.g. `NamedSharding(mesh, P())`);
        default: the template leaves' own sharding if concrete, else the first local
        device.
    Returns:
      The restored state or None. A checkpoint that does not fit the template (the
      model or optimiser changed) raises a one-line JaxfaceError.
    """
    step = self.latest_step()
    if step is None:
      return None
    default = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

    def where(x):
      return sharding or (x.sharding if isinstance(x, jax.Array) else None) or default

    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=where(x)),
                          _arrays(template))
    key_data = jax.eval_shape(jax.random.key_data, template.rng)
    target["rng"] = jax.ShapeDtypeStruct(key_data.shape, key_data.dtype,
                                         sharding=where(template.rng))
    try:
      restored = self._manager.restore(step, args=ocp.args.StandardRestore(target))
    except ValueError as e:
      raise JaxfaceError(f"checkpoint {self.directory / str(step)} does not match the "
                         f"model and optimisers being trained: {_summary(e)}") from e
    rng = jax.random.wrap_key_data(restored.pop("rng"), impl=_key_impl(template.rng))
    return template.replace(rng=rng, **restored)

  def wait_until_finished(self) -> None:
    """Blocks until asynchronous saves are written."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves, then releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()

  def __enter__(self) -> Self:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def export_params(state: TrainState, path: str | os.PathLike, *,
                  names: Sequence[str] | None = None,
                  metadata: Mapping[str, Any] | None = None) -> pathlib.Path:
  """Writes the params (and BatchNorm statistics) of some networks for serving.

  Args:
    state: one logical copy of the state.
    path: the msgpack file to write (atomically: complete or absent).
    names: which networks (default all), e.g. ("generator",) to drop a discriminator.
    metadata: msgpack-able values (str, numbers, lists, dicts) stored beside, e.g.
      the config name and coefficient layout. `format` and `step` are added.
  Returns:
    The path written.
  """
  names = list(state.params) if names is None else list(names)
  missing = [n for n in names if n not in state.params]
  if missing:
    raise JaxfaceError(f"export_params: no network named {missing}; the state has "
                       f"{sorted(state.params)}")
  tree = {"params": {n: state.params[n] for n in names},
          "batch_stats": {n: state.batch_stats[n] for n in names if n in state.batch_stats}}
  tree = jax.tree.map(np.asarray, jax.device_get(tree))
  tree["metadata"] = {"format": EXPORT_FORMAT, "step": int(jax.device_get(state.step)),
                      **dict(metadata or {})}
  path = pathlib.Path(path)
  data = serialization.msgpack_serialize(tree)
  with files.atomic_path(path) as tmp:
    tmp.write_bytes(data)
  return path


def load_exported(path: str | os.PathLike) -> dict[str, Any]:
  """Reads a file from `export_params`.

  Args:
    path: the msgpack file.
  Returns:
    {"params": name -> params, "batch_stats": name -> stats, "metadata": dict}, with
    numpy arrays as leaves.
  Raises:
    JaxfaceError naming the file if it is missing, truncated or not an export.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise JaxfaceError(f"{path}: no such parameter file (write one with export_params)")
  try:
    tree = serialization.msgpack_restore(path.read_bytes())
  except Exception as e:  # msgpack raises several unrelated types on corrupt input.
    raise JaxfaceError(f"{path}: corrupt or truncated parameter file "
                       f"({type(e).__name__})") from e
  if (not isinstance(tree, dict) or not isinstance(tree.get("metadata"), dict)
      or tree["metadata"].get("format") != EXPORT_FORMAT or "params" not in tree):
    raise JaxfaceError(f"{path}: not a jaxface parameter export ({EXPORT_FORMAT})")
  tree.setdefault("batch_stats", {})
  return tree
