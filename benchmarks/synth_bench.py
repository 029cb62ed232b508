"""Synthetic-data generation speed: in-process per image, and `jaxface synth` end to end.

Run: python benchmarks/synth_bench.py [--image-size 224] [--frames 4] [--identities 100]
                                      [--workers N]
Prints a table, then one JSON line with the same figures: after compilation, records
generated one at a time (`generate_identity`, the reference) and as `jaxface synth`
makes them (`generate_identities`: the next identity renders while this one is
finished and encoded), each with the record encoding; then `write_split` end to end.
The end-to-end figure includes process start-up, model loading and compilation in
every worker; with one worker (the default on <= 2 cores, as in `jaxface synth`)
write_split runs in this process, whose renderer is already compiled: model loading
and generator set-up only.
"""

import argparse
import json
import os
import tempfile
import time

import jax

from data_pipelines import features, synthetic
from jaxface import morphable, synth


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--image-size", type=int, default=224)
  parser.add_argument("--frames", type=int, default=4)
  parser.add_argument("--identities", type=int, default=100, help="end-to-end run")
  parser.add_argument("--repeats", type=int, default=12, help="in-process identities timed")
  parser.add_argument("--workers", type=int, default=1 if os.cpu_count() <= 2 else 2,
                      help="generator processes (default: as `jaxface synth`)")
  args = parser.parse_args()
  synthetic.use_compilation_cache()  # as `jaxface synth`
  config = synth.SynthConfig(image_size=args.image_size, frames=args.frames)
  generator = synth.make_generator(morphable.default_model("front"), config)
  start = time.perf_counter()
  synth.generate_identity(generator, 0, 0)
  first = time.perf_counter() - start
  timed = range(1, args.repeats + 1)
  start = time.perf_counter()
  for i in timed:
    features.encode_example(synth.generate_identity(generator, 0, i))
  sequential = (time.perf_counter() - start) / (args.repeats * args.frames)
  start = time.perf_counter()
  for record in synth.generate_identities(generator, 0, timed):
    features.encode_example(record)
  per_image = (time.perf_counter() - start) / (args.repeats * args.frames)
  with tempfile.TemporaryDirectory() as out:
    start = time.perf_counter()
    synthetic.write_split(out, identities=args.identities, config=config, seed=0,
                          shards=max(args.workers, round(args.identities / 32)),
                          workers=args.workers,
                          log=lambda _: None)
    end_to_end = time.perf_counter() - start
  images = args.identities * args.frames
  results = {
      "device": jax.devices()[0].device_kind, "cpu_count": os.cpu_count(),
      "image_size": args.image_size, "frames": args.frames,
      "synth_first_identity_s_with_compile": round(first, 2),
      "synth_sequential_ms_per_image": round(1000 * sequential, 1),
      "synth_ms_per_image_one_process": round(1000 * per_image, 1),
      "synth_images_per_s_one_process": round(1 / per_image, 1),
      "synth_pipelined_speedup": round(sequential / per_image, 2),
      "synth_end_to_end_images": images, "synth_end_to_end_workers": args.workers,
      "synth_end_to_end_s": round(end_to_end, 1),
      "synth_end_to_end_images_per_s": round(images / end_to_end, 1),
  }
  print(f"{'measure':<52} {'value':>10}")
  print(f"{'first identity incl. compilation (s)':<52} {first:>10.2f}")
  print(f"{'one at a time + encode (ms/image, reference)':<52} {1000 * sequential:>10.1f}")
  print(f"{'pipelined + encode, as jaxface synth (ms/image)':<52} {1000 * per_image:>10.1f}")
  print(f"{'pipelined + encode (images/s)':<52} {1 / per_image:>10.1f}")
  print(f"{'pipelined speed-up over one at a time':<52} {sequential / per_image:>10.2f}")
  print(f"{f'write_split, {args.workers} workers, {images} images (s)':<52} {end_to_end:>10.1f}")
  print(f"{'write_split end to end (images/s, incl. start-up)':<52} {images / end_to_end:>10.1f}")
  print(json.dumps(results))


if __name__ == "__main__":
  main()
