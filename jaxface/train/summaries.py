"""Metric writers, NaN checks, the progress line and image summaries of the loop.

Scalars and images go through `clu.metric_writers` (TensorBoard event files in the
workdir plus the log); only process 0 writes event files. clu writes event files with
TensorFlow, imported on the first `create_writer` call: on a GPU machine hide the GPUs
from TensorFlow first (`data_pipelines` does so on import), or it reserves their memory.
"""

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from jaxface.errors import JaxfaceError

LOSS_PREFIX = "loss/"


def create_writer(workdir: str):
  """clu's default writer: TensorBoard files in `workdir` (process 0 only) + logging."""
  # Imported here: clu's writers import TensorFlow, which `import jaxface.train` avoids.
  from clu import metric_writers  # pylint: disable=import-outside-toplevel
  return metric_writers.create_default_writer(workdir,
                                              just_logging=jax.process_index() > 0)


def describe_metric(name: str) -> str:
  """How an error names a metric: "loss term 'landmark'" for "loss/landmark"."""
  if name.startswith(LOSS_PREFIX):
    return f"loss term {name[len(LOSS_PREFIX):]!r}"
  if name == "loss":
    return "the total loss"
  return f"metric {name!r}"


def check_finite(step: int, metrics: Mapping[str, Any]) -> None:
  """Raises `JaxfaceError("step 12: loss term 'landmark' is NaN")` on the first bad value.

  Loss terms are checked first (a NaN loss makes the norms NaN too, and the loss
  term is the useful name).

  Args:
    step: the step number the metrics belong to (1-based: after `step` updates).
    metrics: name -> host scalar (or array: any bad element counts).
  """
  is_loss = lambda name: name == "loss" or name.startswith(LOSS_PREFIX)
  for name in sorted(metrics, key=lambda n: (not is_loss(n), n)):
    value = np.asarray(metrics[name], np.float64)
    if np.isnan(value).any():
      raise JaxfaceError(f"step {step}: {describe_metric(name)} is NaN")
    if np.isinf(value).any():
      raise JaxfaceError(f"step {step}: {describe_metric(name)} is infinite")


def mean_metrics(history: Sequence[Mapping[str, Any]]) -> dict[str, float]:
  """The mean of every metric over a list of per-step host metric dicts."""
  if not history:
    return {}
  return {name: float(np.mean([np.mean(h[name]) for h in history])) for name in history[0]}


def check_images(images: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Validates `image_fn` output: name -> [N, H, W, 3] floats in [0, 1] (clipped)."""
  out = {}
  for name, image in images.items():
    image = np.asarray(jax.device_get(image), np.float32)
    if image.ndim != 4 or image.shape[-1] not in (1, 3):
      raise JaxfaceError(f"image_fn: image {name!r} has shape {image.shape}, "
                         "expected [N, H, W, 3]")
    out[name] = np.clip(image, 0.0, 1.0)
  return out


def format_duration(seconds: float) -> str:
  """"1h02m", "3m05s" or "42s"."""
  if not math.isfinite(seconds):
    return "?"
  seconds = round(seconds)
  hours, rest = divmod(seconds, 3600)
  minutes, secs = divmod(rest, 60)
  if hours:
    return f"{hours}h{minutes:02d}m"
  return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
  """Measures throughput between log points and formats the progress line.

  Args:
    num_steps: the step the run ends at.
    batch_size: global examples per step (for images/s).
    start_step: the step the run (re)started at.
  """

  def __init__(self, num_steps: int, batch_size: int, start_step: int):
    self.num_steps = num_steps
    self.batch_size = batch_size
    self._step = start_step
    self._time = time.perf_counter()

  def restart(self, step: int) -> None:
    """Measures from now and `step` on (call after the first step, i.e. compilation)."""
    self._step, self._time = step, time.perf_counter()

  def update(self, step: int) -> dict[str, float]:
    """Rates since the last call: {"steps_per_sec", "images_per_sec", "eta_sec"}."""
    now = time.perf_counter()
    rate = (step - self._step) / max(now - self._time, 1e-9)
    self._step, self._time = step, now
    eta = (self.num_steps - step) / rate if rate > 0 else math.inf
    return {"steps_per_sec": rate, "images_per_sec": rate * self.batch_size,
            "eta_sec": eta}

  def line(self, step: int, rates: Mapping[str, float], metrics: Mapping[str, float]) -> str:
    """"step 100/1000: 4.1 steps/s, 66 images/s, ETA 3m40s, loss 0.123"."""
    losses = ", ".join(f"{k.split('/', 1)[-1] if k.startswith(LOSS_PREFIX) else k} "
                       f"{v:.4g}" for k, v in metrics.items() if k == "loss" or k.startswith(LOSS_PREFIX))
    text = (f"step {step}/{self.num_steps}: {rates['steps_per_sec']:.2f} steps/s, "
            f"{rates['images_per_sec']:.1f} images/s, "
            f"ETA {format_duration(rates['eta_sec'])}")
    return f"{text}, {losses}" if losses else text
