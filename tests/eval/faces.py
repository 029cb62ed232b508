"""Test geometry with known answers: an analytic face-like surface, a sphere, transforms.

The face is a height field z = f(x, y) in mm (y up, z towards the viewer, +x the
subject's left) with a nose, eye sockets, brows, lips and a chin, so that no rigid
motion or scaling maps it onto itself: alignment is well determined.
"""

import numpy as np
import trimesh
from scipy.spatial.transform import Rotation

from jaxface.eval import alignment

# iBUG-68 positions (x, y) for the 7 NoW landmarks and the nose tip (30); the other 60
# landmarks sit on a ring so the 68 file is complete.
_KEY_XY = {36: (-45.0, 35.0), 39: (-15.0, 33.0), 42: (15.0, 33.0), 45: (45.0, 35.0),
           33: (0.0, -15.0), 48: (-25.0, -45.0), 54: (25.0, -45.0), 30: (0.0, 0.0)}


def height(x, y):
  """The face surface z(x, y), mm."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  z = 40.0 - x ** 2 / 140.0 - y ** 2 / 260.0
  z += 24.0 * np.exp(-(x ** 2 / (2 * 7.0 ** 2) + (y - 2.0) ** 2 / (2 * 16.0 ** 2)))  # nose
  z -= 7.0 * np.exp(-(((np.abs(x) - 30.0) ** 2 + (y - 32.0) ** 2) / (2 * 9.0 ** 2)))  # eyes
  z += 5.0 * np.exp(-(((np.abs(x) - 30.0) ** 2 + (y - 50.0) ** 2) / (2 * 8.0 ** 2)))  # brows
  z += 6.0 * np.exp(-(x ** 2 / (2 * 14.0 ** 2) + (y + 45.0) ** 2 / (2 * 5.0 ** 2)))  # lips
  z += 8.0 * np.exp(-(x ** 2 / (2 * 16.0 ** 2) + (y + 80.0) ** 2 / (2 * 10.0 ** 2)))  # chin
  z += 3.0 * np.exp(-((x - 35.0) ** 2 + (y + 15.0) ** 2) / (2 * 12.0 ** 2))  # one cheek
  return z


def face_mesh(step: float = 2.5, half_width: float = 80.0, half_height: float = 100.0):
  """(vertices [V, 3], triangles [F, 3]) of the face on a regular grid, CCW from +z."""
  xs = np.arange(-half_width, half_width + 1e-9, step)
  ys = np.arange(-half_height, half_height + 1e-9, step)
  gx, gy = np.meshgrid(xs, ys)
  vertices = np.stack([gx, gy, height(gx, gy)], -1).reshape(-1, 3)
  nx = len(xs)
  i, j = np.meshgrid(np.arange(len(ys) - 1), np.arange(nx - 1), indexing="ij")
  a = (i * nx + j).ravel()
  b, c, d = a + 1, a + nx, a + nx + 1
  triangles = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
  return vertices, triangles.astype(np.int64)


def landmarks68() -> np.ndarray:
  """[68, 3] landmarks on the face (the 7 NoW ones and the nose tip where iBUG puts them)."""
  angle = np.linspace(0, 2 * np.pi, 68, endpoint=False)
  xy = np.stack([55 * np.cos(angle), 70 * np.sin(angle)], -1)
  for index, point in _KEY_XY.items():
    xy[index] = point
  return np.concatenate([xy, height(xy[:, 0], xy[:, 1])[:, None]], -1)


def landmarks7() -> np.ndarray:
  return landmarks68()[[36, 39, 42, 45, 33, 48, 54]]


def random_similarity(seed: int, scale: float = 1.0) -> alignment.Similarity:
  """An arbitrary similarity: rotation up to ~60 degrees, translation up to 200."""
  rng = np.random.default_rng(seed)
  rotation = Rotation.from_rotvec(rng.uniform(-0.6, 0.6, 3)).as_matrix()
  return alignment.Similarity(scale, rotation, rng.uniform(-200, 200, 3))


def sphere(radius: float = 30.0, subdivisions: int = 3):
  """(vertices, triangles, vertex normals) of an icosphere centred at the origin."""
  mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
  return (np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64),
          np.asarray(mesh.vertex_normals, np.float64))


def _segment_distance(p, a, b):
  """Distances [T] from point p [3] to segments a-b [T, 3]."""
  ab = b - a
  t = np.clip(np.sum((p - a) * ab, -1) / np.maximum(np.sum(ab * ab, -1), 1e-300), 0.0, 1.0)
  return np.linalg.norm(p - (a + t[:, None] * ab), axis=-1)


def reference_distance(p, vertices, triangles):
  """min over all triangles of: the plane distance where the projection falls inside the
  triangle, else the distance to its three edges. O(F) per point, obviously correct."""
  a, b, c = (vertices[triangles[:, i]] for i in range(3))
  n = np.cross(b - a, c - a)
  n /= np.linalg.norm(n, axis=-1, keepdims=True)
  height = np.sum((p - a) * n, -1)
  q = p - height[:, None] * n
  inside = np.ones(len(a), bool)
  for u, v in ((a, b), (b, c), (c, a)):
    inside &= np.sum(np.cross(v - u, q - u) * n, -1) >= 0
  edges = np.minimum(np.minimum(_segment_distance(p, a, b), _segment_distance(p, b, c)),
                     _segment_distance(p, c, a))
  return np.min(np.where(inside, np.abs(height), edges))


def write_pp(path, points) -> None:
  """A MeshLab PickedPoints file laid out as the NoW scans' (8 header lines, then points)."""
  lines = ["<!DOCTYPE PickedPoints>", "<PickedPoints>", " <DocumentData>",
           '  <DateTime time="16:00:00" date="2019-01-01"/>', '  <User name="tester"/>',
           '  <DataFileName name="natural_head_rotation.000001.obj"/>',
           '  <templateName name=""/>', " </DocumentData>"]
  lines += [f' <point x="{x:.6f}" y="{y:.6f}" z="{z:.6f}" active="1" name="{i}"/>'
            for i, (x, y, z) in enumerate(points)]
  lines.append("</PickedPoints>")
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("\n".join(lines) + "\n")


def write_obj(path, vertices, triangles) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
  lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in triangles]
  path.write_text("\n".join(lines) + "\n")


def write_points(path, points) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("\n".join(" ".join(f"{v:.6f}" for v in row) for row in points) + "\n")
