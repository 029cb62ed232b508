"""Writes the synthetic dataset (`jaxface synth`): TFRecord shards + `dataset_info.json`.

Layout of `out_dir` (one folder can hold several splits, each from its own seed):
  dataset_info.json                    splits -> shards, record counts, seed, scene config
  <split>-00000-of-00008.tfrecord ...  one `tf.train.Example` per identity with F frames
                                       (feature spec: `data_pipelines/features.py`)
  with `eval_layout` also, per split, what `jaxface reconstruct` / `jaxface evaluate
  --protocol synthetic` read:
  <split>/images/<identity>_<frame>.png          the frames as PNG files
  <split>/ground_truth/<identity>.npz            neutral_vertices [V,3] mm, triangles,
                                                 landmarks_3d [68,3] mm, landmarks_2d
                                                 [F,68,2] image pixels, tags [F]
  <split>/frames.json                            {"frames": [{"image", "identity", "tags"}]}

Identity i of a split is generated from (seed, i) alone, so the output does not depend
on the number of shards or worker processes. Shards are written to a temporary file and
renamed when complete; a rerun skips the shards that exist (an interrupted run resumes).
"""

import contextlib
import dataclasses
import json
import multiprocessing
import os
import pathlib
import time

import numpy as np

from data_pipelines import features
from jaxface import files
from jaxface.errors import JaxfaceError

INFO_FILE = features.INFO_FILE
DATASET_NAME = "jaxface_synth"
DATASET_VERSION = "1.0.0"


