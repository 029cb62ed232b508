"""The training input pipeline on small synthetic shards written with `encode_example`."""

import json
import logging
import os
import shutil
import tempfile
import zlib

import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from data_pipelines import features, input_pipeline
from tests.data_pipelines.test_features import old_format

tf.config.set_visible_devices([], "GPU")

FRAMES, SIZE, FILES, PER_FILE = 3, 32, 4, 5


def make_record(rng, identity: int) -> dict:
  """A small record whose every per-frame value identifies its frame."""
  yy, xx = np.mgrid[0:256, 0:256].astype(np.float32) * (SIZE / 256)
  position_map = np.stack([np.stack([xx + t, yy - t, np.full_like(xx, identity)], -1)
                           for t in range(FRAMES)])
  return {
      "identity": identity,
      "image": rng.integers(0, 256, (FRAMES, SIZE, SIZE, 3), dtype=np.uint8),
      "mask": rng.random((FRAMES, SIZE, SIZE)) > 0.3,
      "occlusion": rng.random((FRAMES, SIZE, SIZE)) > 0.8,
      "landmarks": rng.uniform(4, SIZE - 4, (FRAMES, 68, 2)).astype(np.float32),
      "position_map": position_map,
      "shape": rng.normal(size=4), "expression": rng.normal(size=(FRAMES, 3)),
      "albedo": rng.normal(size=5), "rotation": rng.normal(size=(FRAMES, 3)),
      "translation": rng.normal(size=(FRAMES, 3)), "focal": rng.uniform(500, 900, FRAMES),
      "light": rng.normal(size=(FRAMES, 9, 3)), "key_light": rng.normal(size=(FRAMES, 7)),
      "detail": rng.normal(size=(6, 3)),
      "tags": [""] * FRAMES,
  }


def write_dataset(folder, records: dict, shards: list[list[int]], old_shards=()) -> list[str]:
  """Writes PNG-image shards (identities per shard) and dataset_info.json; returns paths.

  Shards whose index is in `old_shards` hold records in the format before `masks_zlib`.
  """
  os.makedirs(folder, exist_ok=True)
  names = [f"train-{k:05d}-of-{len(shards):05d}.tfrecord" for k in range(len(shards))]
  for k, (name, identities) in enumerate(zip(names, shards)):
    with tf.io.TFRecordWriter(os.path.join(folder, name)) as writer:
      for i in identities:
        serialized = features.encode_example(records[i], image_format="png")
        writer.write(old_format(serialized) if k in old_shards else serialized)
  info = {"splits": {"train": {"shards": names, "num_records": sum(map(len, shards)),
                               "num_frames": FRAMES, "image_size": SIZE}}}
  with open(os.path.join(folder, "dataset_info.json"), "w", encoding="utf-8") as handle:
    json.dump(info, handle)
  return [os.path.join(folder, name) for name in names]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  rng = np.random.default_rng(0)
  records = {i: make_record(rng, i) for i in range(FILES * PER_FILE)}
  folder = str(tmp_path_factory.mktemp("synthetic"))
  shards = [list(range(k * PER_FILE, (k + 1) * PER_FILE)) for k in range(FILES)]
  return folder, records, write_dataset(folder, records, shards)


def config(data_dir, **fields):
  base = {"data_dir": data_dir, "batch_size": 4, "frames": 2, "image_size": SIZE,
          "shuffle_buffer": 0, "repeat": False, "augment": False}
  return ml_collections.ConfigDict({"input": {**base, **fields}})


def identities(pipeline) -> list[int]:
  return [int(i) for batch in pipeline for i in batch["identity"]]


