"""AFLW2000-3D 68-landmark NME, as 3DDFA's benchmark computes it (Zhu et al. 2016).

Verified against cleardusk/3DDFA `benchmark_aflw2000.py` (read, not copied): per image,
NME = mean over the 68 landmarks of the 2D Euclidean error, divided by sqrt(w h) of the
bounding box of the ground-truth landmarks' x, y; images are binned by |yaw| in degrees:
[0, 30], (30, 60], (60, 90] (3DDFA puts everything above 60 in the last bin); reported
in percent: each bin's mean, and the mean of the three bin means (the headline figure;
3DDFA's "std" is the std of the three bin means, given here too).

Ground truth (`--gt`: the flat `AFLW2000` folder): `imageXXXXX.jpg` + `imageXXXXX.mat`
with `pt3d_68` [3, 68] (x, y in image pixels, z) and `Pose_Para` [1, 7] = pitch, yaw,
roll (radians), tx, ty, tz, scale. Predictions (`--pred`): `imageXXXXX.txt` or `.npy`,
68 x 2 or 68 x 3 landmarks (x, y used) in the original image's pixels, in the same
convention as `pt3d_68` (no 0/1-based shift is applied, as in 3DDFA).
"""

import pathlib

import numpy as np

from jaxface.errors import JaxfaceError
from jaxface.eval import mesh_files
from jaxface.eval.report import Report, statistics

YAW_BINS = (("0-30", 0.0, 30.0), ("30-60", 30.0, 60.0), ("60-90", 60.0, np.inf))


def nme(pred_landmarks, gt_landmarks) -> np.ndarray:
  """Normalised mean error per image (a fraction; x100 for percent).

  Args:
    pred_landmarks: [..., 68, 2+] predicted landmarks, pixels (x, y used).
    gt_landmarks: [..., 68, 2+] ground truth, pixels (x, y used).
  Returns:
    [...] mean 2D error / sqrt(width * height of the ground-truth landmark box).
  """
  pred = np.asarray(pred_landmarks, np.float64)[..., :2]
  gt = np.asarray(gt_landmarks, np.float64)[..., :2]
  extent = gt.max(axis=-2) - gt.min(axis=-2)
  size = np.sqrt(extent[..., 0] * extent[..., 1])
  return np.linalg.norm(pred - gt, axis=-1).mean(axis=-1) / size


def yaw_bin(yaw_degrees: float) -> str:
  """The bin name of |yaw| (degrees)."""
  magnitude = abs(float(yaw_degrees))
  return next(name for name, low, high in YAW_BINS
              if (low == 0.0 and magnitude <= high) or low < magnitude <= high)


def read_annotation(path) -> tuple[np.ndarray, float]:
  """(landmarks [68, 3] (x, y pixels, z), yaw in degrees) of one AFLW2000-3D `.mat`."""
  import scipy.io  # pylint: disable=import-outside-toplevel
  path = pathlib.Path(path)
  try:
    data = scipy.io.loadmat(str(path), variable_names=["pt3d_68", "Pose_Para"])
    points = np.asarray(data["pt3d_68"], np.float64)
    pose = np.asarray(data["Pose_Para"], np.float64).ravel()
  except KeyError as e:
    raise JaxfaceError(f"{path}: missing variable {e}") from None
  except Exception as e:  # noqa: BLE001  (any reader failure is the file's fault)
    raise JaxfaceError(f"{path}: not a readable MATLAB file ({type(e).__name__})") from None
  if points.shape != (3, 68) or pose.size < 2:
    raise JaxfaceError(f"{path}: expected pt3d_68 3x68 and Pose_Para 1x7, got "
                       f"{points.shape} and {pose.shape}")
  if not np.all(np.isfinite(points)) or not np.isfinite(pose[1]):
    raise JaxfaceError(f"{path}: NaN or infinity in pt3d_68 or Pose_Para")
  return points.T, float(np.degrees(pose[1]))


def _prediction(pred_dir: pathlib.Path, stem: str):
  return next((p for p in (pred_dir / f"{stem}.txt", pred_dir / f"{stem}.npy") if p.exists()),
              None)


def evaluate_aflw2000(pred_dir, gt_dir, *, log=None) -> Report:
  """68-landmark NME on AFLW2000-3D, per yaw bin and their mean.

  Args:
    pred_dir: `imageXXXXX.txt|.npy` 68x2 or 68x3 pixel landmarks.
    gt_dir: the AFLW2000 folder (`imageXXXXX.mat` files).
    log: called with progress lines.
  Returns:
    A `Report` with results {"nme_percent": {bin: stats, "mean_of_bins": ...}}.
  """
  pred_dir, gt_dir = pathlib.Path(pred_dir), pathlib.Path(gt_dir)
  if not pred_dir.is_dir():
    raise JaxfaceError(f"{pred_dir}: no such folder (the predictions)")
  if not gt_dir.is_dir():
    raise JaxfaceError(f"{gt_dir}: no such folder (the AFLW2000 folder)")
  annotations = sorted(gt_dir.glob("image*.mat"))
  if not annotations:
    raise JaxfaceError(f"{gt_dir}: no imageXXXXX.mat files (not the AFLW2000 folder)")
  log = log or (lambda line: None)
  per_bin = {name: [] for name, _, _ in YAW_BINS}
  rows, failures = [], []
  for index, mat in enumerate(annotations, 1):
    path = _prediction(pred_dir, mat.stem)
    if path is None:
      failures.append({"item": mat.stem, "reason": f"no prediction ({mat.stem}.txt or .npy)"})
      continue
    gt, yaw = read_annotation(mat)
    pred = mesh_files.read_landmarks(path, dims=2, counts=(68,))
    error = 100.0 * float(nme(pred, gt))
    group = yaw_bin(yaw)
    per_bin[group].append(error)
    rows.append({"item": mat.stem, "yaw_degrees": yaw, "yaw_bin": group, "nme_percent": error,
                 "prediction": str(path)})
    if index % 200 == 0 or index == len(annotations):
      log(f"[{index}/{len(annotations)}] images read; {len(failures)} without prediction")
  results = {name: statistics(values) for name, values in per_bin.items()}
  means = [results[name]["mean"] for name, _, _ in YAW_BINS if results[name]["count"]]
  results["mean_of_bins"] = {
      "count": len(rows), "mean": float(np.mean(means)) if means else None,
      "std": float(np.std(means)) if means else None}
  return Report(
      protocol="aflw2000", unit="% (NME: mean 2D error / sqrt(w*h) of the GT landmark box)",
      title="AFLW2000-3D: 68-landmark NME per |yaw| bin (degrees) and the mean of the bins",
      results={"nme_percent": results}, items=rows, failures=failures,
      curves={name: np.asarray(v) for name, v in per_bin.items()},
      curve_label="NME [%]", curve_max=10.0,
      settings={"yaw_bins_degrees": [[lo, min(hi, 90.0)] for _, lo, hi in YAW_BINS],
                "expected": len(annotations)})
