"""Similarity alignment: Umeyama on landmarks, then refinement on scan-to-mesh distances.

The refinement minimises, over a similarity (or rigid) transform T of a predicted mesh,
the sum of squared distances from fixed scan points to the transformed surface:

  E(T) = sum_i r_i(T)^2,   r_i = |p_i - T(c_i)|           ("surface": NoW's ScanToMesh)
                     or    r_i = n_i . (p_i - T(c_i))      ("plane": point-to-plane ICP)

where c_i is the closest point of the untransformed mesh to T^-1(p_i) and n_i the unit
normal of its triangle, rotated by T. Each iteration is a Levenberg-Marquardt step on the
linearisation with the closest points held fixed (by the envelope theorem the derivative
of the surface distance is -u_i . dT(c_i), u_i = (p_i - T(c_i)) / r_i, so this is
Gauss-Newton on the true objective, not point-to-point ICP); a step is kept only if E
decreases. Closest points are found on the fixed mesh by mapping the scan points with
T^-1 (one AABB tree per mesh; distances scale by T's scale).
"""

import dataclasses

import numpy as np
from scipy.spatial.transform import Rotation

from jaxface.errors import JaxfaceError
from jaxface.eval.proximity import MeshProximity


@dataclasses.dataclass(frozen=True)
class Similarity:
  """The map x -> scale * rotation @ x + translation.

  Attributes:
    scale: positive float. rotation: [3, 3] proper rotation. translation: [3].
  """
  scale: float
  rotation: np.ndarray
  translation: np.ndarray

  def apply(self, points) -> np.ndarray:
    """[..., 3] points mapped by the transform."""
    return self.scale * np.asarray(points, np.float64) @ self.rotation.T + self.translation

  def inverse_apply(self, points) -> np.ndarray:
    """[..., 3] points mapped by the inverse transform."""
    return (np.asarray(points, np.float64) - self.translation) @ self.rotation / self.scale

  def matrix(self) -> np.ndarray:
    """[4, 4] homogeneous matrix."""
    m = np.eye(4)
    m[:3, :3] = self.scale * self.rotation
    m[:3, 3] = self.translation
    return m


def identity() -> Similarity:
  return Similarity(1.0, np.eye(3), np.zeros(3))


def umeyama(source, target, *, scale: float | None = None) -> Similarity:
  """Least-squares similarity from `source` to `target` points (no reflection).

  Minimises sum_i |s R source_i + t - target_i|^2 (Umeyama 1991) with det R = +1.

  Args:
    source: [K, 3]. target: [K, 3], K >= 3 corresponding points, not all collinear.
    scale: None to estimate the scale; a positive number to hold it fixed (the
      optimal rotation does not depend on it; the translation does).
  Returns:
    The `Similarity` mapping source onto target.
  """
  source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
  if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 3 or len(source) < 3:
    raise JaxfaceError(f"alignment needs two [K>=3, 3] point sets, got {source.shape} "
                       f"and {target.shape}")
  mu_s, mu_t = source.mean(0), target.mean(0)
  s0, t0 = source - mu_s, target - mu_t
  u, d, vt = np.linalg.svd(t0.T @ s0 / len(source))
  e = np.ones(3)
  e[2] = np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0
  rotation = u @ np.diag(e) @ vt
  variance = np.sum(s0 * s0) / len(source)
  if variance <= 0 or d[1] <= 1e-12 * max(d[0], 1e-300):
    raise JaxfaceError("alignment landmarks are degenerate (coincident or collinear)")
  if scale is None:
    scale = float(np.sum(d * e) / variance)
  return Similarity(float(scale), rotation, mu_t - scale * rotation @ mu_s)


@dataclasses.dataclass(frozen=True)
class RefineInfo:
  """What the refinement did. RMS values are sqrt(E / N) in scan units."""
  iterations: int
  initial_rms: float
  final_rms: float


def _residuals(mesh: MeshProximity, transform: Similarity, points: np.ndarray, kind: str):
  """(r [N], u [N, 3] unit directions, closest points [N, 3] and errors [N, 3], scan frame)."""
  found = mesh.query(transform.inverse_apply(points))
  closest = transform.apply(found.points)
  error = points - closest
  normals = mesh.face_normals[found.triangles] @ transform.rotation.T
  if kind == "plane":
    return np.sum(normals * error, axis=1), normals, closest, error
  r = np.linalg.norm(error, axis=1)
  ok = r > 1e-12
  u = np.where(ok[:, None], error / np.where(ok, r, 1.0)[:, None], normals)
  return r, u, closest, error