def test_batches_have_the_documented_shapes_and_frames_of_one_identity(dataset):
  folder, records, _ = dataset
  pipeline = input_pipeline.make_dataset(
      config(folder, frames=2, image_size=24, augment=True, ground_truth=True,
             position_map=True, detail=True, shuffle_buffer=8),
      "train", process_index=0, process_count=1)
  batch = next(iter(pipeline))
  expected = {"image": ((4, 2, 24, 24, 3), np.float32), "landmarks": ((4, 2, 68, 2), np.float32),
              "mask": ((4, 2, 24, 24), np.float32), "identity": ((4,), np.int32),
              "position_map": ((4, 2, 256, 256, 3), np.float32),
              "shape": ((4, 4), np.float32), "expression": ((4, 2, 3), np.float32),
              "albedo": ((4, 5), np.float32), "rotation": ((4, 2, 3), np.float32),
              "translation": ((4, 2, 3), np.float32), "focal": ((4, 2), np.float32),
              "light": ((4, 2, 9, 3), np.float32), "detail": ((4, 6, 3), np.float32)}
  assert {k: (v.shape, v.dtype) for k, v in batch.items()} == expected
  assert 0 <= batch["image"].min() and batch["image"].max() <= 1
  assert set(np.unique(batch["mask"])) <= {0.0, 1.0}
  for row, identity in enumerate(batch["identity"]):
    record = records[int(identity)]
    np.testing.assert_allclose(batch["shape"][row], record["shape"], rtol=1e-6)
    np.testing.assert_allclose(batch["detail"][row], record["detail"], rtol=1e-3, atol=1e-3)
    # The T frames are distinct frames of this record, the same ones for every key.
    chosen = [int(np.argmin(np.abs(record["expression"] - e).sum(1))) for e in batch["expression"][row]]
    assert len(set(chosen)) == 2
    np.testing.assert_allclose(batch["expression"][row], record["expression"][chosen], rtol=1e-6)
    np.testing.assert_allclose(batch["focal"][row], record["focal"][chosen], rtol=1e-6)
    # Position map z = identity here, scaled by each frame's augmentation scale (0.9-1.2 x 24/32).
    z = batch["position_map"][row, :, 0, 0, 2] / max(int(identity), 1)
    assert int(identity) == 0 or np.all((z > 0.9 * 0.75 - 1e-3) & (z < 1.2 * 0.75 + 1e-3))


