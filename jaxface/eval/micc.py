"""The MICC Florence protocol (Genova et al. 2018, as used by Deng et al. 2019).

Per subject and video setting (Indoor-Cooperative, PTZ-Indoor, PTZ-Outdoor): the
predicted shapes of the video's frames are pooled into one mesh, the ground-truth scan
is cropped to 95 mm around its nose tip, the prediction is aligned to the crop by ICP
with isotropic scale, and the error is the point-to-plane RMSE (mm) of the cropped scan
vertices against the aligned prediction. Reported: mean +- std over subjects, per setting.

Ground truth (`--gt`: the `Florence` folder of the MICC download):
  subject_XX/Model/frontal1/obj/<timestamp>.obj   the scan (3dMD, mm); frontal2 is used
                                                  when frontal1 is absent
  subject_XX/Video/<setting>.<ext>               which settings the subject has (all
                                                  three if the Video folder is absent)
Predictions (`--pred`), per subject folder `subject_XX/`, one of, per setting:
  <setting>.obj [+ <setting>_lmk68.txt]        one mesh per video (already pooled)
  <setting>/identity_neutral.obj [+ identity_lmk68.txt]   `jaxface reconstruct
                                                  --multi-frame` over the video's frames
  <setting>/<frame>_neutral.obj [+ _lmk68.txt]  `jaxface reconstruct` per frame, or
  <setting>/<frame>.obj                          any per-frame meshes of one topology
Per-frame meshes are averaged vertex by vertex. For a linear face model (BFM, or FLAME's
neutral shape) the average of decoded meshes equals the mesh decoded from the average
coefficients, so this is also the protocol's coefficient averaging (Tran et al. 2017).

Choices where the papers are silent (the MICC scans ship without landmarks):
- Nose tip of the scan: the vertex with the largest z (the frontal scans face +z with
  +y up, as renderers of the dataset assume). Nose tip of the prediction: landmark 30
  of its iBUG-68 file when given, else its largest-z vertex (jaxface meshes face +z).
- ICP starts from the nose tips matched (no rotation, scale = the prediction unit) and
  minimises the squared point-to-plane distances it reports (`alignment.refine` with
  residual "plane", on `refine_points` scan points), moving the prediction.
"""

import dataclasses
import pathlib
import time

import numpy as np

from jaxface.errors import JaxfaceError
from jaxface.eval import alignment, mesh_files, proximity
from jaxface.eval.now import REFINE_POINTS, UNITS_MM
from jaxface.eval.report import Report, statistics

SETTINGS = ("Indoor-Cooperative", "PTZ-Indoor", "PTZ-Outdoor")
CROP_RADIUS_MM = 95.0
NOSE_TIP_FROM_68 = 30


def nose_tip(vertices) -> np.ndarray:
  """[3] the most +z vertex of a frontal face mesh (y up, z towards the viewer)."""
  vertices = np.asarray(vertices, np.float64)
  return vertices[np.argmax(vertices[:, 2])]


@dataclasses.dataclass(frozen=True)
class MiccResult:
  """One pooled prediction scored against one scan.

  Attributes:
    rmse: point-to-plane RMSE, mm.
    distances: [N] mm, |n . (p - c)| of each cropped scan vertex p, c its closest point
      on the aligned prediction and n that triangle's unit normal.
    kept: [N] indices of the cropped scan vertices.
    transform: prediction -> scan similarity. refine: the ICP's `RefineInfo`.
  """
  rmse: float
  distances: np.ndarray
  kept: np.ndarray
  transform: alignment.Similarity
  refine: alignment.RefineInfo


