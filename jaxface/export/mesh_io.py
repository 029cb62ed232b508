"""Mesh files: Wavefront OBJ (+ MTL + texture PNG), written atomically.

Every writer writes to a temporary file beside the target and renames it into
place, so a crash never leaves a half-written file.
"""

import pathlib

import numpy as np
from PIL import Image

from jaxface.files import atomic_path


def write_obj(path, vertices: np.ndarray, triangles: np.ndarray, *, uv: np.ndarray | None = None,
              material: str | None = None, texture_png: str | None = None,
              header: str = "") -> None:
  """Writes a triangle mesh as OBJ; with `uv` and `texture_png`, also `<stem>.mtl`.

  Args:
    path: the `.obj` path.
    vertices: [V, 3] (mm). triangles: [F, 3] 0-based, counter-clockwise outside.
    uv: [V, 2] texture coordinates in [0, 1], v up (OBJ's convention).
    material: material name (default: the file stem).
    texture_png: file name of the texture, relative to the OBJ's folder.
    header: comment lines written at the top.
  """
  path = pathlib.Path(path)
  vertices, triangles = np.asarray(vertices, np.float64), np.asarray(triangles, np.int64) + 1
  lines = [f"# {line}" for line in header.splitlines()]
  textured = uv is not None and texture_png is not None
  if textured:
    material = material or path.stem
    lines += [f"mtllib {path.stem}.mtl", f"usemtl {material}"]
  lines += [f"v {x:.5f} {y:.5f} {z:.5f}" for x, y, z in vertices]
  if textured:
    lines += [f"vt {u:.6f} {v:.6f}" for u, v in np.asarray(uv, np.float64)]
    lines += [f"f {a}/{a} {b}/{b} {c}/{c}" for a, b, c in triangles]
  else:
    lines += [f"f {a} {b} {c}" for a, b, c in triangles]
  with atomic_path(path) as tmp:
    tmp.write_text("\n".join(lines) + "\n")
  if textured:
    mtl = [f"newmtl {material}", "Ka 1 1 1", "Kd 1 1 1", "Ks 0 0 0", "d 1", "illum 1",
           f"map_Kd {texture_png}"]
    with atomic_path(path.with_suffix(".mtl")) as tmp:
      tmp.write_text("\n".join(mtl) + "\n")


def write_png(path, image: np.ndarray) -> None:
  """Writes an [H, W, 3] float image in [0, 1] (or uint8) as PNG, atomically."""
  image = np.asarray(image)
  if image.dtype != np.uint8:
    image = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
  with atomic_path(path) as tmp:
    Image.fromarray(image).save(tmp, format="PNG")


def write_text(path, text: str) -> None:
  with atomic_path(path) as tmp:
    pathlib.Path(tmp).write_text(text)
