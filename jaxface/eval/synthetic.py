"""NoW-style error on synthetic data with known meshes (the layout `jaxface synth` writes).

Ground truth folder (one split of `jaxface synth --eval-layout`):
  frames.json                     {"frames": [{"image": "images/00003_01.png",
                                    "identity": "00003", "tags": ["expression", ...]}]}
  ground_truth/<identity>.npz     neutral_vertices float32 [V, 3] mm, triangles int32
                                  [F, 3], landmarks_3d float32 [68, 3] mm (iBUG order),
                                  landmarks_2d float32 [T, 68, 2] image pixels (optional)
Predictions:
  single image:   <pred>/<image stem>_neutral.obj + <image stem>_lmk68.txt
  --multi-frame:  <pred>/<identity>/identity_neutral.obj + identity_lmk68.txt
  optional, per frame: <image stem>_params.json (beside them) with
    "landmarks_68_photo_px": {"detected", "fitted"} -> 2D landmark NME of both
Baselines (`baseline=`, no prediction files): the model's mean face, and the model-span
oracle (the ground truth projected onto the identity basis).

The ground-truth neutral mesh plays the scan: it is cropped by the NoW sphere of its own
7 landmarks (from the 68), the prediction is aligned to it exactly as in NoW
(`now.now_align`), and the error is reported both non-metrical and metrical. Groups:
"all", "neutral" (frames without tags) and one per tag; with --multi-frame, one
prediction per identity, reported under "all" only (its frames mix tags).
"""

import dataclasses
import json
import pathlib
import time

import numpy as np

from jaxface import morphable
from jaxface.errors import JaxfaceError
from jaxface.eval import mesh_files, now, proximity
from jaxface.eval.report import Report, statistics

VARIANTS = ("non_metrical", "metrical")
BASELINES = ("mean_face", "oracle")


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


@dataclasses.dataclass(frozen=True)
class GroundTruth:
  """One identity's ground truth (`ground_truth/<identity>.npz`).

  Attributes:
    vertices: [V, 3] neutral mesh, mm (identity + out-of-span detail).
    triangles: [F, 3] int.
    lmk7: [7, 3] NoW landmarks of the neutral mesh, mm.
    landmarks_2d: [T, 68, 2] each frame's projected landmarks, image pixels; None in
      ground truth written before they were stored.
  """
  vertices: np.ndarray
  triangles: np.ndarray
  lmk7: np.ndarray
  landmarks_2d: np.ndarray | None