def shard_name(split: str, index: int, count: int) -> str:
  return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def shard_identities(index: int, count: int, identities: int) -> range:
  """Identities of shard `index` of `count`: a contiguous, balanced range."""
  return range(index * identities // count, (index + 1) * identities // count)


def read_info(out_dir) -> dict:
  """The folder's `dataset_info.json` ({"splits": {}} when there is none yet)."""
  path = pathlib.Path(out_dir) / INFO_FILE
  if not path.exists():
    return {"name": DATASET_NAME, "version": DATASET_VERSION, "splits": {}}
  try:
    return json.loads(path.read_text())
  except (OSError, json.JSONDecodeError) as e:
    raise JaxfaceError(f"{path}: unreadable dataset info ({e})") from None


def _split_entry(split, identities, shards, seed, model_spec, config, eval_layout) -> dict:
  return {"eval_layout": eval_layout, "shards": [shard_name(split, k, shards) for k in range(shards)],
          "num_records": identities, "num_frames": config.frames,
          "image_size": config.image_size, "seed": seed, "model": model_spec,
          "camera_distance_mm": 1000.0, "scene": dataclasses.asdict(config)}


# Worker state: one model, generator and jitted renderer per process.
_WORKER = {}


@contextlib.contextmanager
def _worker_threads(threads: int):
  """Environment of processes spawned inside: `threads` compute threads each.

  N worker processes on N cores: XLA's and OpenBLAS's thread pools (one thread per
  core by default) only contend, and OpenBLAS stalls badly on busy cores.
  """
  values = {"OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
            "XLA_FLAGS": " ".join(filter(None, [
                os.environ.get("XLA_FLAGS"), "--xla_cpu_multi_thread_eigen=false",
                f"intra_op_parallelism_threads={threads}"]))}
  saved = {k: os.environ.get(k) for k in values}
  os.environ.update(values)
  try:
    yield
  finally:
    for key, value in saved.items():
      if value is None:
        os.environ.pop(key, None)
      else:
        os.environ[key] = value


def use_compilation_cache() -> None:
  """XLA programs from the persistent cache `$JAXFACE_CACHE/xla` (unless one is set).

  A generator process would otherwise compile the renderer anew on every run (~12 s
  of a 2-core machine); with the cache only the first run on a machine compiles.
  The worker processes call it; `write_split` with one worker runs in the caller's
  process, which calls it itself if it wants the cache (`jaxface synth` does).
  """
  import jax  # pylint: disable=import-outside-toplevel
  from jaxface import assets  # pylint: disable=import-outside-toplevel
  if not jax.config.jax_compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir", str(assets.cache_dir() / "xla"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def _init_pool_worker(model_spec: str, config) -> None:
  """A generator process: XLA programs from the persistent cache, then `_init_worker`."""
  use_compilation_cache()
  _init_worker(model_spec, config)


def _init_worker(model_spec: str, config) -> None:
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  tf.config.set_visible_devices([], "GPU")
  from jaxface import morphable, synth  # pylint: disable=import-outside-toplevel
  model = morphable.load_model(model_spec)
  _WORKER["model"] = model
  _WORKER["generator"] = synth.make_generator(model, config)


def _write_eval_files(folder: pathlib.Path, record: dict) -> None:
  """One identity's PNG frames and ground-truth npz (with its frames' tags)."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from jaxface import morphable, synth  # pylint: disable=import-outside-toplevel
  model = _WORKER["model"]
  name = f"{record['identity']:05d}"
  for t, image in enumerate(record["image"]):
    with files.atomic_path(folder / "images" / f"{name}_{t:02d}.png") as tmp:
      Image.fromarray(image).save(tmp, format="PNG")
  # Written last: its presence marks the identity's eval files as complete.
  neutral = synth.neutral_vertices(model, record["shape"], record["detail"])
  files.save_npz(folder / "ground_truth" / f"{name}.npz",
                 neutral_vertices=neutral.astype(np.float32),
                 triangles=np.asarray(model.triangles, np.int32),
                 landmarks_3d=np.asarray(morphable.landmarks_3d(model, neutral), np.float32),
                 landmarks_2d=np.asarray(record["landmarks"], np.float32),
                 tags=np.asarray(record["tags"]))


def _write_shard(task) -> int:
  """Generates and writes one shard; returns the number of records written."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from jaxface import synth  # pylint: disable=import-outside-toplevel
  path, identities, seed, eval_folder = task
  with files.atomic_path(path) as tmp:
    with tf.io.TFRecordWriter(str(tmp)) as writer:
      for record in synth.generate_identities(_WORKER["generator"], seed, identities):
        writer.write(features.encode_example(record))
        if eval_folder is not None:
          _write_eval_files(pathlib.Path(eval_folder), record)
  return len(identities)


def write_split(out_dir, *, split: str = "train", identities: int, config, seed: int = 0,
                model_spec: str = "bfm_sim_front", shards: int | None = None,
                workers: int = 1, eval_layout: bool = False, log=print) -> dict:
  """Generates `identities` identities of F frames into TFRecord shards.

  Args:
    out_dir: output folder (created); may already hold other splits.
    split: split name ("train", "validation", "test", ...).
    identities: number of records (one identity each).
    config: `jaxface.synth.SynthConfig` (image size, frames, ranges).
    seed: the split's seed; identity i depends only on (seed, i).
    model_spec: the face model (`jaxface.morphable.load_model` spec).
    shards: number of shard files (default: ~32 identities per shard).
    workers: generator processes.
    eval_layout: also write PNG frames + ground-truth meshes + frames.json (see module doc).
    log: progress lines.
  Returns:
    The split's entry of dataset_info.json.
  """
  out_dir = pathlib.Path(out_dir)
  if identities < 1:
    raise JaxfaceError(f"{out_dir}: --identities must be at least 1")
  out_dir.mkdir(parents=True, exist_ok=True)
  shards = shards or max(1, min(identities, round(identities / 32)))
  entry = _split_entry(split, identities, shards, seed, model_spec, config, eval_layout)
  info = read_info(out_dir)
  previous = info["splits"].get(split)
  if previous is not None and previous != entry:
    raise JaxfaceError(f"{out_dir / INFO_FILE}: split {split!r} exists with other settings; "
                       "choose another --split or --out")
  # Record the split first: an interrupted run is recognised and resumed.
  info["splits"][split] = entry
  files.write_json(out_dir / INFO_FILE, info)
  eval_folder = str(out_dir / split) if eval_layout else None
  tasks = [(out_dir / shard_name(split, k, shards), shard_identities(k, shards, identities),
            seed, eval_folder) for k in range(shards)]
  todo = [t for t in tasks if not t[0].exists()]
  if len(todo) < len(tasks):
    log(f"{split}: {len(tasks) - len(todo)} of {len(tasks)} shards already written, resuming")
  start, done, frames = time.perf_counter(), 0, config.frames
  total = sum(len(t[1]) for t in todo)

  def report(count):
    nonlocal done
    done += count
    rate = done * frames / max(time.perf_counter() - start, 1e-9)
    eta = (total - done) * frames / max(rate, 1e-9)
    log(f"{split}: {done}/{total} identities, {rate:.1f} images/s, ETA {eta:.0f} s")

  if workers <= 1:  # in this process (see `use_compilation_cache`): no worker start-up
    _init_worker(model_spec, config)
    for task in todo:
      report(_write_shard(task))
  else:
    context = multiprocessing.get_context("spawn")  # jax and TF are not fork-safe
    with _worker_threads(max(1, (os.cpu_count() or 1) // workers)):
      pool = context.Pool(workers, initializer=_init_pool_worker, initargs=(model_spec, config))
    with pool:
      for count in pool.imap_unordered(_write_shard, todo):
        report(count)
  if eval_layout:
    write_frames_json(out_dir / split, identities, frames)
  return entry


def write_frames_json(folder: pathlib.Path, identities: int, frames: int) -> None:
  """`frames.json` of an eval layout, from the ground-truth files on disk."""
  entries = []
  for i in range(identities):
    name = f"{i:05d}"
    with np.load(folder / "ground_truth" / f"{name}.npz") as data:
      tags = [str(t) for t in data["tags"]]
    for t in range(frames):
      entries.append({"image": f"images/{name}_{t:02d}.png", "identity": name,
                      "tags": [tag for tag in tags[t].split(",") if tag]})
  files.write_json(folder / "frames.json", {"frames": entries})