@pytest.mark.parametrize("image_size", [SIZE, SIZE // 2])
def test_without_augmentation_the_first_frames_come_out_unchanged(dataset, image_size):
  folder, records, _ = dataset
  pipeline = input_pipeline.make_dataset(config(folder, image_size=image_size, position_map=True),
                                         "train", process_index=0, process_count=1)
  batch = next(iter(pipeline))
  scale = image_size / SIZE
  for row, identity in enumerate(batch["identity"]):
    record = records[int(identity)]
    np.testing.assert_allclose(batch["landmarks"][row], record["landmarks"][:2] * scale, rtol=1e-5)
    np.testing.assert_allclose(batch["position_map"][row, ..., :2],
                               record["position_map"][:2, ..., :2] * scale, atol=1 / 64 + 1e-4)
    if image_size == SIZE:
      np.testing.assert_allclose(batch["image"][row], record["image"][:2] / 255, atol=1e-7)
      visible = record["mask"][:2] & ~record["occlusion"][:2]
      np.testing.assert_array_equal(batch["mask"][row], visible.astype(np.float32))
    else:  # 2x smaller: each output pixel is the mean of a 2x2 block (kept as uint8)
      blocks = record["image"][:2].reshape(2, image_size, 2, image_size, 2, 3).mean((2, 4)) / 255
      np.testing.assert_allclose(batch["image"][row], blocks, atol=0.5 / 255 + 1e-6)


@pytest.mark.parametrize("augment", [False, True])
def test_shards_of_earlier_versions_with_png_masks_still_read(dataset, tmp_path, augment):
  _, records, _ = dataset
  folder = str(tmp_path / "mixed")
  write_dataset(folder, records, [[0, 1, 2], [3, 4, 5]], old_shards=(1,))
  options = dict(batch_size=1, frames=FRAMES)
  if augment:  # masks under the identity transform: exact, and through the augment path
    options.update(augment=True, augmentation={
        "rotation_degrees": 0.0, "translation": 0.0, "scale": (1.0, 1.0),
        "color_scale": (1.0, 1.0), "occlusion_probability": 0.0, "interpolation": "nearest"})
  pipeline = input_pipeline.make_dataset(config(folder, **options), "train",
                                         process_index=0, process_count=1)
  seen = []
  for batch in pipeline:
    record = records[int(batch["identity"][0])]
    # Frames are told apart by their landmarks (the augmented frames come in random order).
    order = [int(np.argmin(np.abs(record["landmarks"] - points).sum((1, 2))))
             for points in batch["landmarks"][0]]
    visible = record["mask"][order] & ~record["occlusion"][order]
    np.testing.assert_array_equal(batch["mask"][0], visible.astype(np.float32))
    seen.append(int(batch["identity"][0]))
  assert sorted(seen) == list(range(6))
  assert pipeline.stats.undecodable_records == 0


def test_hosts_read_disjoint_data_that_covers_everything(dataset):
  folder, records, _ = dataset
  seen = [identities(input_pipeline.make_dataset(config(folder, batch_size=2), "train",
                                                 process_index=p, process_count=2))
          for p in range(2)]
  assert not set(seen[0]) & set(seen[1])
  assert sorted(seen[0] + seen[1]) == sorted(records)
  # Fewer files than hosts: the records of the one file are dealt instead.
  one = os.path.join(os.path.dirname(folder), "one_file")
  write_dataset(one, records, [list(range(6))])
  seen = [identities(input_pipeline.make_dataset(config(one, batch_size=2), "train",
                                                 process_index=p, process_count=2))
          for p in range(2)]
  assert not set(seen[0]) & set(seen[1]) and sorted(seen[0] + seen[1]) == list(range(6))


def test_same_seed_same_batches_other_seed_other_order(dataset):
  folder, _, _ = dataset

  def first_batches(seed, count=3):
    pipeline = input_pipeline.make_dataset(
        config(folder, seed=seed, shuffle_buffer=8, repeat=True, augment=True, image_size=16),
        "train", process_index=0, process_count=1)
    iterator = iter(pipeline)
    return [next(iterator) for _ in range(count)]

  a, b, c = first_batches(1), first_batches(1), first_batches(2)
  for x, y in zip(a, b):
    for key in x:
      np.testing.assert_array_equal(x[key], y[key], err_msg=key)

  def order(batches):
    return np.concatenate([x["identity"] for x in batches])

  assert not np.array_equal(order(a), order(c))
  assert len(set(order(a))) == 12  # 12 distinct identities in the first 3 batches


def copy_dataset(dataset, tmp_path):
  folder, _, paths = dataset
  target = tmp_path / "copy"
  shutil.copytree(folder, target)
  return str(target), [str(target / os.path.basename(p)) for p in paths]


def record_offsets(path):
  return [offset for offset, _ in input_pipeline.read_records(path)]


def read_bytes(path) -> bytes:
  with open(path, "rb") as handle:
    return handle.read()


def flip(path, position, count=4):
  data = bytearray(read_bytes(path))
  for i in range(position, position + count):
    data[i] ^= 0xA5
  with open(path, "wb") as handle:
    handle.write(bytes(data))


def test_a_corrupt_record_is_skipped_and_counted(dataset, tmp_path, caplog):
  folder, paths = copy_dataset(dataset, tmp_path)
  offsets = record_offsets(paths[1])
  middle = (offsets[2] + offsets[3]) // 2  # inside the payload of identity 7
  flip(paths[1], middle)
  pipeline = input_pipeline.make_dataset(config(folder, batch_size=1), "train",
                                         process_index=0, process_count=1)
  with caplog.at_level(logging.WARNING):
    seen = identities(pipeline)
  assert sorted(seen) == [i for i in range(20) if i != 7]
  assert pipeline.stats.corrupt_records == 1 and pipeline.stats.undecodable_records == 0
  assert pipeline.stats.sound_records == 19
  assert any("corrupt" in r.message and f"@{offsets[2]}" in r.message for r in caplog.records)


def test_broken_headers_and_a_truncated_tail_are_skipped_and_counted(dataset, tmp_path):
  folder, paths = copy_dataset(dataset, tmp_path)
  offsets = record_offsets(paths[0])
  flip(paths[0], offsets[1] + 2, count=1)  # the length of identity 1: resynchronised
  last = record_offsets(paths[3])[-1]
  with open(paths[3], "r+b") as handle:  # identity 19 cut in the middle
    handle.truncate(last + 100)
  pipeline = input_pipeline.make_dataset(config(folder, batch_size=1), "train",
                                         process_index=0, process_count=1)
  assert sorted(identities(pipeline)) == [i for i in range(20) if i not in (1, 19)]
  assert pipeline.stats.corrupt_records == 2
  assert [p.split(":")[0] for p in pipeline.stats.problems] == [
      f"{os.path.basename(paths[0])}#1@{offsets[1]}", f"{os.path.basename(paths[3])}#4@{last}"]


def test_undecodable_images_and_masks_are_skipped_and_counted(dataset, tmp_path, caplog):
  _, records, _ = dataset
  broken = tf.train.Example.FromString(features.encode_example(records[12], image_format="png"))
  broken.features.feature["image"].bytes_list.value[0] = b"\x89PNG\r\n\x1a\n not really"
  bad_masks = tf.train.Example.FromString(features.encode_example(records[15], image_format="png"))
  bad_masks.features.feature["masks_zlib"].bytes_list.value[1] = b"x\x9c not a zlib stream"
  short_masks = tf.train.Example.FromString(
      features.encode_example(records[16], image_format="png"))
  short_masks.features.feature["masks_zlib"].bytes_list.value[0] = zlib.compress(bytes(SIZE * SIZE))
  old_bad_png = tf.train.Example.FromString(
      old_format(features.encode_example(records[17], image_format="png")))
  old_bad_png.features.feature["occlusion"].bytes_list.value[1] = b"\x89PNG\r\n\x1a\n not really"
  wrong_size = dict(records[13], image=np.zeros((FRAMES, 16, 16, 3), np.uint8),
                    mask=np.zeros((FRAMES, 16, 16), bool), occlusion=np.zeros((FRAMES, 16, 16), bool))
  target = str(tmp_path / "undecodable")
  write_dataset(target, records, [[10, 11], [14]])
  with tf.io.TFRecordWriter(os.path.join(target, "extra.tfrecord")) as writer:
    writer.write(broken.SerializeToString())
    writer.write(features.encode_example(wrong_size, image_format="png"))
    for example in (bad_masks, short_masks, old_bad_png):
      writer.write(example.SerializeToString())
  info_path = os.path.join(target, "dataset_info.json")
  with open(info_path, encoding="utf-8") as handle:
    info = json.load(handle)
  info["splits"]["train"]["shards"].append("extra.tfrecord")
  with open(info_path, "w", encoding="utf-8") as handle:
    json.dump(info, handle)
  pipeline = input_pipeline.make_dataset(config(target, batch_size=1), "train",
                                         process_index=0, process_count=1)
  with caplog.at_level(logging.WARNING):
    assert sorted(identities(pipeline)) == [10, 11, 14]
  assert pipeline.stats.undecodable_records == 5 and pipeline.stats.corrupt_records == 0
  assert all(p.startswith("extra.tfrecord#") for p in pipeline.stats.problems)
  ordinals = sorted(int(p.split("#")[1].split("@")[0]) for p in pipeline.stats.problems)
  assert ordinals == list(range(5))
  assert sum("undecodable" in r.message and "extra.tfrecord#" in r.message
             for r in caplog.records) == 5


def test_configuration_errors_are_clear(dataset, tmp_path):
  folder, _, _ = dataset
  with pytest.raises(ValueError, match="not divisible by 2 processes"):
    input_pipeline.make_dataset(config(folder, batch_size=3), "train", process_index=0,
                                process_count=2)
  with pytest.raises(ValueError, match="frames=4"):
    input_pipeline.make_dataset(config(folder, frames=4), "train", process_index=0, process_count=1)
  with pytest.raises(ValueError, match="unknown config field input.augmentaton"):
    input_pipeline.make_dataset(config(folder, augmentaton={}), "train", process_index=0,
                                process_count=1)
  with pytest.raises(ValueError, match="split 'test'"):
    input_pipeline.make_dataset(config(folder), "test", process_index=0, process_count=1)
  incomplete, paths = copy_dataset(dataset, tmp_path)
  os.remove(paths[2])
  with pytest.raises(FileNotFoundError, match="train-00002-of-00004"):
    input_pipeline.make_dataset(config(incomplete), "train", process_index=0, process_count=1)


def test_crc32c_and_the_record_framing():
  assert input_pipeline.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
  payload = b"some record"
  header = len(payload).to_bytes(8, "little")
  # What TensorFlow writes: length, masked CRC of the length, payload, masked CRC.
  with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "x.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
      writer.write(payload)
    data = read_bytes(path)
  assert data[:8] == header
  assert int.from_bytes(data[8:12], "little") == input_pipeline.masked_crc32c(header)
  assert int.from_bytes(data[-4:], "little") == input_pipeline.masked_crc32c(payload)
