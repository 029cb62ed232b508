"""PRNet augmentation: images, masks, landmarks and position maps move together."""

import math

import numpy as np
import pytest
import tensorflow as tf

from data_pipelines import augment

tf.config.set_visible_devices([], "GPU")

SIZE = 64
NO_OCCLUSION = {"occlusion_probability": 0.0}
GEOMETRY_ONLY = {"occlusion_probability": 0.0, "color_scale": (1.0, 1.0)}
NO_GEOMETRY = {"rotation_degrees": 0.0, "translation": 0.0, "scale": (1.0, 1.0)}


def dot_frames(num=6, size=SIZE):
  """Frames with a 3x3 white dot centred on each of 12 landmarks (also the mask)."""
  angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
  rows = np.round(size / 2 + 0.28 * size * np.sin(angles)).astype(int)
  cols = np.round(size / 2 + 0.28 * size * np.cos(angles)).astype(int)
  image = np.zeros((num, size, size, 3), np.uint8)
  for r, c in zip(rows, cols):
    image[:, r - 1:r + 2, c - 1:c + 2] = 255
  # Landmark = centre of the dot's middle pixel (row r, column c): (c + .5, r + .5).
  landmarks = np.tile(np.stack([cols + 0.5, rows + 0.5], -1)[None], (num, 1, 1)).astype(np.float32)
  return {"image": tf.constant(image), "mask": tf.constant(image[..., 0]),
          "landmarks": tf.constant(landmarks)}


def brightness_centroids(image, points, radius=3.0):
  """Intensity-weighted centroid and peak of `image` [H,W] within `radius` of each point."""
  height, width = image.shape
  yy, xx = np.mgrid[0:height, 0:width] + 0.5
  out, peaks = [], []
  for x, y in points:
    near = (xx - x) ** 2 + (yy - y) ** 2 <= radius ** 2
    weights = np.where(near, image, 0.0)
    total = weights.sum()
    out.append([(weights * xx).sum() / max(total, 1e-9), (weights * yy).sum() / max(total, 1e-9)])
    peaks.append(weights.max())
  return np.array(out), np.array(peaks)


@pytest.mark.parametrize("interpolation, output_size", [("bilinear", SIZE), ("bilinear", 48),
                                                        ("nearest", SIZE)])
def test_landmarks_land_on_their_dots(interpolation, output_size):
  frames = dot_frames()
  out = augment.augment_frames(frames, tf.constant([3, 4]), output_size=output_size,
                               ranges=GEOMETRY_ONLY, interpolation=interpolation)
  angles = np.degrees(np.abs(np.arctan2(out["matrix"][:, 1, 0], out["matrix"][:, 0, 0])))
  assert angles.max() > 10  # the transforms really rotate
  for image, mask, points in zip(out["image"].numpy(), out["mask"].numpy(),
                                 out["landmarks"].numpy()):
    inside = np.all((points > 2) & (points < output_size - 2), axis=1)
    assert inside.sum() >= 6
    centroids, peaks = brightness_centroids(image[..., 0], points[inside])
    assert peaks.min() > 0.3, "a landmark has no dot under it"
    # Within 1 px (the brief) and, bilinear, within 1/4 px: a half-pixel slip in the
    # pixel-centre convention would show.
    np.testing.assert_allclose(centroids, points[inside], atol=0.25 if interpolation == "bilinear" else 1.0)
    # The mask (same dots) moved with them: set under every landmark's pixel.
    pixels = np.floor(points[inside]).astype(int)
    assert mask[pixels[:, 1], pixels[:, 0]].all()


def test_fused_warp_matches_image_projective_transform():
  rng = np.random.default_rng(0)
  rgbv = tf.constant(rng.integers(0, 256, (5, 40, 40, 4), dtype=np.uint8))
  frames = {"image": rgbv[..., :3], "mask": rgbv[..., 3], "landmarks": tf.zeros([5, 68, 2])}
  out = augment.augment_frames(frames, tf.constant([1, 2]), output_size=36, ranges=NO_OCCLUSION)
  params = augment.sample_parameters(tf.constant([1, 2]), 5, image_size=40,
                                     **{**augment.DEFAULT_RANGES, **NO_OCCLUSION})
  reference = augment.warp_images(tf.cast(rgbv, tf.float32), out["matrix"], 36).numpy()
  expected = np.minimum(reference[..., :3] * params["color"].numpy()[:, None, None] / 255, 1)
  np.testing.assert_allclose(out["image"].numpy(), expected, atol=1e-3)
  np.testing.assert_array_equal(out["mask"].numpy(), (reference[..., 3] >= 127.5).astype(np.float32))


def test_color_scale_is_per_channel_and_within_range():
  grey = np.full((8, 16, 16, 3), 128, np.uint8)
  frames = {"image": tf.constant(grey), "mask": tf.fill([8, 16, 16], tf.constant(255, tf.uint8)),
            "landmarks": tf.zeros([8, 68, 2])}
  out = augment.augment_frames(frames, tf.constant([5, 6]), output_size=16,
                               ranges={**NO_GEOMETRY, **NO_OCCLUSION})
  factors = out["image"].numpy() / (128 / 255)
  per_channel = factors.reshape(8, -1, 3)
  np.testing.assert_allclose(per_channel, np.broadcast_to(per_channel[:, :1], per_channel.shape),
                             atol=1e-5)  # one factor per channel
  assert factors.min() >= 0.6 - 1e-5 and factors.max() <= 1.4 + 1e-5
  assert np.ptp(per_channel[:, 0], axis=1).max() > 0.05  # channels scaled differently
  assert np.all(out["mask"].numpy() == 1)


