"""Throughput of the training input pipeline (decode + augment) on this machine's CPU.

Run: python benchmarks/input_bench.py [--records 128] [--batch 32] [--frames 4] [--batches 30]
Writes a temporary dataset of synthetic-looking 224 x 224 JPEG frames (smooth random
gradients, blobs and noise; F=4 frames per record, masks, occluders and smooth
position maps as the synthetic writer stores them), then times the pipeline of
`data_pipelines.input_pipeline` as training uses it by default (224 x 224, position
map off) with augmentation on and off, after a warm-up. Prints a table, then one JSON
line with the same figures: images/s (frames/s: batch x frames per batch) of wall time,
the process's CPU time per image, and 2000 / CPU ms, the rate two otherwise idle cores
would sustain (the machine may be shared: compare with the load average printed).
"""

import argparse
import json
import os
import tempfile
import time

import ml_collections
import numpy as np
import tensorflow as tf

from data_pipelines import features, input_pipeline

tf.config.set_visible_devices([], "GPU")


def _blobs(rng, size, count, low, high):
  """Sum of `count` random Gaussian blobs on a size x size grid, amplitudes in [low, high]."""
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
  out = np.zeros((size, size), np.float32)
  for _ in range(count):
    cx, cy = rng.uniform(0, size, 2)
    sigma = rng.uniform(0.03, 0.2) * size
    out += rng.uniform(low, high) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
  return out


def synthetic_record(rng, identity: int, *, frames: int, size: int, vertices: int = 1000) -> dict:
  """One record that looks like a rendered face dataset's (for timing, not realism)."""
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
  images, masks, occlusions, maps = [], [], [], []
  for _ in range(frames):
    gradient = np.stack([rng.uniform(0, 1) + rng.uniform(-.5, .5) * xx + rng.uniform(-.5, .5) * yy
                         for _ in range(3)], -1)
    face = ((xx - .5) ** 2 / .09 + (yy - .55) ** 2 / .16) < 1
    skin = np.array([0.8, 0.6, 0.5]) * (0.7 + _blobs(rng, size, 6, -.2, .2)[..., None])
    image = np.where(face[..., None], skin, gradient) + rng.normal(0, 0.02, (size, size, 3))
    images.append(np.clip(image * 255, 0, 255).astype(np.uint8))
    masks.append(face)
    occlusions.append(np.zeros((size, size), bool))
    u, v = np.mgrid[0:256, 0:256].astype(np.float32)
    maps.append(np.stack([u * size / 256, v * size / 256, 40 * np.exp(-((u - 128) ** 2 + (v - 128) ** 2) / 5000)], -1))
  return {
      "image": np.stack(images), "mask": np.stack(masks), "occlusion": np.stack(occlusions),
      "landmarks": rng.uniform(0.2, 0.8, (frames, 68, 2)).astype(np.float32) * size,
      "position_map": np.stack(maps).astype(np.float32),
      "shape": rng.normal(size=40), "expression": rng.normal(size=(frames, 10)),
      "albedo": rng.normal(size=60), "rotation": rng.normal(0, .3, (frames, 3)),
      "translation": rng.normal(0, 5, (frames, 3)), "focal": np.full(frames, 1015.0),
      "light": rng.normal(0, .3, (frames, 9, 3)), "key_light": np.zeros((frames, 7)),
      "detail": rng.normal(0, .1, (vertices, 3)),
      "tags": [""] * frames, "identity": identity,
  }


def write_dataset(folder: str, *, records: int, frames: int, size: int, shards: int = 4) -> None:
  """Writes `records` records in `shards` JPEG shards + dataset_info.json."""
  rng = np.random.default_rng(0)
  names = [f"train-{k:05d}-of-{shards:05d}.tfrecord" for k in range(shards)]
  writers = [tf.io.TFRecordWriter(os.path.join(folder, name)) for name in names]
  for i in range(records):
    writers[i % shards].write(features.encode_example(
        synthetic_record(rng, i, frames=frames, size=size), image_format="jpeg"))
  for writer in writers:
    writer.close()
  info = {"splits": {"train": {"shards": names, "num_records": records, "num_frames": frames,
                               "image_size": size}}}
  with open(os.path.join(folder, features.INFO_FILE), "w", encoding="utf-8") as handle:
    json.dump(info, handle)


def _throughput(pipeline, batches: int, warmup: int) -> tuple[float, float]:
  """(images per second of wall time, CPU ms of this process per image) after warm-up."""
  iterator = iter(pipeline)
  for _ in range(warmup):
    batch = next(iterator)
  start, cpu_start = time.perf_counter(), time.process_time()
  for _ in range(batches):
    batch = next(iterator)
  elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
  images = batches * batch["image"].shape[0] * batch["image"].shape[1]
  return images / elapsed, 1e3 * cpu / images


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--records", type=int, default=128)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--frames", type=int, default=4)
  parser.add_argument("--size", type=int, default=224)
  parser.add_argument("--batches", type=int, default=30)
  parser.add_argument("--warmup", type=int, default=5)
  args = parser.parse_args()
  results = {"cpu_count": os.cpu_count(), "batch": args.batch, "frames": args.frames,
             "image_size": args.size}
  with tempfile.TemporaryDirectory() as folder:
    start = time.perf_counter()
    write_dataset(folder, records=args.records, frames=args.frames, size=args.size)
    results["write_s"] = round(time.perf_counter() - start, 1)
    print(f"wrote {args.records} records x {args.frames} frames in {results['write_s']} s")
    print(f"{'pipeline':<42} {'images/s':>9} {'CPU ms/image':>13} {'2-core bound':>13}")
    variants = (("train_pipeline", True, "bilinear"), ("train_pipeline_nearest", True, "nearest"),
                ("no_augment_pipeline", False, "bilinear"))
    for name, augment, interpolation in variants:
      config = ml_collections.ConfigDict({"input": {
          "data_dir": folder, "batch_size": args.batch, "frames": args.frames,
          "image_size": args.size, "augment": augment, "shuffle_buffer": 256, "repeat": True,
          "augmentation": {"interpolation": interpolation}}})
      pipeline = input_pipeline.make_dataset(config, "train", process_index=0, process_count=1)
      rate, cpu_ms = _throughput(pipeline, args.batches, args.warmup)
      bound = 2e3 / cpu_ms  # what 2 fully available cores would sustain
      label = f"{name} ({'augment, ' + interpolation if augment else 'decode only'})"
      print(f"{label:<42} {rate:>9.0f} {cpu_ms:>13.3f} {bound:>13.0f}")
      results[f"{name}_images_per_s"] = round(rate, 1)
      results[f"{name}_cpu_ms_per_image"] = round(cpu_ms, 3)
  results["load_average_1min"] = round(os.getloadavg()[0], 2)
  print(f"load average (1 min) at the end: {results['load_average_1min']} "
        "(other processes share these cores: images/s is what this run got)")
  print(json.dumps(results))


if __name__ == "__main__":
  main()
