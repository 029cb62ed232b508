"""The synthetic dataset's record format: encode -> serialize -> parse round trips."""

import zlib

import numpy as np
import pytest
import tensorflow as tf

from data_pipelines import features

tf.config.set_visible_devices([], "GPU")


def random_record(rng, *, identity=7, frames=3, size=32, vertices=10, smooth=False):
  """A record of random arrays in the shapes `encode_example` takes."""
  if smooth:  # JPEG-friendly: gradients, as rendered images are
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = np.stack([np.stack([80 + 100 * xx * rng.uniform(.5, 1), 60 + 120 * yy,
                                150 - 90 * xx * yy], -1) for _ in range(frames)])
    image = image.astype(np.uint8)
  else:
    image = rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8)
  return {
      "identity": identity,
      "image": image,
      "mask": rng.random((frames, size, size)) > 0.5,
      "occlusion": (rng.random((frames, size, size)) > 0.8).astype(np.uint8) * 255,
      "landmarks": rng.uniform(0, size, (frames, 68, 2)).astype(np.float32),
      "position_map": rng.uniform(-1000, 1000, (frames, 256, 256, 3)).astype(np.float32),
      "shape": rng.normal(size=5), "expression": rng.normal(size=(frames, 4)),
      "albedo": rng.normal(size=6), "rotation": rng.normal(size=(frames, 3)),
      "translation": rng.normal(size=(frames, 3)) * 10, "focal": rng.uniform(500, 1500, frames),
      "light": rng.normal(size=(frames, 9, 3)), "key_light": rng.normal(size=(frames, 7)),
      "detail": rng.normal(size=(vertices, 3)),
      "tags": ["expression,large_pose", "", "occluded"][:frames],
  }


def old_format(serialized: bytes) -> bytes:
  """The record as writers before `masks_zlib` stored it: PNG `mask` and `occlusion`.

  Built from the new record's own masks with the old writer's call
  (`tf.io.encode_png` of [S, S, 1], default compression), without `masks_zlib`.
  """
  example = tf.train.Example.FromString(serialized)
  feature = example.features.feature
  size = feature["image_size"].int64_list.value[0]
  both = [np.frombuffer(zlib.decompress(b), np.uint8).reshape(size, size, 2)
          for b in feature["masks_zlib"].bytes_list.value]
  for channel, key in enumerate(("mask", "occlusion")):
    feature[key].bytes_list.value.extend(
        tf.io.encode_png(b[..., channel:channel + 1]).numpy() for b in both)
  del feature["masks_zlib"]
  return example.SerializeToString()


def test_png_round_trip_is_exact_and_float_features_match():
  rng = np.random.default_rng(0)
  record = random_record(rng)
  parsed = features.parse_example(tf.constant(features.encode_example(record, image_format="png")))
  assert int(parsed["identity"]) == 7
  assert (int(parsed["num_frames"]), int(parsed["image_size"]), int(parsed["num_vertices"])) == (3, 32, 10)
  assert parsed["image_format"].numpy() == b"png"
  np.testing.assert_array_equal(parsed["image"].numpy(), record["image"])
  np.testing.assert_array_equal(parsed["mask"].numpy(), record["mask"].astype(np.uint8) * 255)
  np.testing.assert_array_equal(parsed["occlusion"].numpy(), record["occlusion"])
  for key in ("landmarks", "shape", "expression", "albedo", "rotation", "translation",
              "focal", "light", "key_light"):
    np.testing.assert_array_equal(parsed[key].numpy(), np.asarray(record[key], np.float32),
                                  err_msg=key)
  assert parsed["light"].shape == (3, 9, 3) and parsed["expression"].shape == (3, 4)
  # Position map: 1/32 px steps, so within half a step.
  error = np.abs(parsed["position_map"].numpy() - record["position_map"])
  assert parsed["position_map"].dtype == tf.float32 and error.max() <= 1 / 64 + 1e-6
  np.testing.assert_allclose(parsed["detail"].numpy(), record["detail"], rtol=1e-3, atol=1e-3)
  assert [t.decode() for t in parsed["tags"].numpy()] == record["tags"]
  assert "masks_zlib" not in parsed  # the same keys as before `masks_zlib`


def test_masks_are_stored_as_one_zlib_buffer_per_frame_and_no_pngs():
  rng = np.random.default_rng(5)
  record = random_record(rng)
  feature = tf.train.Example.FromString(features.encode_example(record)).features.feature
  assert "mask" not in feature and "occlusion" not in feature
  buffers = feature["masks_zlib"].bytes_list.value
  assert len(buffers) == 3
  for t, buffer in enumerate(buffers):  # the documented layout, read without TensorFlow
    both = np.frombuffer(zlib.decompress(buffer), np.uint8).reshape(32, 32, 2)
    np.testing.assert_array_equal(both[..., 0], record["mask"][t].astype(np.uint8) * 255)
    np.testing.assert_array_equal(both[..., 1], record["occlusion"][t])


