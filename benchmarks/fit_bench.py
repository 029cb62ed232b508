"""Fitting speed and quality on the astronaut photo: 200-step fit at 224 px.

Run: python benchmarks/fit_bench.py [--steps 200] [--repeats 2]
Reports the fit time per image excluding compilation (compilation separately), the
landmark error over the inter-ocular distance and the identity cosine. Prints a
table, then one JSON line with the same figures.
"""

import argparse
import dataclasses
import json
import time

import jax
import numpy as np
import skimage.data

from jaxface import fit, morphable, nets, preprocess, reconstruct, render


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--repeats", type=int, default=2)
  args = parser.parse_args()
  model = morphable.default_model("front")
  topology = render.make_topology(model.triangles)
  identity_params = nets.load_dlib_params()
  tic = time.perf_counter()
  (crop,) = preprocess.detect_and_align(skimage.data.astronaut().astype(np.float32) / 255)
  preprocess_s = time.perf_counter() - tic
  targets = reconstruct.fit_targets([crop], identity_params)
  config = dataclasses.replace(fit.FitConfig(), steps=args.steps)
  runs = []
  for _ in range(args.repeats):
    runs.append(fit.fit(model, targets, config=config, identity_fn=reconstruct.dlib_identity,
                        identity_params=identity_params, topology=topology))
  result = runs[-1]
  _, error = reconstruct.landmark_reprojection(model, result.params, crop)
  rendered = render.render(fit.posed_vertices(model, result.params), topology,
                           fit.camera_for(result.params, crop.image.shape[:2]),
                           albedo=morphable.albedo(model, result.params["albedo"])[None],
                           light=result.params["light"], edge_antialias=False)
  cosine = float(reconstruct.identity_cosine(
      identity_params, targets.identity, targets.images, targets.landmarks, rendered,
      targets.masks))
  device = jax.devices()[0]
  figures = {
      "device": f"{device.platform}:{device.device_kind}", "steps": args.steps,
      "fit_s_per_image": round(min(r.seconds for r in runs), 2),
      "first_compile_s": round(runs[0].compile_seconds, 2),
      "preprocess_s": round(preprocess_s, 2),
      "landmark_error_over_interocular": round(error, 4), "identity_cosine": round(cosine, 4),
  }
  print(f"{'device':<12} {'steps':>5} {'fit s':>7} {'compile s':>10} {'preprocess s':>13} "
        f"{'lmk err/IOD':>12} {'id cos':>7}")
  print(f"{figures['device']:<12} {args.steps:>5} {figures['fit_s_per_image']:>7.2f} "
        f"{figures['first_compile_s']:>10.2f} {figures['preprocess_s']:>13.2f} "
        f"{figures['landmark_error_over_interocular']:>12.4f} {cosine:>7.3f}")
  print(json.dumps(figures))


if __name__ == "__main__":
  main()
