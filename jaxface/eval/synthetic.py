"""NoW-style error on synthetic data with known meshes (the layout `jaxface synth` writes).

Ground truth folder (one split of `jaxface synth --eval-layout`):
  frames.json                     {"frames": [{"image": "images/00003_01.png",
                                    "identity": "00003", "tags": ["expression", ...]}]}
  ground_truth/<identity>.npz     neutral_vertices float32 [V, 3] mm, triangles int32
                                  [F, 3], landmarks_3d float32 [68, 3] mm (iBUG order)
Predictions:
  single image:   <pred>/<image stem>_neutral.obj + <image stem>_lmk68.txt
  --multi-frame:  <pred>/<identity>/identity_neutral.obj + identity_lmk68.txt

The ground-truth neutral mesh plays the scan: it is cropped by the NoW sphere of its own
7 landmarks (from the 68), the prediction is aligned to it exactly as in NoW
(`now.now_align`), and the error is reported both non-metrical and metrical. Groups:
"all", "neutral" (frames without tags) and one per tag; with --multi-frame, one
prediction per identity, reported under "all" only (its frames mix tags).
"""

import json
import pathlib
import time

import numpy as np

from jaxface.errors import JaxfaceError
from jaxface.eval import mesh_files, now, proximity
from jaxface.eval.report import Report, statistics

VARIANTS = ("non_metrical", "metrical")


def read_frames(gt_dir) -> list[dict]:
  """The frames of `frames.json`: [{"image", "identity", "tags"}] (validated)."""
  path = pathlib.Path(gt_dir) / "frames.json"
  if not path.is_file():
    raise JaxfaceError(f"{path}: no such file (not a synthetic ground-truth folder)")
  try:
    frames = json.loads(path.read_text(encoding="utf-8"))["frames"]
    checked = [{"image": str(f["image"]), "identity": str(f["identity"]),
                "tags": [str(t) for t in f.get("tags", [])]} for f in frames]
  except (ValueError, KeyError, TypeError) as e:
    raise JaxfaceError(f"{path}: expected {{\"frames\": [{{\"image\", \"identity\", "
                       f"\"tags\"}}]}} ({type(e).__name__}: {e})") from None
  if not checked:
    raise JaxfaceError(f"{path}: no frames")
  return checked