@pytest.mark.parametrize("in_dataset_map", [False, True])
def test_old_records_with_png_masks_parse_to_the_same_arrays(in_dataset_map):
  rng = np.random.default_rng(6)
  record = random_record(rng)
  new = features.encode_example(record, image_format="png")
  old = old_format(new)
  assert "masks_zlib" not in tf.train.Example.FromString(old).features.feature
  if in_dataset_map:  # graph mode, as the input pipeline runs it
    parsed_new, parsed_old = tf.data.Dataset.from_tensor_slices([new, old]).map(
        features.parse_example)
  else:
    parsed_new, parsed_old = (features.parse_example(tf.constant(r)) for r in (new, old))
  assert set(parsed_old) == set(parsed_new)
  for key in ("mask", "occlusion"):
    assert parsed_old[key].dtype == tf.uint8 and parsed_old[key].shape == (3, 32, 32)
    np.testing.assert_array_equal(parsed_old[key].numpy(), parsed_new[key].numpy(), err_msg=key)
  np.testing.assert_array_equal(parsed_old["mask"].numpy(), record["mask"].astype(np.uint8) * 255)
  np.testing.assert_array_equal(parsed_old["occlusion"].numpy(), record["occlusion"])
  np.testing.assert_array_equal(parsed_old["image"].numpy(), parsed_new["image"].numpy())


def test_decode_masks_picks_frames_from_either_form():
  record = random_record(np.random.default_rng(7))
  frames = tf.constant([2, 0])
  for serialized in (features.encode_example(record), old_format(features.encode_example(record))):
    raw = features.parse_raw(tf.constant(serialized), ["mask"])  # brings all mask features
    assert set(features.MASK_FEATURES) <= set(raw)
    mask, occlusion = features.decode_masks(raw, frames)
    np.testing.assert_array_equal(mask.numpy(), record["mask"][[2, 0]].astype(np.uint8) * 255)
    np.testing.assert_array_equal(occlusion.numpy(), record["occlusion"][[2, 0]])


@pytest.mark.parametrize("buffer, frames", [
    (b"not a zlib stream", [1]),
    (zlib.compress(bytes(32 * 32 * 2))[:-6], [1]),  # truncated
    (zlib.compress(bytes(32 * 32 * 2 - 1)), [1]),  # inflates, one byte short of [S, S, 2]
    (zlib.compress(bytes(32 * 32 * 2 - 1)), [0, 1, 2]),  # every frame one byte short
    (zlib.compress(bytes(32 * 32 * 2 + 2)), [0, 1, 2]),  # every frame two bytes long
], ids=["garbage", "truncated", "short", "all_short", "all_long"])
def test_an_undecodable_masks_buffer_raises(buffer, frames):
  record = random_record(np.random.default_rng(8))
  example = tf.train.Example.FromString(features.encode_example(record))
  for t in frames:
    example.features.feature["masks_zlib"].bytes_list.value[t] = buffer
  with pytest.raises((tf.errors.InvalidArgumentError, tf.errors.DataLossError)):
    features.parse_example(tf.constant(example.SerializeToString()))


def test_jpeg_round_trip_within_tolerance():
  rng = np.random.default_rng(1)
  record = random_record(rng, smooth=True, size=64)
  parsed = features.parse_example(tf.constant(features.encode_example(record)))  # JPEG q=95
  assert parsed["image_format"].numpy() == b"jpeg"
  error = np.abs(parsed["image"].numpy().astype(int) - record["image"].astype(int))
  assert error.mean() < 1.5 and error.max() <= 12
  # Masks are lossless whatever the image format.
  np.testing.assert_array_equal(parsed["mask"].numpy() > 0, record["mask"])


def test_position_map_codes_and_range():
  values = np.array([0.0, 1 / 32, -1 / 32, 1023.9, -1024.0, 5000.0, -5000.0], np.float32)
  codes = features.quantize_position_map(values)
  np.testing.assert_array_equal(codes[:5], [32768, 32769, 32767, 32768 + 32765, 0])
  assert codes[5] == 65535 and codes[6] == 0  # beyond +-1024 px: clipped


def test_parse_example_runs_in_a_dataset_map():
  rng = np.random.default_rng(2)
  serialized = [features.encode_example(random_record(rng, identity=i), image_format="png")
                for i in range(2)]
  dataset = tf.data.Dataset.from_tensor_slices(serialized).map(features.parse_example)
  identities = [int(element["identity"]) for element in dataset]
  assert identities == [0, 1]


@pytest.mark.parametrize("key, value", [
    ("landmarks", np.zeros((3, 5, 2))),
    ("position_map", np.zeros((3, 128, 128, 3))),
    ("light", np.zeros((3, 27))),
    ("tags", ["a"]),
    ("mask", np.zeros((3, 32, 32), np.float32)),
])
def test_encode_rejects_inconsistent_shapes(key, value):
  record = random_record(np.random.default_rng(3))
  record[key] = value
  with pytest.raises(ValueError, match=key if key != "mask" else "bool or uint8"):
    features.encode_example(record)


def test_parse_raw_leaves_images_encoded_and_parses_only_what_is_asked():
  record = random_record(np.random.default_rng(4))
  raw = features.parse_raw(tf.constant(features.encode_example(record, image_format="png")),
                           ["image", "landmarks"])
  assert set(raw) == {"image", "landmarks", "num_frames", "image_size", "num_vertices"}
  assert raw["image"].dtype == tf.string and raw["image"].shape == (3,)
  np.testing.assert_array_equal(features.decode_image(raw["image"][1]).numpy(), record["image"][1])