def _jacobian(u, closest, error, centre, kind: str, estimate_scale: bool) -> np.ndarray:
  """[N, 7 or 6] d r / d (log-scale, rotation vector, translation) about `centre`."""
  a = closest - centre
  d_rot = -np.cross(a, u)
  if kind == "plane":  # the normal turns with the mesh: d(n.e) = w.(n x e) - n.dC
    d_rot = d_rot + np.cross(u, error)
  columns = [d_rot, -u]
  if estimate_scale:
    columns.insert(0, -np.sum(u * a, axis=1, keepdims=True))
  return np.concatenate(columns, axis=1)


def _step(transform: Similarity, delta: np.ndarray, centre, estimate_scale: bool) -> Similarity:
  """x -> centre + exp(sigma) Rot(w) (T(x) - centre) + tau."""
  sigma = delta[0] if estimate_scale else 0.0
  w, tau = delta[-6:-3], delta[-3:]
  turn = Rotation.from_rotvec(w).as_matrix()
  grow = float(np.exp(sigma))
  return Similarity(transform.scale * grow, turn @ transform.rotation,
                    centre + grow * turn @ (transform.translation - centre) + tau)


def refine(mesh: MeshProximity, transform: Similarity, points, *, estimate_scale: bool = True,
           residual: str = "surface", max_iterations: int = 30,
           tolerance: float = 1e-6) -> tuple[Similarity, RefineInfo]:
  """Refines `transform` (mesh frame -> scan frame) to minimise scan-to-mesh distances.

  Args:
    mesh: the predicted mesh in its own frame, with its AABB tree.
    transform: initial mesh -> scan similarity (e.g. from `umeyama` on landmarks).
    points: [N, 3] scan points (scan frame, e.g. mm).
    estimate_scale: refine the scale too (similarity); False keeps it (rigid).
    residual: "surface" (unsigned point-to-surface distance, NoW) or "plane"
      (signed point-to-plane distance along the closest triangle's normal, MICC).
    max_iterations: accepted steps at most.
    tolerance: stop when an accepted step lowers E by less than this fraction, or
      when the RMS residual is below 1e-9 of the points' extent (an exact fit).
  Returns:
    (refined transform, `RefineInfo`).
  """
  if residual not in ("surface", "plane"):
    raise ValueError(f"unknown residual {residual!r}")
  points = np.asarray(points, np.float64).reshape(-1, 3)
  centre = points.mean(0)
  exact = len(points) * (1e-9 * max(float(np.ptp(points, axis=0).max()), 1e-300)) ** 2
  r, u, closest, error = _residuals(mesh, transform, points, residual)
  cost = initial = float(r @ r)
  damping, iterations = 1e-3, 0
  while iterations < max_iterations and cost > exact:
    jac = _jacobian(u, closest, error, centre, residual, estimate_scale)
    # Columns scaled to unit norm: the damping then acts alike on log-scale, rotation and
    # translation, and tames near-null directions (a symmetric patch) as a trust region.
    norms = np.maximum(np.linalg.norm(jac, axis=0), 1e-300)
    scaled = jac / norms
    normal, gradient = scaled.T @ scaled, scaled.T @ r
    for _ in range(12):  # raise the damping until a step lowers E; else it is a minimum
      step = np.linalg.solve(normal + damping * np.eye(len(normal)), -gradient) / norms
      candidate = _step(transform, step, centre, estimate_scale)
      r_new, u_new, closest_new, error_new = _residuals(mesh, candidate, points, residual)
      cost_new = float(r_new @ r_new)
      if cost_new <= cost:
        break
      damping *= 8.0
    else:
      break
    iterations += 1
    decrease = cost - cost_new
    transform, cost = candidate, cost_new
    r, u, closest, error = r_new, u_new, closest_new, error_new
    damping = max(damping / 4.0, 1e-7)
    if decrease <= tolerance * (cost + decrease):
      break
  n = max(len(points), 1)
  return transform, RefineInfo(iterations, float(np.sqrt(initial / n)), float(np.sqrt(cost / n)))
