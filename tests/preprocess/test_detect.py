"""Detection and 68 landmarks on the public-domain `skimage.data.astronaut()` photo."""

import numpy as np
import pytest
import skimage.data
from PIL import Image

from jaxface import preprocess
from jaxface.errors import JaxfaceError
from jaxface.preprocess import detect


@pytest.fixture(scope="module")
def astronaut():
  return skimage.data.astronaut().astype(np.float32) / 255  # 512x512, face near (220, 120)


def _face_region(image, scale=1.0):
  """The astronaut's head (200x200 around the face), resized by `scale`."""
  head = Image.fromarray((image[20:220, 120:320] * 255).astype(np.uint8))
  side = round(200 * scale)
  return np.asarray(head.resize((side, side), Image.Resampling.BILINEAR), np.float32) / 255


def test_astronaut_has_one_plausible_face(astronaut):
  boxes = preprocess.detect_faces(astronaut)
  assert len(boxes) == 1
  box = boxes[0]
  assert box.detector == "hog" and box.score > 1.0
  assert 160 < box.left < 190 and 60 < box.top < 90  # the face spans ~(175..266, 76..167)
  assert 80 < box.width < 110 and 80 < box.height < 110


def test_landmarks_are_in_anatomical_order(astronaut):
  box = preprocess.detect_faces(astronaut)[0]
  points = preprocess.landmarks_68(astronaut, box)
  assert points.shape == (68, 2) and points.dtype == np.float32
  np.testing.assert_array_equal(points % 1, 0.5)  # dlib's whole pixels, at their centres
  left_eye = points[detect.EYE_IMAGE_LEFT].mean(0)
  right_eye = points[detect.EYE_IMAGE_RIGHT].mean(0)
  nose_tip, mouth, chin = points[30], points[detect.MOUTH].mean(0), points[8]
  assert left_eye[0] + 40 < right_eye[0]
  assert max(left_eye[1], right_eye[1]) < nose_tip[1] < mouth[1] < chin[1]
  assert points[detect.BROWS, 1].max() < min(left_eye[1], right_eye[1])
  assert left_eye[0] < nose_tip[0] < right_eye[0]
  # every point lies near the detection box (the jaw may leave it a little)
  assert np.all(points >= [box.left - 10, box.top - 20])
  assert np.all(points <= [box.right + 10, box.bottom + 20])


def test_detection_on_a_downscaled_copy_maps_boxes_back(astronaut):
  full = preprocess.detect_faces(astronaut)[0]
  small = preprocess.detect_faces(astronaut, detect_max_side=256)[0]
  corners = np.array([small.left, small.top, small.right, small.bottom])
  np.testing.assert_allclose(corners, [full.left, full.top, full.right, full.bottom], atol=12)


def test_uint8_and_float_images_agree(astronaut):
  pixels = skimage.data.astronaut()
  assert preprocess.detect_faces(pixels) == preprocess.detect_faces(astronaut)


def test_cnn_fallback_runs_when_hog_finds_nothing(astronaut, monkeypatch):
  monkeypatch.setattr(detect, "_hog_detect", lambda *args: [])
  head = _face_region(astronaut, 0.8)  # small, to keep the CNN fast
  boxes = preprocess.detect_faces(head)
  assert [box.detector for box in boxes] == ["mmod"]
  assert 30 < boxes[0].left < 60 and 60 < boxes[0].width < 95
  assert preprocess.detect_faces(head, cnn_fallback=False) == []


def test_mmod_boxes_are_moved_to_where_hog_puts_the_face(astronaut):
  head = detect.to_uint8(_face_region(astronaut, 0.8))
  hog = detect._hog_detect(head, 1, 0.3)[0]
  mmod = detect._mmod_detect(head, 1, 0.0)[0]
  centre = lambda b: np.array([(b.left + b.right) / 2, (b.top + b.bottom) / 2])
  shift = np.array(detect.MMOD_TO_HOG) * mmod.width
  moved, raw = (np.linalg.norm(c - centre(hog)) / hog.width
                for c in (centre(mmod), centre(mmod) - shift))
  assert moved < 0.06 < raw


