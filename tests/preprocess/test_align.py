"""`align_crop` invariants: level eyes, consistent transforms, exact resampling."""

import numpy as np
import pytest
import skimage.data
from PIL import Image

from jaxface import preprocess
from jaxface.preprocess import detect


@pytest.fixture(scope="module")
def astronaut():
  image = skimage.data.astronaut().astype(np.float32) / 255
  return image, preprocess.landmarks_68(image, preprocess.detect_faces(image)[0])


def _similarity(points, angle_degrees, scale, shift):
  angle = np.radians(angle_degrees)
  rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
  return scale * points @ rotation.T + shift


def _eye_angle_degrees(points):
  vector = points[detect.EYE_IMAGE_RIGHT].mean(0) - points[detect.EYE_IMAGE_LEFT].mean(0)
  return np.degrees(np.arctan2(vector[1], vector[0]))


def test_crop_of_the_astronaut(astronaut):
  image, landmarks = astronaut
  crop = preprocess.align_crop(image, landmarks, size=224, source="astronaut")
  assert crop.image.shape == (224, 224, 3) and crop.image.dtype == np.float32
  assert crop.landmarks.shape == (68, 2) and crop.landmarks.dtype == np.float32
  assert crop.transform.shape == (2, 3) and crop.transform.dtype == np.float64
  assert crop.source == "astronaut" and crop.box.detector == "landmarks"
  assert abs(_eye_angle_degrees(crop.landmarks)) < 1.0
  assert np.all((crop.landmarks > 0) & (crop.landmarks < 224))
  outline = crop.landmarks[np.concatenate([detect.JAW, detect.BROWS])]
  side = np.max(outline.max(0) - outline.min(0))
  assert 0.70 * 224 <= side <= 0.75 * 224
  eyes_y = crop.landmarks[36:48, 1].mean()
  assert 0.25 * 224 < eyes_y < 0.4 * 224 and crop.landmarks[8, 1] < 0.95 * 224
  np.testing.assert_allclose(preprocess.apply_transform(crop.transform, landmarks),
                             crop.landmarks, atol=1e-4)


def test_inverse_round_trip(astronaut):
  _, landmarks = astronaut
  transform = preprocess.align_crop(np.zeros((512, 512, 3)), landmarks).transform
  inverse = preprocess.invert_transform(transform)
  points = np.random.default_rng(0).uniform(-100, 600, (50, 2))
  in_crop = preprocess.apply_transform(transform, points)
  np.testing.assert_allclose(preprocess.apply_transform(inverse, in_crop), points, atol=1e-9)
  np.testing.assert_allclose(preprocess.invert_transform(inverse), transform, atol=1e-12)


@pytest.mark.parametrize("angle, scale", [(25.0, 1.0), (-40.0, 0.5), (10.0, 3.0)])
def test_crop_landmarks_do_not_depend_on_the_face_pose_in_the_image(astronaut, angle, scale):
  _, landmarks = astronaut
  reference = preprocess.alignment_transform(landmarks, 224)
  moved = _similarity(landmarks.astype(np.float64), angle, scale, (37.0, -12.0))
  transform = preprocess.alignment_transform(moved, 224)
  np.testing.assert_allclose(preprocess.apply_transform(transform, moved),
                             preprocess.apply_transform(reference, landmarks), atol=1e-6)


def test_rotated_photo_gives_level_eyes(astronaut):
  image, landmarks = astronaut
  rotated = Image.fromarray((image * 255).astype(np.uint8)).rotate(20, Image.Resampling.BILINEAR)
  (crop,) = preprocess.detect_and_align(np.asarray(rotated, np.float32) / 255, source="tilted")
  assert abs(_eye_angle_degrees(crop.landmarks)) < 1.0
  assert crop.box.detector in ("hog", "mmod")
  # PIL rotates counter-clockwise about the image centre; the crops should agree.
  straight = preprocess.align_crop(image, landmarks)
  np.testing.assert_allclose(crop.landmarks, straight.landmarks, atol=4)


@pytest.mark.parametrize("enlarge", [0.25, 1.5, 3.0])  # crop scale ~2, ~1/3 and ~1/6
def test_resampling_is_exact_on_a_linear_image(astronaut, enlarge):
  _, landmarks = astronaut
  moved = _similarity(landmarks.astype(np.float64), 15.0, enlarge, (50.0, 30.0))
  height, width = 1400, 1600
  rows, columns = np.mgrid[0:height, 0:width]
  x, y = columns + 0.5, rows + 0.5  # pixel centres
  image = np.stack([x / width, y / height, 0.5 + 0 * x], -1).astype(np.float32)
  crop = preprocess.align_crop(image, moved, size=64)
  scale = np.sqrt(np.linalg.det(crop.transform[:, :2]))
  assert abs(scale - 0.49 / enlarge) < 0.1 * scale  # block averaging for the last two
  grid = np.stack(np.meshgrid(np.arange(64), np.arange(64)), -1) + 0.5
  source = preprocess.apply_transform(preprocess.invert_transform(crop.transform), grid)
  assert np.all((source > 0) & (source < [width, height]))
  # Bilinear sampling and block means reproduce a linear function exactly.
  expected = np.stack([source[..., 0] / width, source[..., 1] / height], -1)
  np.testing.assert_allclose(crop.image[..., :2], expected, atol=2e-5)
  np.testing.assert_allclose(crop.image[..., 2], 0.5, atol=1e-6)


def test_pixels_outside_the_image_are_zero(astronaut):
  image, landmarks = astronaut
  shifted = landmarks - [250.0, 0.0]  # the face's left half now lies left of the image
  crop = preprocess.align_crop(image, shifted, size=128)
  assert np.all(crop.image[:, :20] == 0) and crop.image[:, 100:].mean() > 0.1
  gone = preprocess.align_crop(image, landmarks + 5000.0, size=128)  # nowhere near
  assert np.all(gone.image == 0)


def test_bad_landmarks_are_refused():
  with pytest.raises(ValueError, match=r"\[68, 2\]"):
    preprocess.align_crop(np.zeros((64, 64, 3)), np.zeros((5, 2)))
  with pytest.raises(ValueError, match="degenerate"):
    preprocess.align_crop(np.zeros((64, 64, 3)), np.zeros((68, 2)))
