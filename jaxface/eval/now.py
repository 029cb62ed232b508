"""The NoW benchmark protocol (Sanyal et al. 2019): scan-to-mesh error after alignment.

Verified against the official evaluation code (github.com/soubhiksanyal/now_evaluation:
`scan2mesh_computations.py`, `scan2mesh_computations_metrical.py`, `compute_error.py`,
`cumulative_errors.py`), read, not copied:

- Landmarks: 7 per mesh, in the order right outer eye, right inner eye, left inner eye,
  left outer eye, nose bottom, right and left mouth corner (iBUG-68 indices 36, 39, 42,
  45, 33, 48, 54). Scan landmarks are the first 7 `<point>`s of the `.pp` file;
  predictions give a 7x3 `.npy` (a leading axis of 1 allowed) or `.txt`.
- Crop (`compute_mask`): only the ground-truth scan is cropped, by its own landmarks:
  centre = nose_bottom + 0.3 (mean of the inner eye corners - nose_bottom); radius =
  1.4 (|outer eye - outer eye| + |inner-eye midpoint - nose_bottom|) / 2 (the code keeps
  1.2 commented out; 1.4 is in force); scan vertices with distance <= radius are kept.
- Alignment: the prediction is moved onto the scan. First a Procrustes similarity from
  the predicted landmarks to the scan landmarks (`procrustes(X=scan, Y=pred,
  scaling=True)`); then a refinement of scale s, rotation R and translation t applied
  to the predicted mesh, minimising sum over cropped scan vertices of their squared
  unsigned distance to the transformed surface (`ScanToMesh(..., signed=False,
  normalize=False)` with the identity robustifier, i.e. plain least squares), plus a
  penalty 100 (|s| - s) that only forbids a negative scale.
- Error: the unsigned distance of every cropped scan vertex to the closest point on the
  aligned predicted surface, in mm (scans are in mm). Statistics are pooled over all
  distances of all images: median, mean, std (`cumulative_errors.py`); a challenge's
  figures pool its images. Missing predictions are counted, not scored.
- Metrical variant: the same Procrustes gives the rotation and translation, but the
  predicted vertices are multiplied by a unit factor (mm 1, cm 10, m 1000; the
  official default unit is m) instead of the estimated scale, and the refinement
  optimises rotation and translation only.

Deviations, and why:
- The refinement uses Levenberg-Marquardt steps on the same objective (see
  `alignment.refine`) instead of chumpy's dogleg solver: chumpy is unmaintained and
  needs the compiled `sbody` mesh-distance extension. It stops when a step lowers the
  objective by less than 1e-6 of it (or after 30 steps). The penalty on negative scale
  is unnecessary because the scale is parameterised as exp(log-scale).
- The refinement uses a fixed random subset of `refine_points` cropped scan vertices
  (20k by default, seeded); the reported distances are exact, for every cropped vertex,
  at the refined alignment. On a 100k-point scan this changed the median by 0.0003 mm
  (`benchmarks/eval_bench.py` measures it) and keeps one prediction under 2 s (0.9 s
  instead of 2.4 s on a 2-core CPU).
- Procrustes never reflects (det R = +1); the official `reflection='best'` could
  return a mirror image for badly placed landmarks, which no face reconstruction is.
- Metrical: the translation is re-solved for the fixed unit scale (the official code
  keeps the translation computed for the estimated scale and lets the refinement move
  it); both start the same rigid refinement, ours from the better initial point.
"""

import dataclasses
import pathlib
import time

import numpy as np

from jaxface.errors import JaxfaceError
from jaxface.eval import alignment, mesh_files, proximity
from jaxface.eval.report import Report, statistics

CHALLENGES = ("multiview_neutral", "multiview_expressions", "multiview_occlusions", "selfie")
CROP_RADIUS_FACTOR = 1.4
CROP_CENTRE_FRACTION = 0.3
UNITS_MM = {"mm": 1.0, "cm": 10.0, "m": 1000.0}
REFINE_POINTS = 20000


def crop_sphere(landmarks7) -> tuple[np.ndarray, float]:
  """The NoW face sphere of a scan.

  Args:
    landmarks7: [7, 3] the scan's NoW landmarks (mm).
  Returns:
    (centre [3] mm, radius mm).
  """
  lmk = np.asarray(landmarks7, np.float64)
  if lmk.shape != (7, 3):
    raise JaxfaceError(f"NoW crop needs 7x3 landmarks, got {lmk.shape}")
  nose_bottom = lmk[4]
  nose_bridge = (lmk[1] + lmk[2]) / 2.0  # between the inner eye corners
  centre = nose_bottom + CROP_CENTRE_FRACTION * (nose_bridge - nose_bottom)
  outer_eye = np.linalg.norm(lmk[0] - lmk[3])
  nose = np.linalg.norm(nose_bridge - nose_bottom)
  return centre, float(CROP_RADIUS_FACTOR * (outer_eye + nose) / 2.0)


