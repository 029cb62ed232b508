"""`face_mask`: covers the landmarks and the forehead, not the background."""

import numpy as np
import pytest
import scipy.spatial
import skimage.data

from jaxface import preprocess
from jaxface.preprocess import detect
from jaxface.preprocess import mask as mask_lib


@pytest.fixture(scope="module")
def crop():
  image = skimage.data.astronaut().astype(np.float32) / 255
  (face,) = preprocess.detect_and_align(image, source="astronaut")
  return face


def _pixel_centres(size):
  return np.stack(np.meshgrid(np.arange(size), np.arange(size)), -1) + 0.5


def test_mask_covers_the_landmark_hull(crop):
  mask = preprocess.face_mask(crop.landmarks, 224)
  assert mask.shape == (224, 224) and mask.dtype == np.float32
  assert set(np.unique(mask)) == {0.0, 1.0}
  hull = scipy.spatial.Delaunay(crop.landmarks).find_simplex(_pixel_centres(224)) >= 0
  assert mask[hull].mean() > 0.99
  inner = np.round(crop.landmarks[27:] - 0.5).astype(int)  # nose, eyes, mouth
  assert np.all(mask[inner[:, 1], inner[:, 0]] == 1)


def test_forehead_is_included_and_corners_are_not(crop):
  points = crop.landmarks.astype(np.float64)
  brows, chin = points[detect.BROWS].mean(0), points[mask_lib.CHIN]
  up = brows - chin  # length: the brow-to-chin distance
  mask = preprocess.face_mask(points, 224, forehead=0.25)
  for fraction, expected in [(0.1, 1), (0.2, 1), (0.3, 0)]:
    x, y = np.floor(brows + fraction * up).astype(int)
    assert mask[y, x] == expected, fraction
  x, y = np.floor(brows + 0.1 * up).astype(int)
  assert preprocess.face_mask(points, 224, forehead=0.0)[y, x] == 0
  assert mask[:10, :10].sum() == mask[:10, -10:].sum() == 0
  assert mask[-10:, :10].sum() == mask[-10:, -10:].sum() == 0
  assert 0.3 < mask.mean() < 0.7


def test_polygon_rasterisation_samples_pixel_centres():
  square = np.array([[2.0, 3.0], [6.0, 3.0], [6.0, 5.0], [2.0, 5.0]])
  mask = mask_lib.polygon_mask(square, 8, 10)
  expected = np.zeros((8, 10), np.float32)
  expected[3:5, 2:6] = 1  # centres (2.5..5.5, 3.5..4.5)
  np.testing.assert_array_equal(mask, expected)
  clipped = mask_lib.polygon_mask(square - [4.0, 0.0], 8, 10)  # partly left of the image
  np.testing.assert_array_equal(clipped[3:5, :3], [[1, 1, 0], [1, 1, 0]])
  assert mask_lib.polygon_mask(square + 100, 8, 10).sum() == 0


def test_rectangular_size(crop):
  mask = preprocess.face_mask(crop.landmarks, (240, 300))
  assert mask.shape == (240, 300)
  np.testing.assert_array_equal(mask[:224, :224], preprocess.face_mask(crop.landmarks, 224))
