"""The training loop: event files, NaN stops, signals, exact resume after SIGKILL."""

import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from jaxface.errors import JaxfaceError
from jaxface.train import checkpoints, loop
from tests.train import toy

ROOT = pathlib.Path(__file__).resolve().parents[2]


def train(workdir, config, *, lines=None, **kwargs):
  """`loop.run` on the toy; progress lines are collected in `lines`."""
  size = config.train.batch_size
  kwargs.setdefault("batches", lambda start: toy.batches(start, batch_size=size))
  return loop.run(config, workdir, init_state=toy.init_state,
                  train_step=toy.make_train_step(noise=0.1),
                  log=(lines.append if lines is not None else lambda _: None), **kwargs)


def event_tags(workdir: pathlib.Path) -> set[str]:
  tags = set()
  for path in workdir.glob("events.out.tfevents.*"):
    acc = event_accumulator.EventAccumulator(str(path), size_guidance={"tensors": 0})
    acc.Reload()
    tags.update(acc.Tags()["tensors"])
  return tags


def test_writes_events_images_eval_and_checkpoints_then_resumes(tmp_path):
  config = toy.make_config(4, image_every=2, eval_every=4)
  lines, starts = [], []

  def batches(start):
    starts.append(start)
    return toy.batches(start, batch_size=16)

  image_fn = lambda state, batch: {"inputs": np.full((2, 5, 5, 3), 0.5, np.float32)}
  eval_fn = lambda state: {"kernel_mean": state.params["generator"]["Dense_0"]["kernel"].mean()}
  state = train(tmp_path, config, lines=lines, batches=batches, image_fn=image_fn,
                eval_fn=eval_fn)
  assert int(state.step) == 4 and starts == [0]
  tags = event_tags(tmp_path)
  assert {"loss/regression", "loss/adversarial", "loss/discriminator", "grad_norm/generator",
          "param_norm/discriminator", "steps_per_sec", "images_per_sec",
          "eval/kernel_mean", "inputs"} <= tags
  progress = [line for line in lines if line.startswith("step 4/4:")]
  assert progress and "images/s" in progress[0] and "ETA" in progress[0]
  assert "regression" in progress[0]
  with checkpoints.CheckpointManager.open(tmp_path, save_every=2, keep=3) as ckpt:
    assert ckpt.all_steps() == [2, 4]
  # Longer run in the same workdir: resumes at step 4, asks the data for step 5 on.
  config.train.num_steps = 6
  state = train(tmp_path, config, lines=lines, batches=batches)
  assert int(state.step) == 6 and starts == [0, 4]
  assert any(line.startswith("resuming from step 4") for line in lines)


def test_nan_stops_naming_step_and_term(tmp_path):
  config = toy.make_config(8, log_every=10)
  batches = lambda start: toy.batches(start, batch_size=16, nan_at=3)
  with pytest.raises(JaxfaceError) as error:
    train(tmp_path, config, batches=batches)
  assert str(error.value) == "step 3: loss term 'regression' is NaN"
  # The NaN was caught before the step-4 checkpoint: the newest one is usable.
  with checkpoints.CheckpointManager.open(tmp_path, save_every=2, keep=3) as ckpt:
    assert ckpt.all_steps() == [2]
    restored = ckpt.restore_latest(toy.init_state(jax.random.key(0)))
  assert all(np.isfinite(v).all() for v in toy.flat_params(restored).values())


def test_sigterm_saves_then_exits(tmp_path):
  assert threading.current_thread() is threading.main_thread()
  config = toy.make_config(8, checkpoint_every=5)

  def batches(start):
    for i, batch in enumerate(toy.batches(start, batch_size=16)):
      if i == 2:  # while fetching the batch of step 3
        signal.raise_signal(signal.SIGTERM)
      yield batch

  lines = []
  before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
  with pytest.raises(SystemExit) as exit_info:
    train(tmp_path, config, lines=lines, batches=batches)
  assert exit_info.value.code == 128 + signal.SIGTERM
  assert any("stopped by signal" in line for line in lines)
  with checkpoints.CheckpointManager.open(tmp_path, save_every=5, keep=3) as ckpt:
    assert ckpt.all_steps() == [3]
  assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_batches_running_out_is_an_error_after_saving(tmp_path):
  config = toy.make_config(8, checkpoint_every=5)
  batches = lambda start: (toy.make_batch(i, 16) for i in range(start, 3))
  with pytest.raises(JaxfaceError, match="ran out after step 3 of 8"):
    train(tmp_path, config, batches=batches)
  with checkpoints.CheckpointManager.open(tmp_path, save_every=5, keep=3) as ckpt:
    assert ckpt.all_steps() == [3]


def test_pmap_runs_and_checkpoints_agree_with_shard_map(tmp_path):
  def config(num_steps, parallelism):
    config = toy.make_config(num_steps)
    config.parallelism = parallelism
    return config

  reference = toy.flat_params(train(tmp_path / "sm", config(4, "shard_map")))
  with_pmap = train(tmp_path / "pm", config(4, "pmap"))
  assert with_pmap.params["generator"]["Dense_0"]["kernel"].shape == (toy.IN, toy.HIDDEN)
  # A pmap run's checkpoint resumes under shard_map (checkpoints hold one copy).
  train(tmp_path / "mixed", config(2, "pmap"))
  mixed = train(tmp_path / "mixed", config(4, "shard_map"))
  for state in (with_pmap, mixed):
    got = toy.flat_params(state)
    for name in reference:
      np.testing.assert_allclose(got[name], reference[name], rtol=1e-5, atol=1e-6,
                                 err_msg=name)


def test_resume_after_sigkill_is_exact(tmp_path):
  num_steps = 8
  reference = train(tmp_path / "reference", toy.make_config(num_steps))

  killed = tmp_path / "killed"
  process = subprocess.Popen(
      [sys.executable, "-m", "tests.train.toy", str(killed), str(num_steps), "0.25"],
      cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  deadline = time.monotonic() + 120
  # Orbax renames a step's folder into place only when it is complete.
  while not (killed / "checkpoints" / "2").is_dir():
    if process.poll() is not None or time.monotonic() > deadline:
      process.kill()
      pytest.fail("no checkpoint before the run ended:\n" + process.stdout.read().decode())
    time.sleep(0.05)
  process.send_signal(signal.SIGKILL)
  output = process.communicate()[0].decode()
  assert process.returncode == -signal.SIGKILL, output
  assert not (killed / "final.npz").exists()

  lines = []
  resumed = train(killed, toy.make_config(num_steps), lines=lines)
  resumed_from = [line for line in lines if line.startswith("resuming from step")]
  assert resumed_from and int(resumed_from[0].split()[3]) < num_steps
  assert int(resumed.step) == num_steps
  ref, got = toy.flat_params(reference), toy.flat_params(resumed)
  for name in ref:
    np.testing.assert_array_equal(got[name], ref[name], err_msg=name)
  np.testing.assert_array_equal(jax.random.key_data(resumed.rng),
                                jax.random.key_data(reference.rng))
