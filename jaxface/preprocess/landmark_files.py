"""68-landmark files a user brings (from another detector, or hand-marked).

Two formats, chosen by extension:
  .pts  the iBUG / 300-W format: "version: 1", "n_points: 68", "{", 68 lines "x y", "}".
        300-W's coordinates are 1-based pixel indices (the centre of the top-left pixel
        is (1, 1)); they are converted to this package's convention (that centre is
        (0.5, 0.5)) by subtracting 0.5.
  .txt  68 lines "x y" (or 136 numbers) in this package's pixel convention.
"""

import pathlib

import numpy as np

from jaxface.errors import JaxfaceError

EXTENSIONS = (".pts", ".txt")
PTS_OFFSET = -0.5  # 300-W's 1-based pixel centres -> (j + 0.5, i + 0.5)


def _pts_numbers(text: str, path: pathlib.Path) -> np.ndarray:
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  try:
    start, end = lines.index("{"), lines.index("}")
  except ValueError:
    raise JaxfaceError(f"{path}: not an iBUG .pts file (no '{{' ... '}}' block)") from None
  header = dict(line.split(":", 1) for line in lines[:start] if ":" in line)
  count = header.get("n_points", "").strip()
  if count != "68":
    raise JaxfaceError(f"{path}: n_points must be 68, got {count or 'none'}")
  return np.array(" ".join(lines[start + 1:end]).split(), dtype=np.float64) + PTS_OFFSET


def read_landmarks(path) -> np.ndarray:
  """[68, 2] float64 landmarks (x, y photo pixels) from a .pts or .txt file.

  Raises:
    JaxfaceError: one line naming the file and what is wrong with it.
  """
  path = pathlib.Path(path)
  if path.suffix.lower() not in EXTENSIONS:
    raise JaxfaceError(f"{path}: landmark files are .pts or .txt")
  try:
    text = path.read_text(encoding="utf-8")
  except (OSError, UnicodeDecodeError) as e:
    raise JaxfaceError(f"{path}: cannot read landmarks ({e})") from None
  try:
    values = (_pts_numbers(text, path) if path.suffix.lower() == ".pts"
              else np.array(text.split(), dtype=np.float64))
  except ValueError as e:
    raise JaxfaceError(f"{path}: landmark coordinates must be numbers ({e})") from None
  if values.size != 136:
    raise JaxfaceError(f"{path}: expected 68 points (136 numbers), got {values.size} numbers")
  if not np.all(np.isfinite(values)):
    raise JaxfaceError(f"{path}: landmark coordinates must be finite")
  return values.reshape(68, 2)


def find_landmark_files(images, folder) -> dict:
  """{str(image): [68, 2]} for every image with `<folder>/<image stem>.pts` or `.txt`."""
  folder = pathlib.Path(folder)
  if not folder.is_dir():
    raise JaxfaceError(f"{folder}: no such folder (the landmark files)")
  found = {}
  for image in images:
    for extension in EXTENSIONS:
      candidate = folder / (pathlib.Path(image).stem + extension)
      if candidate.is_file():
        found[str(image)] = read_landmarks(candidate)
        break
  return found