def crop_indices(scan_vertices, landmarks7) -> np.ndarray:
  """[N] indices of the scan vertices inside the NoW sphere (distance <= radius)."""
  centre, radius = crop_sphere(landmarks7)
  distance = np.linalg.norm(np.asarray(scan_vertices, np.float64) - centre, axis=1)
  return np.flatnonzero(distance <= radius)


@dataclasses.dataclass(frozen=True)
class NowResult:
  """One prediction scored against one scan.

  Attributes:
    distances: [N] mm, unsigned distance of each cropped scan vertex to the aligned
      predicted surface.
    kept: [N] indices of the cropped scan vertices.
    transform: prediction -> scan similarity (scale includes the unit factor).
    refine: what the refinement did (`alignment.RefineInfo`).
  """
  distances: np.ndarray
  kept: np.ndarray
  transform: alignment.Similarity
  refine: alignment.RefineInfo


def now_align(pred_vertices, pred_triangles, pred_lmk7, scan_vertices, scan_lmk7, *,
              metrical: bool = False, pred_unit_mm: float = 1.0,
              refine_points: int | None = REFINE_POINTS, seed: int = 0,
              mesh: proximity.MeshProximity | None = None) -> NowResult:
  """Crops the scan, aligns the prediction to it and measures scan-to-mesh distances.

  Args:
    pred_vertices: [V, 3] predicted mesh, any frame; mm unless `pred_unit_mm` says.
    pred_triangles: [F, 3] int.
    pred_lmk7: [7, 3] the prediction's NoW landmarks, same frame and unit.
    scan_vertices: [S, 3] ground-truth scan, mm.
    scan_lmk7: [7, 3] the scan's NoW landmarks, mm.
    metrical: no scale: the prediction keeps its size (x `pred_unit_mm`), only rotation
      and translation are estimated.
    pred_unit_mm: millimetres per prediction unit (1 for mm, 10 for cm, 1000 for m);
      used by the metrical variant (the non-metrical one estimates the scale).
    refine_points: scan points the refinement uses (a fixed random subset); None: all.
    seed: the subset's seed.
    mesh: a prebuilt `MeshProximity` of the prediction (reused across scans).
  Returns:
    A `NowResult`.
  """
  scan_vertices = np.asarray(scan_vertices, np.float64)
  if scan_vertices.ndim != 2 or scan_vertices.shape[1] != 3:
    raise JaxfaceError(f"scan: expected [S, 3] vertices, got {scan_vertices.shape}")
  kept = crop_indices(scan_vertices, scan_lmk7)
  if len(kept) == 0:
    raise JaxfaceError("no scan vertex lies inside the NoW crop sphere of its landmarks")
  points = scan_vertices[kept]
  mesh = mesh or proximity.MeshProximity(pred_vertices, pred_triangles, name="prediction")
  pred_lmk7 = np.asarray(pred_lmk7, np.float64)
  if pred_lmk7.shape != (7, 3) or not np.all(np.isfinite(pred_lmk7)):
    raise JaxfaceError(f"prediction landmarks: expected finite 7x3, got {pred_lmk7.shape}")
  transform = alignment.umeyama(pred_lmk7, np.asarray(scan_lmk7, np.float64),
                                scale=pred_unit_mm if metrical else None)
  subset = points
  if refine_points is not None and len(points) > refine_points:
    pick = np.random.default_rng(seed).choice(len(points), refine_points, replace=False)
    subset = points[np.sort(pick)]
  transform, info = alignment.refine(mesh, transform, subset, estimate_scale=not metrical,
                                     residual="surface")
  distances = transform.scale * mesh.query(transform.inverse_apply(points)).distances
  return NowResult(distances, kept, transform, info)


def now_distances(pred_vertices, pred_triangles, pred_lmk7, scan_vertices, scan_lmk7, *,
                  metrical: bool = False, pred_unit_mm: float = 1.0,
                  refine_points: int | None = REFINE_POINTS, seed: int = 0) -> np.ndarray:
  """NoW errors of one prediction: [N] mm, one per scan vertex inside the NoW sphere.

  Arrays in, distances out (no files); see `now_align` for the arguments. The median of
  the result is one image's NoW error; a benchmark pools all images' arrays.
  """
  return now_align(pred_vertices, pred_triangles, pred_lmk7, scan_vertices, scan_lmk7,
                   metrical=metrical, pred_unit_mm=pred_unit_mm,
                   refine_points=refine_points, seed=seed).distances


# --- The NoW validation layout -------------------------------------------------------

