"""The generic training loop: resume, data-parallel steps, metrics, images, checkpoints.

Method-independent: a method supplies `init_state`, a per-device `train_step` and a
batch factory; `run` does the rest. The config is any `ml_collections.ConfigDict`
(or attribute-access object with `.get`) with:

  parallelism             "shard_map" (default) or "pmap"
  distributed             optional; True: `jax.distributed.initialize()` first
  seed                    int, the run's base PRNG key is `jax.random.key(seed)`
  train.num_steps         the step the run ends at (counted across resumes)
  train.batch_size        global examples per step (for images/s)
  train.log_every         fetch, check and write metrics every N steps
  train.checkpoint_every  save every N steps (and at exit)
  train.keep_checkpoints  how many checkpoints to keep
  train.image_every       call `image_fn` every N steps (0: never)
  train.eval_every        call `eval_fn` every N steps (0: never)

Multi-host (`distributed=True`): start the same program on every host (the cluster
is found from the environment, e.g. SLURM or TPU metadata, by
`jax.distributed.initialize()`, which `run` calls unless already done; no JAX call may
come before it). The mesh spans every host's devices; each host's batch factory
yields only that host's share of every global batch (`B / num_processes` examples),
and `place_batch` (from `data_pipelines.sharding`) assembles the global arrays. Every
host runs the same steps and takes part in every checkpoint; only process 0 writes
TensorBoard files. The shard_map path is the one meant for several hosts.
"""

import functools
import pathlib
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Self

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxface.errors import JaxfaceError
from jaxface.train import parallel, summaries
from jaxface.train.checkpoints import CheckpointManager
from jaxface.train.state import TrainState

Batch = Mapping[str, Any]


class _StopSignals:
  """Turns SIGINT/SIGTERM into a flag checked between steps (a second Ctrl-C aborts).

  A signal never interrupts a step halfway (its input state is donated), so the loop
  can always save the state it holds before leaving.
  """

  def __enter__(self) -> Self:
    self.received = None
    self._previous = {}
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGINT, signal.SIGTERM):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    if self.received == signal.SIGINT and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.received = signum

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

  def reraise(self) -> None:
    """After saving: KeyboardInterrupt for SIGINT, exit status 128 + 15 for SIGTERM."""
    if self.received == signal.SIGINT:
      raise KeyboardInterrupt
    raise SystemExit(128 + int(self.received))


class _Metrics:
  """Per-step device metrics kept until the next log point, then fetched at once."""

  def __init__(self, writer, progress: summaries.Progress, log: Callable[[str], None]):
    self.writer, self.progress, self.log = writer, progress, log
    self.pending: list[tuple[int, Any]] = []

  def flush(self, step: int) -> None:
    """One device_get of all pending metrics; NaN/Inf check per step; write the means."""
    if not self.pending:
      return
    steps = [s for s, _ in self.pending]
    history = jax.device_get([m for _, m in self.pending])
    self.pending = []
    for s, metrics in zip(steps, history):
      summaries.check_finite(s, metrics)
    means = summaries.mean_metrics(history)
    rates = self.progress.update(step)
    self.writer.write_scalars(step, {**means, "steps_per_sec": rates["steps_per_sec"],
                                     "images_per_sec": rates["images_per_sec"]})
    self.log(self.progress.line(step, rates, means))


def _every(step: int, period: int | None) -> bool:
  return bool(period) and step % period == 0


def _restore_or_init(ckpt: CheckpointManager, init_state: Callable[[jax.Array], TrainState],
                     seed: int, sharding, log) -> TrainState:
  """The newest checkpoint in the workdir, else `init_state(jax.random.key(seed))`."""
  rng = jax.random.key(seed)
  restored = ckpt.restore_latest(jax.eval_shape(init_state, rng), sharding=sharding)
  if restored is None:
    log(f"starting from scratch (seed {seed})")
    return jax.jit(init_state, out_shardings=sharding)(rng)
  # eval_shape keeps `tx` (static), so the restored state is complete.
  log(f"resuming from step {ckpt.latest_step()} ({ckpt.directory})")
  return restored


def _side_outputs(step, state_fn, host_batch, writer, train, eval_fn, image_fn, log):
  """Images and evaluation due at `step` (both see one logical copy of the state)."""
  if image_fn is not None and _every(step, train.get("image_every", 0)):
    writer.write_images(step, summaries.check_images(image_fn(state_fn(), host_batch)))
  if eval_fn is not None and _every(step, train.get("eval_every", 0)):
    scores = {f"eval/{k}": float(v) for k, v in jax.device_get(eval_fn(state_fn())).items()}
    writer.write_scalars(step, scores)
    log(f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in scores.items()))


