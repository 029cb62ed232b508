"""Reading evaluation inputs: OBJ/PLY meshes and landmark files (.pp, .txt, .npy).

Every reader raises `JaxfaceError` with one line naming the file and what is wrong, so
`jaxface evaluate` reports a malformed input without a traceback.
"""

import pathlib
from xml.etree import ElementTree

import numpy as np

from jaxface.errors import JaxfaceError

# The 7 NoW landmarks in iBUG-68 order (0-based): right outer eye corner (36), right
# inner (39), left inner (42), left outer (45), nose bottom (33), mouth corners (48, 54).
NOW_LANDMARKS_FROM_68 = (36, 39, 42, 45, 33, 48, 54)


def _text(path: pathlib.Path) -> str:
  try:
    return path.read_bytes().decode("utf-8", errors="replace")
  except FileNotFoundError:
    raise JaxfaceError(f"{path}: no such file") from None
  except OSError as e:
    raise JaxfaceError(f"{path}: cannot read ({e.strerror})") from None


def _obj_faces(path, face_lines, num_vertices: int) -> np.ndarray:
  """Triangles [F, 3] from OBJ `f` lines (polygons fanned, `v/vt/vn` and negative indices)."""
  triangles = []
  for lineno, line in face_lines:
    tokens = line.split()[1:]
    try:
      ids = [int(t.split("/", 1)[0]) for t in tokens]
    except ValueError:
      raise JaxfaceError(f"{path}:{lineno}: bad face line {line.strip()[:60]!r}") from None
    if len(ids) < 3:
      raise JaxfaceError(f"{path}:{lineno}: a face needs 3 or more vertices")
    ids = [i - 1 if i > 0 else num_vertices + i for i in ids]  # 1-based; negative = relative
    if min(ids) < 0 or max(ids) >= num_vertices:
      raise JaxfaceError(f"{path}:{lineno}: face index out of range (the file has "
                         f"{num_vertices} vertices)")
    triangles.extend((ids[0], ids[k], ids[k + 1]) for k in range(1, len(ids) - 1))
  return np.asarray(triangles, np.int64).reshape(-1, 3)


def read_obj(path) -> tuple[np.ndarray, np.ndarray]:
  """Vertices and triangles of a Wavefront OBJ, in file order.

  Args:
    path: the `.obj` file. `v x y z [r g b]` lines give vertices (colours ignored);
      `f` lines give polygons, fanned into triangles; other lines are ignored.
  Returns:
    (vertices [V, 3] float64, triangles [F, 3] int64, 0-based).
  """
  path = pathlib.Path(path)
  vertex_lines, face_lines = [], []
  for lineno, line in enumerate(_text(path).splitlines(), 1):
    if line.startswith("v "):
      vertex_lines.append((lineno, line))
    elif line.startswith("f "):
      face_lines.append((lineno, line))
  if not vertex_lines:
    raise JaxfaceError(f"{path}: not an OBJ mesh (no vertex lines)")
  rows = [line.split()[1:4] for _, line in vertex_lines]
  try:
    vertices = np.array(rows, np.float64)
  except ValueError:
    bad = next((n for (n, _), r in zip(vertex_lines, rows) if len(r) != 3 or not _floats(r)),
               vertex_lines[0][0])
    raise JaxfaceError(f"{path}:{bad}: bad vertex line") from None
  if vertices.ndim != 2 or vertices.shape[1] != 3:
    raise JaxfaceError(f"{path}: bad vertex lines (each needs x y z)")
  if not face_lines:
    raise JaxfaceError(f"{path}: the mesh has no faces (a point cloud cannot be evaluated)")
  if not np.all(np.isfinite(vertices)):
    raise JaxfaceError(f"{path}: vertices contain NaN or infinity")
  return vertices, _obj_faces(path, face_lines, len(vertices))


def _floats(tokens) -> bool:
  try:
    [float(t) for t in tokens]
  except ValueError:
    return False
  return True


def read_ply(path) -> tuple[np.ndarray, np.ndarray]:
  """Vertices [V, 3] float64 and triangles [F, 3] int64 of a PLY mesh (ASCII or binary)."""
  import trimesh  # pylint: disable=import-outside-toplevel
  path = pathlib.Path(path)
  if not path.is_file():
    raise JaxfaceError(f"{path}: no such file")
  try:
    mesh = trimesh.load(str(path), file_type="ply", process=False, force="mesh")
    vertices = np.asarray(mesh.vertices, np.float64)
    triangles = np.asarray(mesh.faces, np.int64)
  except Exception as e:  # noqa: BLE001  (any parser failure is the file's fault)
    raise JaxfaceError(f"{path}: not a readable PLY mesh ({type(e).__name__})") from None
  if vertices.ndim != 2 or len(vertices) == 0 or triangles.ndim != 2 or len(triangles) == 0:
    raise JaxfaceError(f"{path}: the PLY file holds no triangle mesh")
  if not np.all(np.isfinite(vertices)):
    raise JaxfaceError(f"{path}: vertices contain NaN or infinity")
  return vertices, triangles