IMAGE_LISTS = ("imagepathsvalidation.txt",)
_NESTED = pathlib.Path("NoW_Dataset") / "final_release_version"


@dataclasses.dataclass(frozen=True)
class NowItem:
  """One line of the image list: `<subject>/<challenge>/<image>.jpg`."""
  subject: str
  challenge: str
  stem: str

  @property
  def name(self) -> str:
    return f"{self.subject}/{self.challenge}/{self.stem}"


def _first_existing(candidates):
  return next((c for c in candidates if c.exists()), None)


def dataset_paths(gt_dir) -> tuple[pathlib.Path, pathlib.Path, pathlib.Path]:
  """(image list, scans folder, scan landmark folder) of a NoW dataset folder.

  Accepts the official evaluation layout (`imagepathsvalidation.txt`, `scans/`,
  `scans_lmks_onlypp/` side by side) and the same files under
  `NoW_Dataset/final_release_version/`.
  """
  gt_dir = pathlib.Path(gt_dir)
  if not gt_dir.is_dir():
    raise JaxfaceError(f"{gt_dir}: no such folder (the NoW dataset folder)")
  roots = [gt_dir, gt_dir / _NESTED]
  image_list = _first_existing([r / n for r in roots for n in IMAGE_LISTS])
  scans = _first_existing([r / "scans" for r in roots])
  landmarks = _first_existing([r / "scans_lmks_onlypp" for r in roots])
  for found, what in ((image_list, "imagepathsvalidation.txt"), (scans, "scans/"),
                      (landmarks, "scans_lmks_onlypp/")):
    if found is None:
      raise JaxfaceError(f"{gt_dir}: not a NoW dataset folder (no {what} in it or in {_NESTED})")
  return image_list, scans, landmarks


def read_image_list(path) -> list[NowItem]:
  """The items of a NoW image list (one `<subject>/<challenge>/<image>` per line)."""
  path = pathlib.Path(path)
  items = []
  for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
    line = line.strip()
    if not line:
      continue
    parts = line.replace("\\", "/").split("/")
    if len(parts) < 3:
      raise JaxfaceError(f"{path}:{lineno}: expected <subject>/<challenge>/<image>, got {line!r}")
    items.append(NowItem(parts[-3], parts[-2], pathlib.PurePosixPath(parts[-1]).stem))
  if not items:
    raise JaxfaceError(f"{path}: the image list is empty")
  return items


def scan_files(scans: pathlib.Path, landmarks: pathlib.Path, subject: str):
  """(scan .obj, landmark .pp) of a subject: the first of each, sorted, as the official code."""
  objs = sorted((scans / subject).glob("*.obj"))
  pps = sorted((landmarks / subject).glob("*.pp"))
  if not objs:
    raise JaxfaceError(f"{scans / subject}: no scan .obj for subject {subject}")
  if not pps:
    raise JaxfaceError(f"{landmarks / subject}: no landmark .pp for subject {subject}")
  return objs[0], pps[0]


def find_prediction(folder: pathlib.Path, stem: str):
  """(mesh path, landmark path) of one prediction in `folder`, or (None, reason).

  Layouts: the official `<stem>.obj|.ply` + `<stem>.npy|.txt` (7x3, or 68x3), else
  `jaxface reconstruct`'s `<stem>_neutral.obj` + `<stem>_lmk68.txt`.
  """
  official_lmk = _first_existing([folder / f"{stem}.npy", folder / f"{stem}.txt"])
  official_mesh = _first_existing([folder / f"{stem}.obj", folder / f"{stem}.ply"])
  if official_lmk is not None and official_mesh is not None:
    return official_mesh, official_lmk
  ours_mesh, ours_lmk = folder / f"{stem}_neutral.obj", folder / f"{stem}_lmk68.txt"
  if ours_mesh.exists() and ours_lmk.exists():
    return ours_mesh, ours_lmk
  if official_mesh is not None:
    return None, f"{official_mesh.name} has no landmarks ({stem}.npy or {stem}.txt)"
  if ours_mesh.exists():
    return None, f"{ours_mesh.name} has no landmarks ({stem}_lmk68.txt)"
  return None, f"no prediction ({stem}.obj/.ply + .npy/.txt, or {stem}_neutral.obj + _lmk68.txt)"