def read_ground_truth(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(neutral vertices [V, 3] mm, triangles [F, 3], NoW landmarks [7, 3] mm) of one identity."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise JaxfaceError(f"{path}: no such file (ground truth of a listed identity)")
  try:
    with np.load(path, allow_pickle=False) as data:
      vertices = np.asarray(data["neutral_vertices"], np.float64)
      triangles = np.asarray(data["triangles"])
      landmarks = np.asarray(data["landmarks_3d"], np.float64)
  except KeyError as e:
    raise JaxfaceError(f"{path}: missing array {e}") from None
  except (ValueError, OSError, EOFError) as e:
    raise JaxfaceError(f"{path}: not a readable .npz ({e})") from None
  proximity.check_mesh(vertices, triangles, name=str(path))
  if landmarks.shape != (68, 3):
    raise JaxfaceError(f"{path}: landmarks_3d must be 68x3, got {landmarks.shape}")
  return vertices, triangles, mesh_files.now_landmarks(landmarks)


def _prediction_paths(pred_dir: pathlib.Path, key: str, multi_frame: bool):
  if multi_frame:
    return pred_dir / key / "identity_neutral.obj", pred_dir / key / "identity_lmk68.txt"
  return pred_dir / f"{key}_neutral.obj", pred_dir / f"{key}_lmk68.txt"


def evaluate_synthetic(pred_dir, gt_dir, *, multi_frame: bool = False, pred_unit: str = "mm",
                       refine_points: int | None = now.REFINE_POINTS, log=None) -> Report:
  """NoW-style errors (non-metrical and metrical) of predictions on synthetic data.

  Args:
    pred_dir: predictions (module docstring). gt_dir: the ground-truth folder.
    multi_frame: one prediction per identity instead of one per image.
    pred_unit: unit of the predicted meshes ("mm", "cm", "m").
    refine_points: scan points used by the alignment refinement (None: all).
    log: called with one progress line per prediction.
  Returns:
    A `Report` with results {"non_metrical": {...}, "metrical": {...}} per group.
  """
  pred_dir, gt_dir = pathlib.Path(pred_dir), pathlib.Path(gt_dir)
  if not pred_dir.is_dir():
    raise JaxfaceError(f"{pred_dir}: no such folder (the predictions)")
  if pred_unit not in now.UNITS_MM:
    raise JaxfaceError(f"unknown prediction unit {pred_unit!r} (mm, cm or m)")
  frames = read_frames(gt_dir)
  log = log or (lambda line: None)
  if multi_frame:
    jobs = [(identity, identity, ["all"]) for identity in sorted({f["identity"] for f in frames})]
  else:
    jobs = [(pathlib.PurePosixPath(f["image"]).stem, f["identity"],
             ["all", *(f["tags"] or ["neutral"])]) for f in frames]
  pooled = {v: {} for v in VARIANTS}
  rows, failures, gt_cache = [], [], {}
  for index, (key, identity, groups) in enumerate(jobs, 1):
    mesh_path, lmk_path = _prediction_paths(pred_dir, key, multi_frame)
    missing = [p.name for p in (mesh_path, lmk_path) if not p.exists()]
    if missing:
      reason = f"no prediction ({' and '.join(missing)} missing)"
      failures.append({"item": key, "reason": reason})
      log(f"[{index}/{len(jobs)}] {key}: FAILED {reason}")
      continue
    if identity not in gt_cache:
      gt_cache.clear()
      gt_cache[identity] = read_ground_truth(gt_dir / "ground_truth" / f"{identity}.npz")
    gt_vertices, _, gt_lmk = gt_cache[identity]
    start = time.perf_counter()
    vertices, triangles, lmk = now.read_prediction(mesh_path, lmk_path)
    mesh = proximity.MeshProximity(vertices, triangles, name=str(mesh_path))
    row = {"item": key, "identity": identity, "groups": groups[1:], "prediction": str(mesh_path)}
    for variant in VARIANTS:
      try:
        result = now.now_align(vertices, triangles, lmk, gt_vertices, gt_lmk,
                               metrical=variant == "metrical", mesh=mesh,
                               pred_unit_mm=now.UNITS_MM[pred_unit], refine_points=refine_points)
      except JaxfaceError as e:
        raise JaxfaceError(f"{mesh_path} vs ground truth {identity}: {e}") from None
      for group in groups:
        pooled[variant].setdefault(group, []).append(result.distances)
      row[variant] = {**statistics(result.distances), "scale": result.transform.scale}
    row["seconds"] = time.perf_counter() - start
    rows.append(row)
    log(f"[{index}/{len(jobs)}] {key}: median {row['non_metrical']['median']:.3f} mm "
        f"(metrical {row['metrical']['median']:.3f} mm, {row['seconds']:.1f} s)")
  results, curves = {}, {}
  for variant in VARIANTS:
    order = ["all"] + sorted(g for g in pooled[variant] if g != "all")
    arrays = {g: np.concatenate(pooled[variant].get(g, [np.zeros(0)])) for g in order}
    results[variant] = {g: statistics(arrays[g]) for g in order}
    for g in (order if variant == "non_metrical" else ["all"]):
      curves[f"{variant.replace('_', '-')}: {g}"] = arrays[g]
  mode = "one prediction per identity" if multi_frame else "one prediction per image"
  return Report(
      protocol="synthetic", unit="mm", results=results, items=rows, failures=failures,
      title=(f"Synthetic ground truth ({mode}, prediction unit {pred_unit}): NoW-style "
             "scan-to-mesh distance, non-metrical and metrical"),
      curves=curves, curve_label="scan-to-mesh error [mm]", curve_max=8.0,
      settings={"multi_frame": multi_frame, "prediction_unit": pred_unit,
                "crop_radius_factor": now.CROP_RADIUS_FACTOR, "refine_points": refine_points,
                "expected": len(jobs)})