def run(config: Any, workdir: str | pathlib.Path, *,
        init_state: Callable[[jax.Array], TrainState],
        train_step: parallel.StepFn,
        batches: Callable[[int], Iterable[Batch]],
        eval_fn: Callable[[TrainState], Mapping[str, Any]] | None = None,
        image_fn: Callable[[TrainState, Batch], Mapping[str, Any]] | None = None,
        place_batch: Callable[[Batch], Batch] | None = None,
        mesh: jax.sharding.Mesh | None = None,
        log: Callable[[str], None] = print) -> TrainState:
  """Trains to `config.train.num_steps`, resuming from the workdir's newest checkpoint.

  Args:
    config: see the module docstring for the fields used.
    workdir: holds `checkpoints/` and the TensorBoard event files.
    init_state: `rng -> TrainState` at step 0 (also traced with `jax.eval_shape` to
      build the restore template, so it must be deterministic in `rng`).
    train_step: `(state, batch, rng) -> (state, metrics)`, pure, per device, with
      `lax.pmean(..., "data")`; metrics are scalars (loss terms named "loss/<term>",
      plus e.g. `state.grad_norms`/`param_norms`). It does not advance `state.step`.
    batches: `batches(start_step)` -> iterator of host batches (dicts of arrays);
      its first batch is the one for step `start_step + 1`, i.e. the factory skips
      the `start_step` batches already consumed, so a resumed run sees exactly the
      data an uninterrupted one would.
    eval_fn: `state -> {name: scalar}`, written as "eval/<name>" every `eval_every`.
    image_fn: `(state, host_batch) -> {name: [N, H, W, 3] in [0, 1]}`, every
      `image_every` steps.
    place_batch: host batch -> placed batch for the step (default
      `parallel.shard_batch`: single process, global batch `[B, ...]`; several
      hosts: `data_pipelines.sharding.global_batch(batch, mesh)` or `pmap_batch`).
    mesh: the 1-D "data" mesh (default `parallel.make_mesh()`, every device).
    log: where progress lines go.
  Returns:
    The final state (one logical copy: unreplicated for pmap).
  Raises:
    JaxfaceError: "step 123: loss term 'landmark' is NaN" when a metric is not
      finite (nothing is saved: the newest checkpoint predates it), or when the
      batches run out early (after saving). On SIGINT/SIGTERM the state is saved,
      then KeyboardInterrupt / SystemExit(143) is raised.
  """
  if config.get("distributed", False) and not jax.distributed.is_initialized():
    jax.distributed.initialize()  # before any other JAX call of the process
  train = config.train
  parallelism = parallel.check_parallelism(config.get("parallelism", "shard_map"))
  mesh = parallel.make_mesh() if mesh is None else mesh
  logical = functools.partial(parallel.logical_state, parallelism=parallelism)
  place_batch = place_batch or functools.partial(parallel.shard_batch,
                                                 parallelism=parallelism, mesh=mesh)
  restore_to = (NamedSharding(mesh, P()) if parallelism == "shard_map"
                else jax.sharding.SingleDeviceSharding(jax.local_devices()[0]))
  workdir = pathlib.Path(workdir)
  with CheckpointManager.open(workdir, save_every=train.checkpoint_every,
                              keep=train.keep_checkpoints) as ckpt, _StopSignals() as stop:
    state = _restore_or_init(ckpt, init_state, config.seed, restore_to, log)
    step = start = int(jax.device_get(state.step))
    base_rng, num_steps = state.rng, train.num_steps
    placed = parallel.place_state(state, parallelism=parallelism, mesh=mesh)
    del state  # donated by the first step
    step_fn = parallel.parallel_step(train_step, parallelism=parallelism, mesh=mesh)
    progress = summaries.Progress(num_steps, train.batch_size, start)
    writer = summaries.create_writer(str(workdir))
    metrics = _Metrics(writer, progress, log)
    iterator: Iterator[Batch] = iter(batches(start))
    try:
      while step < num_steps and stop.received is None:
        host_batch = next(iterator, None)
        if host_batch is None:
          break
        placed, step_metrics = step_fn(placed, place_batch(host_batch),
                                       jax.random.fold_in(base_rng, step))
        step += 1
        metrics.pending.append((step, step_metrics))
        if step == start + 1:
          progress.restart(step)  # leave compilation out of the rates
        if _every(step, train.log_every) or ckpt.should_save(step):
          metrics.flush(step)  # checked before it can reach a checkpoint
        if ckpt.should_save(step):
          ckpt.save(logical(placed))
        _side_outputs(step, functools.partial(logical, placed), host_batch, writer, train,
                      eval_fn, image_fn, log)
      metrics.flush(step)
      ckpt.save(logical(placed), force=True)
    finally:
      writer.flush()
      writer.close()
  if stop.received is not None:
    log(f"stopped by signal {stop.received} at step {step}; saved")
    stop.reraise()
  if step < num_steps:
    raise JaxfaceError(f"the batches ran out after step {step} of {num_steps} "
                       "(saved; make the batch iterator longer or repeat it)")
  return logical(placed)