def read_prediction(mesh_path, lmk_path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(vertices [V, 3], triangles [F, 3], NoW landmarks [7, 3]) of a prediction's files."""
  vertices, triangles = mesh_files.read_mesh(mesh_path)
  proximity.check_mesh(vertices, triangles, name=str(mesh_path))
  return vertices, triangles, mesh_files.read_now_landmarks(lmk_path)


def _log_line(index: int, total: int, name: str, distances: np.ndarray, seconds: float) -> str:
  return (f"[{index}/{total}] {name}: median {np.median(distances):.3f} mm, mean "
          f"{np.mean(distances):.3f} mm ({len(distances)} points, {seconds:.1f} s)")


def evaluate_now(pred_dir, gt_dir, *, metrical: bool = False, pred_unit: str = "mm",
                 refine_points: int | None = REFINE_POINTS, log=None) -> Report:
  """Runs the NoW protocol over a prediction folder against the NoW validation data.

  Args:
    pred_dir: `<subject>/<challenge>/<stem>.obj` + `.npy|.txt` (official), or
      `<stem>_neutral.obj` + `<stem>_lmk68.txt` (`jaxface reconstruct`) in the same folders.
    gt_dir: the NoW dataset folder (see `dataset_paths`).
    metrical: the metrical variant (no scale estimation).
    pred_unit: unit of the predicted meshes: "mm", "cm" or "m".
    refine_points: scan points used by the refinement (None: all).
    log: called with one progress line per image (e.g. printing to stderr).
  Returns:
    A `Report`: pooled median/mean/std per challenge and overall, per-image figures,
    failures for predictions that are missing or lack landmarks.
  """
  pred_dir = pathlib.Path(pred_dir)
  if not pred_dir.is_dir():
    raise JaxfaceError(f"{pred_dir}: no such folder (the predictions)")
  if pred_unit not in UNITS_MM:
    raise JaxfaceError(f"unknown prediction unit {pred_unit!r} (mm, cm or m)")
  image_list, scans, scan_landmarks = dataset_paths(gt_dir)
  items = read_image_list(image_list)
  log = log or (lambda line: None)
  variant = "metrical" if metrical else "non_metrical"
  per_group = {"all": []}
  rows, failures, scan_cache = [], [], {}
  for index, item in enumerate(sorted(items, key=lambda i: (i.subject, i.challenge, i.stem)), 1):
    mesh_path, lmk_path = find_prediction(pred_dir / item.subject / item.challenge, item.stem)
    if mesh_path is None:
      failures.append({"item": item.name, "reason": lmk_path})
      log(f"[{index}/{len(items)}] {item.name}: FAILED {lmk_path}")
      continue
    if item.subject not in scan_cache:
      scan_cache.clear()  # items are sorted by subject: one scan in memory at a time
      obj, pp = scan_files(scans, scan_landmarks, item.subject)
      scan_cache[item.subject] = (mesh_files.read_mesh(obj)[0],
                                  mesh_files.read_landmarks(pp, counts=(7,)), obj)
    scan, scan_lmk, obj = scan_cache[item.subject]
    start = time.perf_counter()
    vertices, triangles, lmk = read_prediction(mesh_path, lmk_path)
    try:
      result = now_align(vertices, triangles, lmk, scan, scan_lmk, metrical=metrical,
                         pred_unit_mm=UNITS_MM[pred_unit], refine_points=refine_points)
    except JaxfaceError as e:
      raise JaxfaceError(f"{mesh_path} vs {obj}: {e}") from None
    seconds = time.perf_counter() - start
    for group in ("all", item.challenge):
      per_group.setdefault(group, []).append(result.distances)
    rows.append({"item": item.name, "subject": item.subject, "challenge": item.challenge,
                 "prediction": str(mesh_path), "landmarks": str(lmk_path), "scan": str(obj),
                 **statistics(result.distances), "scale": result.transform.scale,
                 "refine_iterations": result.refine.iterations,
                 "refine_rms_before": result.refine.initial_rms,
                 "refine_rms_after": result.refine.final_rms, "seconds": seconds})
    log(_log_line(index, len(items), item.name, result.distances, seconds))
  order = ["all"] + [c for c in CHALLENGES if c in per_group] + sorted(
      g for g in per_group if g != "all" and g not in CHALLENGES)
  pooled = {g: np.concatenate(per_group[g]) if per_group[g] else np.zeros(0) for g in order}
  title = (f"NoW ({variant.replace('_', '-')}, prediction unit {pred_unit}): scan-to-mesh "
           "distance of cropped scan vertices, pooled over images")
  return Report(
      protocol="now", title=title, unit="mm",
      results={variant: {g: statistics(pooled[g]) for g in order}},
      items=rows, failures=failures,
      curves={g: pooled[g] for g in order}, curve_label="scan-to-mesh error [mm]",
      curve_max=8.0,
      settings={"variant": variant, "prediction_unit": pred_unit,
                "crop_radius_factor": CROP_RADIUS_FACTOR,
                "crop_centre_fraction": CROP_CENTRE_FRACTION,
                "refine_points": refine_points, "image_list": str(image_list),
                "expected": len(items)})
