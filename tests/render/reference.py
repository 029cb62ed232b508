"""Independent references for the renderer tests: a slow numpy rasterizer, Embree rays."""

import numpy as np


def uv_sphere(rings: int = 8, segments: int = 12, radius: float = 50.0) -> tuple:
  """A closed UV sphere, counter-clockwise seen from outside: ([V, 3], [F, 3])."""
  vertices = [[0.0, radius, 0.0]]
  for i in range(1, rings):
    theta = np.pi * i / rings
    for j in range(segments):
      phi = 2 * np.pi * j / segments
      vertices.append([radius * np.sin(theta) * np.sin(phi), radius * np.cos(theta),
                       radius * np.sin(theta) * np.cos(phi)])
  vertices.append([0.0, -radius, 0.0])
  ring = lambda i, j: 1 + (i - 1) * segments + j % segments
  bottom = len(vertices) - 1
  triangles = []
  for j in range(segments):
    triangles.append([0, ring(1, j), ring(1, j + 1)])
    triangles.append([bottom, ring(rings - 1, j + 1), ring(rings - 1, j)])
  for i in range(1, rings - 1):
    for j in range(segments):
      a, b, c, d = ring(i, j), ring(i, j + 1), ring(i + 1, j), ring(i + 1, j + 1)
      triangles += [[a, c, b], [b, c, d]]
  vertices, triangles = np.asarray(vertices), np.asarray(triangles, np.int32)
  # Orient outward (the loops above may wind either way).
  a, b, c = (vertices[triangles[:, i]] for i in range(3))
  if np.mean(np.sum(np.cross(b - a, c - a) * (a + b + c), axis=1) > 0) < 0.5:
    triangles = triangles[:, ::-1].copy()
  return vertices, triangles


def rasterize_numpy(xy, depth, triangles, height, width, *, perspective=True, cull=True):
  """Obvious per-triangle z-buffer at pixel centres, float64. Returns (ids, depth)."""
  xy, depth = np.asarray(xy, np.float64), np.asarray(depth, np.float64)
  ids = np.full((height, width), -1, np.int64)
  zbuf = np.full((height, width), np.inf)
  for t, (i0, i1, i2) in enumerate(np.asarray(triangles)):
    a, b, c = xy[i0], xy[i1], xy[i2]
    area = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
    if abs(area) < 1e-9 or (cull and area >= 0):
      continue
    if perspective and min(depth[i0], depth[i1], depth[i2]) <= 0:
      continue
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    w = []
    for u, v in ((b, c), (c, a), (a, b)):
      w.append(((v[0] - u[0]) * (rows - u[1]) - (v[1] - u[1]) * (cols - u[0])) / area)
    w = np.stack(w, -1)  # [H, W, 3] barycentrics of every pixel centre
    inside = np.all(w >= 0, axis=-1)
    d = np.array([depth[i0], depth[i1], depth[i2]])
    z = 1.0 / np.sum(w / d, axis=-1) if perspective else np.sum(w * d, axis=-1)
    # Nearer wins; on an exact tie the larger id wins (the rule the renderer documents).
    better = inside & ((z < zbuf) | ((z == zbuf) & (t > ids)))
    zbuf[better], ids[better] = z[better], t
  return ids, np.where(ids >= 0, zbuf, 0.0)


def raycast_perspective(vertices_camera, triangles, height, width, focal, distance):
  """Embree ray casting (trimesh) through pixel centres of a pinhole camera.

  Args:
    vertices_camera: [V, 3] vertices after the head rotation/translation, mm.
  Returns:
    (triangle ids [H, W] with -1 background, depth [H, W] along the camera axis).
  """
  import trimesh  # pylint: disable=import-outside-toplevel
  mesh = trimesh.Trimesh(np.asarray(vertices_camera, np.float64), np.asarray(triangles),
                         process=False)
  cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
  directions = np.stack([(cols - width / 2) / focal, -(rows - height / 2) / focal,
                         -np.ones_like(cols)], -1).reshape(-1, 3)
  origins = np.tile([0.0, 0.0, distance], (directions.shape[0], 1))
  tri, ray, location = mesh.ray.intersects_id(origins, directions, multiple_hits=False,
                                              return_locations=True)
  ids = np.full(height * width, -1, np.int64)
  depth = np.zeros(height * width)
  ids[ray] = tri
  depth[ray] = distance - location[:, 2]
  return ids.reshape(height, width), depth.reshape(height, width)