def test_each_detector_sees_a_capped_copy_and_boxes_map_back(monkeypatch):
  seen = []
  def fake_mmod(pixels, upsample, min_score):
    seen.append(("mmod", pixels.shape, upsample, min_score))
    return [detect.FaceBox(10.0, 20.0, 60.0, 70.0, 1.0, "mmod")]
  monkeypatch.setattr(detect, "_hog_detect", lambda pixels, *args: seen.append(
      ("hog", pixels.shape)) or [])
  monkeypatch.setattr(detect, "_mmod_detect", fake_mmod)
  (box,) = preprocess.detect_faces(np.zeros((1024, 2048, 3), np.float32), upsample=2)
  assert seen == [("hog", (512, 1024, 3)), ("mmod", (256, 512, 3), 2, 0.3)]
  assert (box.left, box.top, box.right, box.bottom) == (40.0, 80.0, 240.0, 280.0)


def test_blank_image_has_no_face_and_the_error_names_the_source():
  blank = np.full((160, 160, 3), 0.5, np.float32)
  assert preprocess.detect_faces(blank) == []
  with pytest.raises(preprocess.FaceNotFoundError, match="^blank.png: no face found$"):
    preprocess.detect_and_align(blank, source="blank.png")
  assert issubclass(preprocess.FaceNotFoundError, JaxfaceError)


def test_two_faces_largest_first(astronaut):
  big, small = _face_region(astronaut, 1.0), _face_region(astronaut, 0.75)
  canvas = np.full((200, 360, 3), 0.5, np.float32)
  canvas[:150, 10:160] = small
  canvas[:, 160:] = big
  crops = preprocess.detect_and_align(canvas, all_faces=True, source="pair.png")
  assert len(crops) == 2
  assert crops[0].box.area > 1.5 * crops[1].box.area
  assert crops[0].box.left > 160 and crops[1].box.right < 170  # big face on the right
  assert all(crop.source == "pair.png" for crop in crops)
  (only,) = preprocess.detect_and_align(canvas, source="pair.png")
  assert only.box == crops[0].box


def test_image_shape_is_checked():
  with pytest.raises(ValueError, match="RGB"):
    preprocess.detect_faces(np.zeros((64, 64), np.float32))


def test_weak_fallback_returns_the_best_low_scoring_face(astronaut):
  shaded = astronaut.copy()
  shaded[95:125, 170:270] *= 0.7  # darkened eyes: HOG scores the face ~0.25 (< 0.3)
  assert preprocess.detect_faces(shaded, cnn_fallback=False) == []
  (box,) = preprocess.detect_faces(shaded, cnn_fallback=False, weak_min_score=-0.5)
  assert box.detector == "hog-weak" and -0.5 < box.score < 1.0
  assert 160 < box.left < 200 and 60 < box.top < 100  # the face, not background texture
  # weak boxes narrower than weak_min_side are ignored
  wider = preprocess.detect_faces(shaded, cnn_fallback=False, weak_min_score=-0.5,
                                  weak_min_side=box.width + 1)
  assert box not in wider and all(b.width > box.width for b in wider)
  assert preprocess.detect_faces(shaded, cnn_fallback=False, weak_min_score=-0.5,
                                 weak_min_side=1000) == []
  (crop,) = preprocess.detect_and_align(shaded, cnn_fallback=False, weak_min_score=-0.5)
  assert crop.box == box


def test_last_resort_finds_a_face_in_deep_shadow_on_an_equalised_copy(astronaut):
  dark = detect.to_uint8(astronaut[:256, 100:356] * 0.04)  # pixel values 0-10
  assert preprocess.detect_faces(dark) == []
  assert preprocess.detect_faces(dark, cnn_fallback=False, weak_min_score=-1.0) == []
  (box,) = preprocess.detect_faces(dark, weak_min_score=-1.0)
  assert box.detector == "mmod-equalized" and box.score > 0.3
  assert 60 < box.left < 100 and 70 < box.width < 110  # HOG, unshaded: left 76, width 90