def micc_rmse(pred_vertices, pred_triangles, scan_vertices, *, pred_nose_tip=None,
              scan_nose_tip=None, pred_unit_mm: float = 1.0,
              crop_radius: float = CROP_RADIUS_MM,
              refine_points: int | None = REFINE_POINTS, seed: int = 0) -> MiccResult:
  """Crops the scan around its nose tip, aligns the prediction by ICP, measures RMSE.

  Args:
    pred_vertices: [V, 3] predicted mesh (y up, z towards the viewer), prediction units.
    pred_triangles: [F, 3] int.
    scan_vertices: [S, 3] ground-truth scan, mm, frontal (y up, z towards the viewer).
    pred_nose_tip, scan_nose_tip: [3] nose tips; default: the most +z vertex.
    pred_unit_mm: millimetres per prediction unit (the ICP's starting scale).
    crop_radius: scan vertices within this distance of the scan's nose tip count (mm).
    refine_points: scan points used by the ICP (a fixed random subset); None: all.
    seed: the subset's seed.
  Returns:
    A `MiccResult`.
  """
  scan_vertices = np.asarray(scan_vertices, np.float64)
  mesh = proximity.MeshProximity(pred_vertices, pred_triangles, name="prediction")
  scan_tip = nose_tip(scan_vertices) if scan_nose_tip is None else np.asarray(scan_nose_tip)
  pred_tip = nose_tip(mesh.vertices) if pred_nose_tip is None else np.asarray(pred_nose_tip)
  kept = np.flatnonzero(np.linalg.norm(scan_vertices - scan_tip, axis=1) <= crop_radius)
  if len(kept) < 3:
    raise JaxfaceError(f"fewer than 3 scan vertices within {crop_radius:g} mm of the nose tip")
  points = scan_vertices[kept]
  transform = alignment.Similarity(float(pred_unit_mm), np.eye(3),
                                   scan_tip - pred_unit_mm * np.asarray(pred_tip, np.float64))
  subset = points
  if refine_points is not None and len(points) > refine_points:
    pick = np.random.default_rng(seed).choice(len(points), refine_points, replace=False)
    subset = points[np.sort(pick)]
  transform, info = alignment.refine(mesh, transform, subset, estimate_scale=True,
                                     residual="plane")
  found = mesh.query(transform.inverse_apply(points))
  normals = mesh.face_normals[found.triangles] @ transform.rotation.T
  distances = np.abs(np.sum(normals * (points - transform.apply(found.points)), axis=1))
  return MiccResult(float(np.sqrt(np.mean(distances ** 2))), distances, kept, transform, info)


# --- The MICC Florence layout -----------------------------------------------------------

def scan_path(subject_dir: pathlib.Path):
  """The subject's frontal scan: the first `Model/frontal1/obj/*.obj`, else frontal2."""
  for name in ("frontal1", "frontal2"):
    objs = sorted((subject_dir / "Model" / name / "obj").glob("*.obj"))
    if objs:
      return objs[0]
  return None


def subject_settings(subject_dir: pathlib.Path) -> list[str]:
  """The settings with a video in `Video/` (all three when there is no Video folder)."""
  video = subject_dir / "Video"
  if not video.is_dir():
    return list(SETTINGS)
  stems = {p.stem for p in video.iterdir()}
  return [s for s in SETTINGS if s in stems]


def _sibling_landmarks(mesh_path: pathlib.Path):
  """`<x>_lmk68.txt` for `<x>.obj` / `<x>_neutral.obj`, if it exists."""
  stem = mesh_path.stem.removesuffix("_neutral")
  path = mesh_path.with_name(f"{stem}_lmk68.txt")
  return path if path.exists() else None


def prediction_files(subject_pred: pathlib.Path, setting: str):
  """([mesh paths], [landmark paths or None]) of one video's prediction, or ([], reason)."""
  single = subject_pred / f"{setting}.obj"
  if single.exists():
    return [single], [_sibling_landmarks(single)]
  folder = subject_pred / setting
  identity = folder / "identity_neutral.obj"
  if identity.exists():
    return [identity], [_sibling_landmarks(identity)]
  if folder.is_dir():
    frames = sorted(folder.glob("*_neutral.obj")) or sorted(folder.glob("*.obj"))
    if frames:
      return frames, [_sibling_landmarks(p) for p in frames]
  return [], (f"no prediction ({setting}.obj, {setting}/identity_neutral.obj or "
              f"{setting}/*.obj)")


def pooled_prediction(meshes, landmarks):
  """(vertices [V, 3], triangles [F, 3], nose tip [3] or None): the frames' average."""
  total, triangles, tips = None, None, []
  for path, lmk_path in zip(meshes, landmarks):
    vertices, faces = mesh_files.read_mesh(path)
    proximity.check_mesh(vertices, faces, name=str(path))
    if total is None:
      total, triangles = np.zeros_like(vertices), faces
    elif faces.shape != triangles.shape or not np.array_equal(faces, triangles):
      raise JaxfaceError(f"{path}: topology differs from {meshes[0].name} (per-video "
                         "averaging needs one topology)")
    total += vertices
    if lmk_path is not None:
      tips.append(mesh_files.read_landmarks(lmk_path, counts=(68,))[NOSE_TIP_FROM_68])
  tip = np.mean(tips, axis=0) if len(tips) == len(meshes) else None
  return total / len(meshes), triangles, tip


