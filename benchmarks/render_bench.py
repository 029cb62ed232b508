"""Renderer speed: visibility, forward and forward+backward per image, vs Embree rays.

Run: python benchmarks/render_bench.py [--batch 8] [--size 224] [--repeats 5]
Meshes: the default BFM-sim full and front models and a ~10k-triangle sphere, posed
over yaw -50..50 degrees, perspective camera (f = 1015 px, 1 m). The reference is
trimesh + embreex ray casting of the same visibility (one ray per pixel centre),
timed in the same run. Prints a table, then one JSON line with the same figures.
"""

import argparse
import json
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np
import trimesh

from jaxface import morphable
from jaxface import render


def _sphere(rings=36, segments=72, radius=90.0):
  """A ~10k-triangle UV sphere of face size (outward winding)."""
  mesh = trimesh.creation.uv_sphere(radius=radius, count=[rings, segments])
  return np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int32)


def _seconds(fn, repeats):
  jax.block_until_ready(fn())  # compile and warm up
  start = time.perf_counter()
  for _ in range(repeats):
    jax.block_until_ready(fn())
  return (time.perf_counter() - start) / repeats


def _ray_cast_seconds(vertices, triangles, rotation, size, focal, distance):
  """Embree time per image for the visibility of each posed mesh."""
  cols, rows = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
  directions = np.stack([(cols - size / 2) / focal, -(rows - size / 2) / focal,
                         -np.ones_like(cols)], -1).reshape(-1, 3)
  origins = np.tile([0.0, 0.0, distance], (directions.shape[0], 1))
  total = 0.0
  for r in rotation:
    mesh = trimesh.Trimesh(vertices @ r.T, triangles, process=False)
    mesh.ray.intersects_id(origins[:10], directions[:10])  # build the BVH outside the timing
    start = time.perf_counter()
    mesh.ray.intersects_id(origins, directions, multiple_hits=False)
    total += time.perf_counter() - start
  return total / len(rotation)


def _peak_bytes(compiled) -> int:
  analysis = compiled.memory_analysis()
  if analysis is None:
    return -1
  return int(analysis.temp_size_in_bytes + analysis.argument_size_in_bytes
             + analysis.output_size_in_bytes)


def bench_mesh(name, vertices, triangles, albedo, args):
  batch, size, focal, distance = args.batch, args.size, 1015.0, 1000.0
  yaw = np.deg2rad(np.linspace(-50, 50, batch))
  angles = jnp.asarray(np.stack([0.1 * np.sin(3 * yaw), yaw, 0.05 * np.cos(yaw)], -1), jnp.float32)
  rotation = render.euler_to_matrix(angles)
  camera = render.perspective_camera(rotation, jnp.zeros((batch, 3)), focal=focal,
                                     distance=distance, image_size=(size, size))
  topology = render.make_topology(triangles)
  points = jnp.broadcast_to(jnp.asarray(vertices), (batch,) + vertices.shape)
  light = jnp.broadcast_to(render.ambient_sh(0.7).at[2].set(0.4), (batch, 9, 3))
  colours = jnp.asarray(albedo)

  visibility = jax.jit(lambda p: render.rasterize(
      *render.project(camera, p), topology.triangles, image_size=(size, size)).triangle_id)
  forward = jax.jit(lambda p, l: render.render(p, topology, camera, albedo=colours, light=l))
  backward = jax.jit(jax.grad(lambda p, l: jnp.mean(
      render.render(p, topology, camera, albedo=colours, light=l).image), argnums=(0, 1)))
  t_vis = _seconds(lambda: visibility(points), args.repeats)
  t_fwd = _seconds(lambda: forward(points, light).image, args.repeats)
  t_bwd = _seconds(lambda: backward(points, light), args.repeats)
  overflow = int(forward(points, light).fragments.overflow.sum())
  peak = _peak_bytes(backward.lower(points, light).compile())
  t_ray = _ray_cast_seconds(np.asarray(vertices, np.float64), np.asarray(triangles),
                            np.asarray(rotation, np.float64), size, focal, distance)
  ms = lambda t: 1e3 * t / batch
  row = {"triangles": int(triangles.shape[0]), "visibility_ms_per_image": round(ms(t_vis), 2),
         "fwd_ms_per_image": round(ms(t_fwd), 2), "fwd_bwd_ms_per_image": round(ms(t_bwd), 2),
         "fwd_bwd_peak_mb": round(peak / 2**20, 1), "overflow": overflow,
         "embree_ms_per_image": round(1e3 * t_ray, 2),
         "visibility_vs_embree": round(ms(t_vis) / (1e3 * t_ray), 2)}
  print(f"{name:<7} {row['triangles']:>9} {row['visibility_ms_per_image']:>9.1f} "
        f"{row['fwd_ms_per_image']:>8.1f} {row['fwd_bwd_ms_per_image']:>9.1f} "
        f"{row['fwd_bwd_peak_mb']:>9.1f} {overflow:>8} {row['embree_ms_per_image']:>9.1f} "
        f"{row['visibility_vs_embree']:>7.2f}", flush=True)
  return {f"{name}_{k}": v for k, v in row.items()}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--size", type=int, default=224)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  device = jax.devices()[0]
  results = {"device": f"{device.platform}:{device.device_kind}", "batch": args.batch,
             "size": args.size}
  print(f"device {results['device']}, batch {args.batch}, {args.size}x{args.size}; ms per image")
  print(f"{'mesh':<7} {'triangles':>9} {'visible':>9} {'fwd':>8} {'fwd+bwd':>9} "
        f"{'peak MB':>9} {'overflow':>8} {'embree':>9} {'ratio':>7}")
  for variant in ("full", "front"):
    model = morphable.default_model(variant)
    results.update(bench_mesh(variant, np.asarray(model.mean), np.asarray(model.triangles),
                              np.asarray(model.albedo_mean), args))
  vertices, triangles = _sphere()
  results.update(bench_mesh("sphere", vertices, triangles,
                            np.full_like(vertices, 0.6), args))
  results["host_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
  print(json.dumps(results))


if __name__ == "__main__":
  main()