def read_ground_truth(path) -> GroundTruth:
  """One identity's `GroundTruth` from its `.npz` (validated)."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise JaxfaceError(f"{path}: no such file (ground truth of a listed identity)")
  try:
    with np.load(path, allow_pickle=False) as data:
      vertices = np.asarray(data["neutral_vertices"], np.float64)
      triangles = np.asarray(data["triangles"])
      landmarks = np.asarray(data["landmarks_3d"], np.float64)
      landmarks_2d = (np.asarray(data["landmarks_2d"], np.float64)
                      if "landmarks_2d" in data.files else None)
  except KeyError as e:
    raise JaxfaceError(f"{path}: missing array {e}") from None
  except (ValueError, OSError, EOFError) as e:
    raise JaxfaceError(f"{path}: not a readable .npz ({e})") from None
  proximity.check_mesh(vertices, triangles, name=str(path))
  if landmarks.shape != (68, 3):
    raise JaxfaceError(f"{path}: landmarks_3d must be 68x3, got {landmarks.shape}")
  if landmarks_2d is not None and landmarks_2d.shape[1:] != (68, 2):
    raise JaxfaceError(f"{path}: landmarks_2d must be Tx68x2, got {landmarks_2d.shape}")
  return GroundTruth(vertices, triangles, mesh_files.now_landmarks(landmarks), landmarks_2d)


def baseline_mesh(model: morphable.MorphableModel, kind: str, truth: np.ndarray) -> np.ndarray:
  """[V, 3] baseline prediction (mm) for a ground-truth neutral mesh `truth` [V, 3].

  "mean_face": the model's mean, whatever the truth (what a fit that learns nothing
  returns). "oracle": the least-squares projection of the truth onto mean + span of the
  identity basis, vertex by vertex (the best any fit of the model's identity can do).
  """
  mean = np.asarray(model.mean, np.float64)
  if truth.shape != mean.shape:
    raise JaxfaceError(f"the ground truth has {truth.shape[0]} vertices, the model "
                       f"{model.name} {mean.shape[0]}: baselines need the model that made "
                       "the data (--model)")
  if kind == "mean_face":
    return mean
  if kind == "oracle":
    basis = np.asarray(model.shape_basis, np.float64).reshape(-1, model.num_shape)
    coefficients = np.linalg.lstsq(basis, (truth - mean).ravel(), rcond=None)[0]
    return mean + (basis @ coefficients).reshape(mean.shape)
  raise JaxfaceError(f"unknown baseline {kind!r} (one of {', '.join(BASELINES)})")


def landmark_nme(predicted: np.ndarray, truth: np.ndarray) -> float:
  """Mean 68-landmark error [68, 2] vs [68, 2] in % of sqrt(w h) of the truth's box."""
  extent = truth.max(0) - truth.min(0)
  return float(100 * np.linalg.norm(predicted - truth, axis=-1).mean()
               / max(np.sqrt(extent[0] * extent[1]), 1e-9))


def _prediction_paths(pred_dir: pathlib.Path, key: str, multi_frame: bool):
  if multi_frame:
    return pred_dir / key / "identity_neutral.obj", pred_dir / key / "identity_lmk68.txt"
  return pred_dir / f"{key}_neutral.obj", pred_dir / f"{key}_lmk68.txt"


def _read_photo_landmarks(path: pathlib.Path) -> dict | None:
  """{"detected", "fitted"} [68, 2] photo pixels from a `<stem>_params.json`; None if absent."""
  if not path.is_file():
    return None
  try:
    points = json.loads(path.read_text(encoding="utf-8"))["landmarks_68_photo_px"]
    out = {k: np.asarray(points[k], np.float64) for k in ("detected", "fitted")}
  except (ValueError, KeyError, TypeError) as e:
    raise JaxfaceError(f"{path}: no readable landmarks_68_photo_px ({type(e).__name__}: {e})"
                       ) from None
  if any(v.shape != (68, 2) for v in out.values()):
    raise JaxfaceError(f"{path}: landmarks_68_photo_px must hold 68 x 2 points")
  return out


def evaluate_synthetic(pred_dir, gt_dir, *, multi_frame: bool = False, pred_unit: str = "mm",
                       refine_points: int | None = now.REFINE_POINTS,
                       baseline: str | None = None,
                       model: morphable.MorphableModel | None = None, log=None) -> Report:
  """NoW-style errors (non-metrical and metrical) of predictions on synthetic data.

  Args:
    pred_dir: predictions (module docstring); None with `baseline`.
    gt_dir: the ground-truth folder.
    multi_frame: one prediction per identity instead of one per image.
    pred_unit: unit of the predicted meshes ("mm", "cm", "m").
    refine_points: scan points used by the alignment refinement (None: all).
    baseline: "mean_face" or "oracle" (`baseline_mesh` of `model`) instead of files;
      scored per image like predictions (each identity is aligned once).
    model: the face model that made the data (baselines only).
    log: called with one progress line per prediction.
  Returns:
    A `Report` with results {"non_metrical": {...}, "metrical": {...}} per group and, where
    predictions carry `<stem>_params.json` and the ground truth its 2D landmarks,
    {"landmark_nme_fitted", "landmark_nme_detected"} per group (% of sqrt(w h) of each
    frame's ground-truth landmark box).
  """
  gt_dir = pathlib.Path(gt_dir)
  if baseline is None:
    pred_dir = pathlib.Path(pred_dir)
    if not pred_dir.is_dir():
      raise JaxfaceError(f"{pred_dir}: no such folder (the predictions)")
  elif model is None:
    raise JaxfaceError("a baseline needs the face model that made the data")
  if pred_unit not in now.UNITS_MM:
    raise JaxfaceError(f"unknown prediction unit {pred_unit!r} (mm, cm or m)")
  frames = read_frames(gt_dir)
  log = log or (lambda line: None)
  for f in frames:
    f["stem"] = pathlib.PurePosixPath(f["image"]).stem
    f["groups"] = ["all", *(f["tags"] or ["neutral"])]
  counts = {}  # frames so far per identity: f["frame"] indexes its landmarks_2d
  for f in frames:
    f["frame"] = counts.get(f["identity"], 0)
    counts[f["identity"]] = f["frame"] + 1
  if multi_frame:
    jobs = [(identity, identity, ["all"], [f for f in frames if f["identity"] == identity])
            for identity in sorted(counts)]
  else:
    jobs = [(f["stem"], f["identity"], f["groups"], [f]) for f in frames]
  pooled = {v: {} for v in VARIANTS}
  nme = {"landmark_nme_fitted": {}, "landmark_nme_detected": {}}
  rows, failures, gt_cache, aligned = [], [], {}, {}
  for index, (key, identity, groups, job_frames) in enumerate(jobs, 1):
    if identity not in gt_cache:
      gt_cache.clear()
      gt_cache[identity] = read_ground_truth(gt_dir / "ground_truth" / f"{identity}.npz")
    truth = gt_cache[identity]
    start = time.perf_counter()
    if baseline is not None:
      source = f"{baseline} baseline"
      if identity not in aligned:  # the same mesh for every frame: align once
        aligned.clear()
        vertices = baseline_mesh(model, baseline, truth.vertices)
        lmk = mesh_files.now_landmarks(np.asarray(morphable.landmarks_3d(model, vertices)))
        aligned[identity] = _align_both(vertices, truth.triangles, lmk, truth, pred_unit,
                                        refine_points, source)
      results = aligned[identity]
    else:
      mesh_path, lmk_path = _prediction_paths(pred_dir, key, multi_frame)
      missing = [p.name for p in (mesh_path, lmk_path) if not p.exists()]
      if missing:
        reason = f"no prediction ({' and '.join(missing)} missing)"
        failures.append({"item": key, "reason": reason})
        log(f"[{index}/{len(jobs)}] {key}: FAILED {reason}")
        continue
      source = str(mesh_path)
      vertices, triangles, lmk = now.read_prediction(mesh_path, lmk_path)
      results = _align_both(vertices, triangles, lmk, truth, pred_unit, refine_points, source)
    row = {"item": key, "identity": identity, "groups": groups[1:], "prediction": source}
    for variant in VARIANTS:
      for group in groups:
        pooled[variant].setdefault(group, []).append(results[variant].distances)
      row[variant] = {**statistics(results[variant].distances),
                      "scale": results[variant].transform.scale}
    if baseline is None and truth.landmarks_2d is not None:
      folder = pred_dir / key if multi_frame else pred_dir
      for f in job_frames:
        points = _read_photo_landmarks(folder / f"{f['stem']}_params.json")
        if points is None or f["frame"] >= len(truth.landmarks_2d):
          continue
        for kind in ("fitted", "detected"):
          value = landmark_nme(points[kind], truth.landmarks_2d[f["frame"]])
          row.setdefault(f"landmark_nme_{kind}", []).append(value)
          for group in f["groups"]:
            nme[f"landmark_nme_{kind}"].setdefault(group, []).append(value)
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
  for metric, groups in nme.items():
    if groups:
      results[metric] = {g: statistics(groups[g]) for g in
                         ["all"] + sorted(g for g in groups if g != "all")}
  mode = "one prediction per identity" if multi_frame else "one prediction per image"
  what = f"the {baseline} baseline of {model.name}" if baseline else f"prediction unit {pred_unit}"
  return Report(
      protocol="synthetic", unit="mm (landmark NME: %)", results=results, items=rows,
      failures=failures,
      title=(f"Synthetic ground truth ({mode}, {what}): NoW-style scan-to-mesh distance, "
             "non-metrical and metrical"),
      curves=curves, curve_label="scan-to-mesh error [mm]", curve_max=8.0,
      settings={"multi_frame": multi_frame, "prediction_unit": pred_unit,
                "crop_radius_factor": now.CROP_RADIUS_FACTOR, "refine_points": refine_points,
                "baseline": baseline, "expected": len(jobs)})


def _align_both(vertices, triangles, lmk, truth: GroundTruth, pred_unit: str,
                refine_points, source: str) -> dict:
  """{variant: `now.NowResult`} of one prediction against one identity's ground truth."""
  mesh = proximity.MeshProximity(vertices, triangles, name=source)
  out = {}
  for variant in VARIANTS:
    try:
      out[variant] = now.now_align(vertices, triangles, lmk, truth.vertices, truth.lmk7,
                                   metrical=variant == "metrical", mesh=mesh,
                                   pred_unit_mm=now.UNITS_MM[pred_unit],
                                   refine_points=refine_points)
    except JaxfaceError as e:
      raise JaxfaceError(f"{source} vs ground truth: {e}") from None
  return out