def evaluate_micc(pred_dir, gt_dir, *, pred_unit: str = "mm",
                  refine_points: int | None = REFINE_POINTS, log=None) -> Report:
  """Runs the MICC Florence protocol.

  Args:
    pred_dir: predictions (module docstring). gt_dir: the MICC `Florence` folder.
    pred_unit: unit of the predicted meshes ("mm", "cm", "m").
    refine_points: scan points used by ICP (None: all).
    log: called with one progress line per (subject, setting).
  Returns:
    A `Report`: point-to-plane RMSE mean and std over subjects per setting.
  """
  pred_dir, gt_dir = pathlib.Path(pred_dir), pathlib.Path(gt_dir)
  if not pred_dir.is_dir():
    raise JaxfaceError(f"{pred_dir}: no such folder (the predictions)")
  if not gt_dir.is_dir():
    raise JaxfaceError(f"{gt_dir}: no such folder (the MICC Florence folder)")
  if pred_unit not in UNITS_MM:
    raise JaxfaceError(f"unknown prediction unit {pred_unit!r} (mm, cm or m)")
  subjects = [(d, scan_path(d)) for d in sorted(gt_dir.glob("subject_*")) if d.is_dir()]
  subjects = [(d, s) for d, s in subjects if s is not None]
  if not subjects:
    raise JaxfaceError(f"{gt_dir}: no subject_XX/Model/frontal1/obj/*.obj (not the MICC "
                       "Florence folder)")
  jobs = [(d, scan, setting) for d, scan in subjects for setting in subject_settings(d)]
  log = log or (lambda line: None)
  per_setting = {s: [] for s in SETTINGS}
  rows, failures = [], []
  scan_cache = {}
  for index, (subject_dir, scan_file, setting) in enumerate(jobs, 1):
    name = f"{subject_dir.name}/{setting}"
    meshes, lmks = prediction_files(pred_dir / subject_dir.name, setting)
    if not meshes:
      failures.append({"item": name, "reason": lmks})
      log(f"[{index}/{len(jobs)}] {name}: FAILED {lmks}")
      continue
    if scan_file not in scan_cache:
      scan_cache.clear()
      scan_cache[scan_file] = mesh_files.read_mesh(scan_file)[0]
    start = time.perf_counter()
    vertices, triangles, tip = pooled_prediction(meshes, lmks)
    try:
      result = micc_rmse(vertices, triangles, scan_cache[scan_file], pred_nose_tip=tip,
                         pred_unit_mm=UNITS_MM[pred_unit], refine_points=refine_points)
    except JaxfaceError as e:
      raise JaxfaceError(f"{meshes[0]} vs {scan_file}: {e}") from None
    seconds = time.perf_counter() - start
    per_setting[setting].append(result.rmse)
    rows.append({"item": name, "subject": subject_dir.name, "setting": setting,
                 "scan": str(scan_file), "frames": len(meshes), "rmse": result.rmse,
                 "points": len(result.distances), "scale": result.transform.scale,
                 "icp_iterations": result.refine.iterations, "seconds": seconds})
    log(f"[{index}/{len(jobs)}] {name}: point-to-plane RMSE {result.rmse:.3f} mm "
        f"({len(meshes)} frame{'s' if len(meshes) > 1 else ''}, {seconds:.1f} s)")
  results = {"point_to_plane_rmse": {s: statistics(per_setting[s], median=False)
                                     for s in SETTINGS}}
  return Report(
      protocol="micc", unit="mm", results=results, items=rows, failures=failures,
      title=(f"MICC Florence (prediction unit {pred_unit}): point-to-plane RMSE per "
             f"subject after ICP with scale, {CROP_RADIUS_MM:.0f} mm crop; mean and std "
             "over subjects"),
      curves={s: np.asarray(per_setting[s]) for s in SETTINGS}, curve_max=4.0,
      curve_label="point-to-plane RMSE per subject [mm]",
      settings={"crop_radius_mm": CROP_RADIUS_MM, "prediction_unit": pred_unit,
                "refine_points": refine_points, "expected": len(jobs)})