def read_mesh(path) -> tuple[np.ndarray, np.ndarray]:
  """Vertices [V, 3] and triangles [F, 3] of an `.obj` or `.ply` file."""
  path = pathlib.Path(path)
  suffix = path.suffix.lower()
  if suffix == ".obj":
    return read_obj(path)
  if suffix == ".ply":
    return read_ply(path)
  raise JaxfaceError(f"{path}: unknown mesh format (expected .obj or .ply)")


def read_pp(path) -> np.ndarray:
  """Points [K, 3] of a MeshLab PickedPoints (`.pp`) file, in file order.

  The NoW scans' landmark files are `.pp`: a `<PickedPoints>` XML document whose
  `<point x= y= z= name=/>` elements are, in order, the 7 NoW landmarks.
  """
  path = pathlib.Path(path)
  try:
    root = ElementTree.fromstring(_text(path))
  except ElementTree.ParseError as e:
    raise JaxfaceError(f"{path}: not a PickedPoints XML file ({e})") from None
  points = []
  for element in root.iter("point"):
    try:
      points.append([float(element.attrib[k]) for k in ("x", "y", "z")])
    except (KeyError, ValueError):
      raise JaxfaceError(f"{path}: a <point> lacks numeric x, y, z attributes") from None
  if not points:
    raise JaxfaceError(f"{path}: no <point> elements")
  return np.asarray(points, np.float64)


def read_txt_points(path) -> np.ndarray:
  """Rows of numbers [K, D] from a text file (whitespace or commas; `#` comments)."""
  path = pathlib.Path(path)
  rows = []
  for lineno, line in enumerate(_text(path).splitlines(), 1):
    line = line.split("#", 1)[0].replace(",", " ").strip()
    if not line:
      continue
    try:
      rows.append([float(t) for t in line.split()])
    except ValueError:
      raise JaxfaceError(f"{path}:{lineno}: not a row of numbers") from None
    if len(rows[-1]) != len(rows[0]):
      raise JaxfaceError(f"{path}:{lineno}: {len(rows[-1])} numbers where line 1 has "
                         f"{len(rows[0])}")
  if not rows:
    raise JaxfaceError(f"{path}: empty landmark file")
  return np.asarray(rows, np.float64)


def read_npy_points(path) -> np.ndarray:
  """A [K, D] array from `.npy` (a leading axis of size 1 is dropped; no pickles)."""
  path = pathlib.Path(path)
  try:
    array = np.load(path, allow_pickle=False)
  except FileNotFoundError:
    raise JaxfaceError(f"{path}: no such file") from None
  except (ValueError, OSError, EOFError) as e:
    raise JaxfaceError(f"{path}: not a numeric .npy array ({e})") from None
  while array.ndim > 2 and array.shape[0] == 1:
    array = array[0]
  if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
    raise JaxfaceError(f"{path}: expected a [K, D] numeric array, got {array.dtype} "
                       f"{array.shape}")
  return array.astype(np.float64)


def read_points(path) -> np.ndarray:
  """Landmarks [K, D] from `.pp`, `.txt` or `.npy`, checked finite."""
  path = pathlib.Path(path)
  readers = {".pp": read_pp, ".txt": read_txt_points, ".npy": read_npy_points}
  reader = readers.get(path.suffix.lower())
  if reader is None:
    raise JaxfaceError(f"{path}: unknown landmark format (expected .pp, .txt or .npy)")
  points = reader(path)
  if not np.all(np.isfinite(points)):
    raise JaxfaceError(f"{path}: landmarks contain NaN or infinity")
  return points


def read_landmarks(path, *, dims: int = 3, counts=(7, 68)) -> np.ndarray:
  """Landmarks [K, dims] with K in `counts` (extra columns beyond `dims` are dropped).

  Args:
    path: a `.pp`, `.txt` or `.npy` file.
    dims: coordinates needed per point (3 for meshes, 2 for image landmarks).
    counts: accepted numbers of points.
  """
  points = read_points(path)
  if points.shape[0] not in counts or points.shape[1] < dims:
    want = " or ".join(f"{k}x{dims}" for k in counts)
    raise JaxfaceError(f"{path}: expected {want} landmarks, got "
                       f"{points.shape[0]}x{points.shape[1]}")
  return points[:, :dims]


def now_landmarks(points: np.ndarray) -> np.ndarray:
  """The 7 NoW landmarks [7, 3] from 7 (as given) or iBUG-68 [68, 3] points."""
  points = np.asarray(points, np.float64)
  if points.shape[0] == 68:
    return points[list(NOW_LANDMARKS_FROM_68)]
  if points.shape[0] == 7:
    return points
  raise ValueError(f"expected 7 or 68 landmarks, got {points.shape[0]}")


def read_now_landmarks(path) -> np.ndarray:
  """The 7 NoW landmarks [7, 3] from a file of 7 or 68 3D points."""
  return now_landmarks(read_landmarks(path, dims=3, counts=(7, 68)))
