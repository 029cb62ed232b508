"""Face-region masks from 68 iBUG landmarks (the skin/paste region of GAN-3DMM, MLFL-GA).

Rule: the polygon jaw 0 -> 16, then brows 26 -> 17, with every brow point moved
"up the face" by `forehead` x H, where H is the distance from the chin (point 8) to
the brows' mean and "up" the unit vector from the chin to that mean (so a tilted face
gets a tilted forehead). A pixel is inside when its centre is (even-odd rule).
Coordinates are pixels, x right, y down, pixel (row i, column j) centred at
(j + 0.5, i + 0.5), as everywhere in `preprocess`.
"""

import numpy as np

from jaxface.preprocess import detect

CHIN = 8


def face_polygon(landmarks: np.ndarray, *, forehead: float = 0.25) -> np.ndarray:
  """The face outline of the module's rule: jaw, then the raised brows, right to left.

  Args:
    landmarks: [68, 2] iBUG landmarks, (x, y) pixels.
    forehead: how far the brows are raised, in brow-to-chin distances.
  Returns:
    [27, 2] float64 polygon vertices (17 jaw points, then 10 raised brow points).
  """
  points = np.asarray(landmarks, np.float64)
  brows = points[detect.BROWS]
  up = brows.mean(0) - points[CHIN]
  raised = brows + forehead * up  # |up| is the brow-to-chin distance H
  return np.concatenate([points[detect.JAW], raised[::-1]])


def polygon_mask(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
  """Rasterises a polygon: 1 where a pixel centre is inside (even-odd rule), else 0.

  Args:
    polygon: [N, 2] (x, y) vertices in pixels.
    height, width: mask size, pixels.
  Returns:
    [height, width] float32 in {0, 1}.
  """
  mask = np.zeros((height, width), np.float32)
  low = np.clip(np.floor(polygon.min(0)).astype(int), 0, (width, height))
  high = np.clip(np.ceil(polygon.max(0)).astype(int), 0, (width, height))
  if np.any(high <= low):
    return mask
  x = np.arange(low[0], high[0]) + 0.5
  y = (np.arange(low[1], high[1]) + 0.5)[:, None]
  inside = np.zeros((y.shape[0], x.shape[0]), bool)
  for (xa, ya), (xb, yb) in zip(polygon, np.roll(polygon, -1, axis=0)):
    if ya == yb:
      continue  # horizontal edges never cross a horizontal ray
    crosses = (ya > y) != (yb > y)  # [h, 1]: the edge spans this row's centre height
    x_cross = xa + (y - ya) * (xb - xa) / (yb - ya)
    inside ^= crosses & (x < x_cross)
  mask[low[1]:high[1], low[0]:high[0]] = inside
  return mask


def face_mask(landmarks: np.ndarray, size: int | tuple[int, int], *,
              forehead: float = 0.25) -> np.ndarray:
  """The face region (jaw, cheeks, forehead) as a binary mask, by the module's rule.

  Args:
    landmarks: [68, 2] iBUG landmarks in the mask's pixels (e.g. `Crop.landmarks`).
    size: mask side (square), or (height, width), pixels.
    forehead: brow raise as a fraction of the brow-to-chin distance (0: brows only).
  Returns:
    [size, size] (or [height, width]) float32 in {0, 1}.
  """
  height, width = (size, size) if np.isscalar(size) else size
  return polygon_mask(face_polygon(landmarks, forehead=forehead), int(height), int(width))
