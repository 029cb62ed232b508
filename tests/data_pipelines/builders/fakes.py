"""Tiny fake manual downloads for the builder tests: images, corrupt files, annotations.

Images are small JPEGs written with PIL: a dark background, optionally with a white
3x3 dot centred on a pixel, so a test can find where a known point went. Face
annotations are written in `jaxface prepare`'s own output format (`PreparedFolder`)
with landmarks chosen by the test, so the builders read them through the real
`jaxface.preprocess.prepare` reader.
"""

import importlib
import io
import json
import pathlib

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from jaxface.preprocess import mask as mask_lib

prepare_lib = importlib.import_module("jaxface.preprocess.prepare")
from tests.morphable import fake_models


def write_jpeg(path: pathlib.Path, size=(96, 96), dot=None, seed: int = 0,
               quality: int = 95) -> pathlib.Path:
  """Writes a size=(width, height) JPEG: dark noise, and a white 3x3 dot at pixel `dot`.

  Args:
    dot: (column, row) of the dot's centre pixel, or None.
  """
  rng = np.random.default_rng(seed)
  width, height = size
  pixels = rng.integers(10, 40, (height, width, 3)).astype(np.uint8)
  if dot is not None:
    col, row = dot
    pixels[row - 1:row + 2, col - 1:col + 2] = 255
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(pixels).save(path, quality=quality)
  return path


def write_corrupt_jpeg(path: pathlib.Path, size=(96, 96)) -> pathlib.Path:
  """A JPEG cut off after its first 200 bytes (header intact, data truncated)."""
  buffer = io.BytesIO()
  Image.fromarray(np.full((size[1], size[0], 3), 90, np.uint8)).save(buffer, format="JPEG")
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(buffer.getvalue()[:200])
  return path


def face_landmarks(centre=(48.0, 50.0), scale: float = 0.5, roll_deg: float = 0.0
                   ) -> np.ndarray:
  """[68, 2] iBUG landmarks of the fake head's face layout in image pixels.

  Args:
    centre: pixel position of the landmark layout's origin (the nose tip, point 30).
    scale: pixels per mm.
    roll_deg: in-plane rotation, degrees.
  """
  angle = np.deg2rad(roll_deg)
  rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
  xy = fake_models.LANDMARK_XY * np.array([1.0, -1.0])  # y down in images
  return (xy @ rotation.T) * scale + np.asarray(centre)


class PreparedFolder:
  """Writes a `jaxface prepare` output folder (manifest + one chunk) for chosen annotations.

  The layout is the one `jaxface.preprocess.prepare` documents and reads back with
  `load_annotations` / `load_failures`; the landmarks are chosen by the test instead of
  detected, so tests know where every point is.
  """

  def __init__(self, image_dir: pathlib.Path, out_dir: pathlib.Path):
    self.image_dir, self.out_dir = image_dir, out_dir
    self.rows: dict[str, dict] = {}

  def face(self, key: str, landmarks: np.ndarray, width: int, height: int) -> None:
    """Records a face: [68, 2] landmarks in pixels of the (width, height) image `key`."""
    landmarks = np.asarray(landmarks, np.float32)
    self.rows[key] = {
        "ok": True, "reason": "", "detector": "hog", "score": 1.0,
        "box": np.concatenate([landmarks.min(0), landmarks.max(0)]).astype(np.float32),
        "landmarks": landmarks,
        "polygon": mask_lib.face_polygon(landmarks).astype(np.float32),
        "size": (width, height)}

  def failure(self, key: str, reason: str) -> None:
    """Records an image without a face ("no face found") or an unreadable one."""
    self.rows[key] = {"ok": False, "reason": reason, "detector": "", "score": 0.0,
                      "box": np.zeros(4, np.float32),
                      "landmarks": np.zeros((68, 2), np.float32),
                      "polygon": np.zeros((prepare_lib.POLYGON_POINTS, 2), np.float32),
                      "size": (0, 0)}

  def write(self) -> pathlib.Path:
    paths = sorted(self.rows)
    rows = [self.rows[p] for p in paths]
    self.out_dir.mkdir(parents=True, exist_ok=True)

    def strings(values):
      return np.array(values, dtype=f"<U{max([1, *map(len, values)])}")

    np.savez(prepare_lib.chunk_path(self.out_dir, 0),
             paths=strings(paths), ok=np.array([r["ok"] for r in rows]),
             reasons=strings([r["reason"] for r in rows]),
             boxes=np.stack([r["box"] for r in rows]),
             scores=np.array([r["score"] for r in rows], np.float64),
             detectors=strings([r["detector"] for r in rows]),
             landmarks=np.stack([r["landmarks"] for r in rows]),
             polygons=np.stack([r["polygon"] for r in rows]),
             sizes=np.array([r["size"] for r in rows], np.int32))
    manifest = {"format": prepare_lib.FORMAT, "image_dir": str(self.image_dir.resolve()),
                "chunk_size": max(1, len(paths)), "num_images": len(paths), "num_chunks": 1,
                "fingerprint": "test", "extensions": [".jpg", ".jpeg", ".png"],
                "settings": {}}
    (self.out_dir / prepare_lib.MANIFEST).write_text(json.dumps(manifest))
    return self.out_dir


def build(builder_cls, tmp_path: pathlib.Path, manual_dir: pathlib.Path, config=None):
  """Builds `builder_cls` from `manual_dir` into tmp_path/tfds; returns the builder."""
  kwargs = {"config": config} if config is not None else {}
  builder = builder_cls(data_dir=str(tmp_path / "tfds"), **kwargs)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return builder


def examples(builder, split: str) -> list[dict]:
  """All examples of a split as numpy dicts, in key order of the files."""
  return list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))


def dot_centroid(image: np.ndarray, threshold: int = 120) -> np.ndarray:
  """(x, y) intensity centroid of the bright pixels of [H, W, 3] uint8, pixel centres +0.5."""
  luminance = image.astype(np.float64).mean(axis=-1)
  weights = np.where(luminance > threshold, luminance, 0.0)
  assert weights.sum() > 0, "no bright dot found"
  rows, cols = np.indices(luminance.shape)
  return np.array([(weights * (cols + 0.5)).sum(), (weights * (rows + 0.5)).sum()]) / weights.sum()
