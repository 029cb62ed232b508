"""NoW evaluation speed: one prediction against a 100k-vertex scan, both variants.

Run: python benchmarks/eval_bench.py [--scan-vertices 100000] [--repeats 3] [--trimesh]
Prediction: the default BFM-sim full model's mean face (53215 vertices, 98134 triangles),
in its own frame. Scan: another identity of the same model (seeded random shape), posed
by an arbitrary similarity, with `--scan-vertices` points sampled on its surface inside
its NoW crop sphere (so every scan vertex is scored) plus 0.2 mm noise. Timed per call
of `now_align` (AABB build, landmark Procrustes, refinement on a 20k-point subset, exact
distances for every point), non-metrical and metrical; also the refinement on all points
(what the subset changes), the parts, reading the scan as OBJ, and (with --trimesh, needs
rtree) trimesh's closest-point query for the same, aligned, points. Prints a table, then one JSON
line with the same figures (wall seconds, and CPU seconds of the two main calls, which
other processes on the machine disturb less).
"""

import argparse
import json
import os
import pathlib
import tempfile
import time

import numpy as np
import trimesh

from jaxface import morphable
from jaxface.eval import alignment, mesh_files, now, proximity


def _best_of(fn, repeats, cpu=None):
  """(median wall seconds, last result) over `repeats` calls; CPU seconds into `cpu`."""
  times, cpu_times, result = [], [], None
  for _ in range(repeats):
    start, start_cpu = time.perf_counter(), time.process_time()
    result = fn()
    times.append(time.perf_counter() - start)
    cpu_times.append(time.process_time() - start_cpu)
  if cpu is not None:
    cpu.append(float(np.median(cpu_times)))
  return float(np.median(times)), result


def make_case(scan_vertices: int, seed: int = 0):
  """(pred vertices, triangles, pred lmk7, scan vertices, scan lmk7), mm."""
  model = morphable.default_model("full")
  rng = np.random.default_rng(seed)
  triangles = np.asarray(model.triangles, np.int64)
  pred = np.asarray(model.mean, np.float64)
  pred_lmk = mesh_files.now_landmarks(np.asarray(morphable.landmarks_3d(model, model.mean)))
  shape = rng.normal(size=model.num_shape).astype(np.float32)
  truth = np.asarray(morphable.decode(model, shape, np.zeros(model.num_expression, np.float32)),
                     np.float64)
  truth_lmk = mesh_files.now_landmarks(np.asarray(morphable.landmarks_3d(model, truth)))
  centre, radius = now.crop_sphere(truth_lmk)
  inside = np.linalg.norm(truth[triangles].mean(1) - centre, axis=1) < radius * 0.98
  surface = trimesh.Trimesh(truth, triangles[inside], process=False)
  points, _ = trimesh.sample.sample_surface(surface, scan_vertices, seed=seed)
  points = points + rng.normal(scale=0.2, size=points.shape)
  pose = alignment.Similarity(1.0, trimesh.transformations.random_rotation_matrix(
      rng.random(3))[:3, :3], rng.uniform(-300, 300, 3))
  return pred, triangles, pred_lmk, pose.apply(points), pose.apply(truth_lmk)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--scan-vertices", type=int, default=100_000)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--trimesh", action="store_true",
                      help="also time trimesh.proximity.closest_point (needs rtree)")
  args = parser.parse_args()
  pred, triangles, pred_lmk, scan, scan_lmk = make_case(args.scan_vertices)
  common = (pred, triangles, pred_lmk, scan, scan_lmk)
  results = {"pred_vertices": len(pred), "pred_triangles": len(triangles),
             "scan_vertices": len(scan)}
  rows = []
  for variant, metrical in (("nonmetrical", False), ("metrical", True)):
    cpu = []
    seconds, result = _best_of(lambda m=metrical: now.now_align(*common, metrical=m),
                               args.repeats, cpu)
    results[f"now_{variant}_seconds"] = round(seconds, 3)
    results[f"now_{variant}_cpu_seconds"] = round(cpu[0], 3)
    results[f"now_{variant}_median_mm"] = round(float(np.median(result.distances)), 4)
    results[f"now_{variant}_refine_iterations"] = result.refine.iterations
    rows.append((f"now_align {variant} (20k-point refinement)", seconds,
                 (f"{cpu[0]:.3f} CPU s, median {np.median(result.distances):.4f} mm, "
                  f"{result.refine.iterations} iterations, {len(result.kept)} scan points")))
  results["cropped_scan_vertices"] = len(result.kept)
  seconds, full = _best_of(lambda: now.now_align(*common, refine_points=None), 1)
  change = abs(float(np.median(full.distances)) - results["now_nonmetrical_median_mm"])
  results["now_nonmetrical_all_points_refine_seconds"] = round(seconds, 3)
  results["median_change_subset_vs_all_points_mm"] = round(change, 5)
  rows.append(("now_align nonmetrical, refinement on all points", seconds,
               f"median {np.median(full.distances):.4f} mm (subset changes it by {change:.5f})"))
  aligned = full.transform.inverse_apply(scan)  # the scan in the prediction's frame, aligned
  build, mesh = _best_of(lambda: proximity.MeshProximity(pred, triangles), args.repeats)
  query, _ = _best_of(lambda: mesh.query(aligned), args.repeats)
  results["aabb_build_seconds"], results["exact_distances_seconds"] = round(build, 3), round(query, 3)
  rows += [("AABB tree build (prediction)", build, "libigl"),
           (f"exact closest points, {len(scan)} points", query, "libigl AABB")]
  with tempfile.TemporaryDirectory() as tmp:
    path = pathlib.Path(tmp) / "scan.obj"
    faces = np.arange(len(scan) - len(scan) % 3).reshape(-1, 3)  # a face list of the right size
    path.write_text("\n".join([f"v {x:.5f} {y:.5f} {z:.5f}" for x, y, z in scan] +
                              [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]) + "\n")
    read, _ = _best_of(lambda: mesh_files.read_mesh(path), args.repeats)
  results["obj_read_scan_seconds"] = round(read, 3)
  rows.append(("read the scan as OBJ", read, f"{len(scan)} vertices, {len(faces)} faces"))
  if args.trimesh:
    reference = trimesh.Trimesh(pred, triangles, process=False)
    seconds, _ = _best_of(lambda: trimesh.proximity.closest_point(reference, aligned), 1)
    results["trimesh_closest_point_seconds"] = round(seconds, 3)
    rows.append(("trimesh proximity.closest_point (rtree)", seconds, "reference"))
  print(f"prediction {len(pred)} vertices / {len(triangles)} triangles; scan {len(scan)} vertices; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (wall times grow with it)")
  results["load_average_1min"] = round(os.getloadavg()[0], 2)
  print(f"{'step':<50} {'seconds':>8}  notes")
  for name, seconds, note in rows:
    print(f"{name:<50} {seconds:>8.3f}  {note}")
  print(json.dumps(results))


if __name__ == "__main__":
  main()