def test_occluders_cover_pixels_and_leave_the_mask():
  grey = np.full((8, 32, 32, 3), 100, np.uint8)
  frames = {"image": tf.constant(grey), "mask": tf.fill([8, 32, 32], tf.constant(255, tf.uint8)),
            "landmarks": tf.zeros([8, 68, 2])}
  ranges = {**NO_GEOMETRY, "color_scale": (1.0, 1.0), "occlusion_probability": 1.0}
  out = augment.augment_frames(frames, tf.constant([7, 8]), output_size=32, ranges=ranges)
  image, mask = out["image"].numpy(), out["mask"].numpy()
  changed = np.any(np.abs(image - 100 / 255) > 1e-6, axis=-1)
  np.testing.assert_array_equal(mask == 0, changed)  # occluded <=> removed from the mask
  covered = (mask == 0).mean(axis=(1, 2))
  assert covered.min() > 0.01 and covered.max() < 0.6
  assert image.min() >= 0 and image.max() <= 1
  none = augment.augment_frames(frames, tf.constant([7, 8]), output_size=32,
                                ranges={**ranges, "occlusion_probability": 0.0})
  assert np.all(none["mask"].numpy() == 1)


def test_same_seed_same_augmentation_other_seed_other():
  frames = dot_frames(num=3)

  def run(seed):
    return augment.augment_frames(frames, tf.constant(seed), output_size=SIZE)

  a, b, c = run([1, 1]), run([1, 1]), run([1, 2])
  np.testing.assert_array_equal(a["image"].numpy(), b["image"].numpy())
  np.testing.assert_array_equal(a["landmarks"].numpy(), b["landmarks"].numpy())
  assert not np.allclose(a["landmarks"].numpy(), c["landmarks"].numpy())


def test_position_map_moves_like_points_and_depth_scales():
  rng = np.random.default_rng(1)
  matrix = augment.similarity_matrix(tf.constant([0.3, -0.7]), tf.constant([1.1, 0.9]),
                                     tf.constant([[0.05, -0.02], [0.0, 0.1]]),
                                     input_size=64, output_size=32)
  position_map = tf.constant(rng.uniform(0, 64, (2, 256, 256, 3)), tf.float32)
  moved = augment.transform_position_map(matrix, position_map).numpy()
  np.testing.assert_allclose(moved[..., :2],
                             augment.transform_points(matrix, position_map[..., :2]).numpy(),
                             rtol=1e-6, atol=1e-4)
  scales = np.array([1.1, 0.9]) * 32 / 64
  np.testing.assert_allclose(moved[..., 2], position_map.numpy()[..., 2] * scales[:, None, None],
                             rtol=1e-5)


def test_resize_keeps_the_pixel_centre_convention():
  image = np.zeros((1, 16, 16, 3), np.uint8)
  image[0, 3, 5] = 255  # pixel (row 3, column 5), centred at (5.5, 3.5)
  occlusion = np.zeros((1, 16, 16), np.uint8)
  occlusion[0, 3, 5] = 255  # the record's occluder covers that pixel: not visible
  frames = {"image": tf.constant(image), "mask": tf.fill([1, 16, 16], tf.constant(255, tf.uint8)),
            "occlusion": tf.constant(occlusion), "landmarks": tf.constant([[[5.5, 3.5]]], tf.float32)}
  out = augment.resize_frames(frames, output_size=32)
  np.testing.assert_allclose(out["landmarks"].numpy()[0, 0], [11.0, 7.0])
  # Upsampled 2x the bright pixel becomes a blob centred on the moved landmark.
  centroid, peak = brightness_centroids(out["image"].numpy()[0, ..., 0], [[11.0, 7.0]], radius=2.5)
  assert peak[0] > 0.5
  np.testing.assert_allclose(centroid[0], [11.0, 7.0], atol=0.05)
  mask = out["mask"].numpy()[0]
  assert mask[6:8, 10:12].max() == 0 and mask.sum() >= 32 * 32 - 3 * 3  # the hole moved too
  same = augment.resize_frames(frames, output_size=16)
  np.testing.assert_allclose(same["image"].numpy(), image / 255, atol=1e-7)
  np.testing.assert_array_equal(same["mask"].numpy()[0], 1 - occlusion[0] / 255)


def test_similarity_matrix_rotates_about_the_centre():
  matrix = augment.similarity_matrix(tf.constant([math.pi / 2]), tf.constant([1.0]),
                                     tf.zeros([1, 2]), input_size=20, output_size=20)
  points = tf.constant([[[10.0, 10.0], [15.0, 10.0]]])
  moved = augment.transform_points(matrix, points).numpy()[0]
  np.testing.assert_allclose(moved, [[10, 10], [10, 15]], atol=1e-5)  # clockwise on screen
