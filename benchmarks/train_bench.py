"""Train-step throughput against its limit, the encoder's forward + backward pass.

Run: python benchmarks/train_bench.py [--method gan3dmm] [--batch 8] [--size 224]
                                      [--backbone resnet50] [--repeats 3] [--no-identity]
For the method's default config (ResNet-50 at 224 x 224, its default loss weights,
edge antialiasing on) times, on one device, after compilation:
  - the full data-parallel train step (`parallel.parallel_step`, shard_map on a
    one-device mesh: what `jaxface train` runs), images/s;
  - the encoder alone, forward + backward of a scalar of its output with BatchNorm in
    training mode (the most a step with this encoder can do), images/s;
  - the render + losses part alone (value and gradient of the method's loss as a
    function of the encoder's output), and the render alone (forward + backward);
then the step's fraction of the encoder-only throughput and the renderer's share of
the step time. Prints a table, then one JSON line with the same figures. Random
images and landmarks stand in for data (the work does not depend on the pixels).
"""

import argparse
import importlib
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxface import morphable, render
from jaxface.train import gan3dmm, methods, mlfl_ga, parallel


def _seconds(fn, repeats: int) -> float:
  jax.block_until_ready(fn())  # compile and warm up
  start = time.perf_counter()
  for _ in range(repeats):
    jax.block_until_ready(fn())
  return (time.perf_counter() - start) / repeats


def _batch(config, batch: int, size: int) -> dict:
  """A DESIGN.md §2 batch of B samples x T frames with face-like landmarks and masks."""
  rng = np.random.default_rng(0)
  frames = config.input.frames
  model = gan3dmm.load_model(config.morphable.model)
  zero = {"rotation": jnp.zeros((1, 3)), "translation": jnp.zeros((1, 3))}
  lmk = np.asarray(render.project(gan3dmm.camera(config, zero, (size, size)),
                                  morphable.landmarks_3d(model, model.mean[None]))[0][0])
  yy, xx = np.mgrid[0:size, 0:size] / size
  mask = (((xx - .5) ** 2 / .09 + (yy - .5) ** 2 / .16) < 1).astype(np.float32)
  return {
      "image": rng.uniform(0, 1, (batch, frames, size, size, 3)).astype(np.float32),
      "landmarks": np.broadcast_to(lmk, (batch, frames, 68, 2)).astype(np.float32),
      "mask": np.broadcast_to(mask, (batch, frames, size, size)).astype(np.float32),
  }


def _encoder_only(config, method_name, state, images, landmarks, mask):
  """jitted fwd+bwd of the method's encoder alone (BatchNorm in training mode)."""
  if method_name == "gan3dmm":
    net, _ = gan3dmm.networks(config, gan3dmm.layout(config).size)
    name = gan3dmm.GENERATOR
    inputs = images
  else:
    net = mlfl_ga.encoder_for(config, gan3dmm.load_model(config.morphable.model))
    name = mlfl_ga.ENCODER
    inputs = mlfl_ga.encoder_input(config, images, landmarks, mask)

  @jax.jit
  def fwd_bwd(params, stats, x):
    def loss(p):
      out, _ = net.apply({"params": p, "batch_stats": stats}, x, train=True,
                         mutable=["batch_stats"])
      return sum(jnp.mean(jnp.square(v)) for v in jax.tree.leaves(out))
    return jax.grad(loss)(params)

  return lambda: fwd_bwd(state.params[name], state.batch_stats[name], inputs)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--method", default="gan3dmm", choices=sorted(methods.METHODS))
  parser.add_argument("--batch", type=int, default=8, help="images per step (B x T)")
  parser.add_argument("--size", type=int, default=224)
  parser.add_argument("--backbone", default="resnet50")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--no-identity", action="store_true",
                      help="leave the identity loss out (its recognition net is big on CPU)")
  args = parser.parse_args()

  config = importlib.import_module(f"configs.{args.method}").get_config()
  config.input.image_size = args.size
  config.model.backbone = args.backbone
  frames = config.input.frames
  if args.batch % frames:
    raise SystemExit(f"--batch {args.batch} must be a multiple of the method's "
                     f"{frames} frames per sample")
  config.train.batch_size = args.batch // frames
  if args.no_identity:
    config.loss_weights.identity = 0.0
  config.loss_weights.supervised = 0.0
  method = methods.get(args.method)
  model = gan3dmm.load_model(config.morphable.model)
  topology = render.make_topology(model.triangles)

  host = _batch(config, args.batch // frames, args.size)
  mesh = parallel.make_mesh(1)
  state = method.init_state(config, jax.random.key(0))
  step = parallel.parallel_step(method.make_train_step(config, model, topology),
                                parallelism="shard_map", mesh=mesh, donate=False)
  placed_state = parallel.place_state(state, parallelism="shard_map", mesh=mesh)
  placed_batch = parallel.shard_batch(host, parallelism="shard_map", mesh=mesh)
  rng = jax.random.key(1)
  step_s = _seconds(lambda: step(placed_state, placed_batch, rng), args.repeats)

  images, landmarks, mask = (jnp.asarray(x) for x in gan3dmm.merge_frames(host))
  encoder_s = _seconds(_encoder_only(config, args.method, state, images, landmarks, mask),
                       args.repeats)

  # The renderer alone: forward + backward of the image the method's losses see.
  blocks = method.predict(config, state, images, landmarks, mask)
  camera_fn = method.camera

  @jax.jit
  def render_fwd_bwd(blocks):
    def image_sum(b):
      vertices = morphable.decode(model, b["shape"], b["expression"])
      out = render.render(vertices, topology, camera_fn(config, b, (args.size, args.size)),
                          albedo=morphable.albedo(model, b["albedo"]), light=b["light"],
                          edge_antialias=config.render.edge_antialias,
                          on_overflow=config.render.on_overflow)
      return jnp.mean(out.image)
    return jax.grad(image_sum)(blocks)

  render_s = _seconds(lambda: render_fwd_bwd(blocks), args.repeats)

  n = args.batch
  figures = {
      "method": args.method, "backbone": args.backbone, "image_size": args.size,
      "images_per_step": n, "device": jax.devices()[0].device_kind,
      "loss_weights": {k: v for k, v in config.loss_weights.items() if v},
      "train_step_ms": 1e3 * step_s, "train_step_images_per_s": n / step_s,
      "encoder_fwd_bwd_ms": 1e3 * encoder_s, "encoder_fwd_bwd_images_per_s": n / encoder_s,
      "render_fwd_bwd_ms": 1e3 * render_s,
      "step_fraction_of_encoder_throughput": encoder_s / step_s,
      "render_share_of_step": render_s / step_s,
      "non_encoder_share_of_step": max(0.0, step_s - encoder_s) / step_s,
  }
  print(f"{args.method} train step, {args.backbone} at {args.size} px, {n} images per step, "
        f"{figures['device']}; losses {figures['loss_weights']}")
  rows = [("train step", step_s), ("encoder fwd+bwd only", encoder_s),
          ("render fwd+bwd only", render_s)]
  print(f"{'part':<24}{'ms/step':>10}{'images/s':>10}")
  for name, seconds in rows:
    print(f"{name:<24}{1e3 * seconds:>10.1f}{n / seconds:>10.1f}")
  print(f"step throughput / encoder-only throughput: "
        f"{figures['step_fraction_of_encoder_throughput']:.2f} (target >= 0.60)")
  print(f"renderer share of the step: {figures['render_share_of_step']:.2f}; everything "
        f"but the encoder: {figures['non_encoder_share_of_step']:.2f}")
  print(json.dumps(figures))


if __name__ == "__main__":
  main()
