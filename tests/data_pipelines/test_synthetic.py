"""`jaxface synth`'s writer: shards, determinism, resumption, ground-truth consistency."""

import json

import numpy as np
import pytest
import tensorflow as tf

from data_pipelines import features, synthetic
from jaxface import synth
from jaxface.errors import JaxfaceError
from tests.synth.test_generate import rerender

CONFIG = synth.SynthConfig(image_size=64, frames=2, occlusion_probability=0.5)


def write(out, **kwargs):
  args = dict(identities=3, config=CONFIG, seed=5, shards=2, workers=1, log=lambda _: None)
  args.update(kwargs)
  return synthetic.write_split(out, **args)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  out = tmp_path_factory.mktemp("synth")
  write(out, eval_layout=True)
  return out


def records(folder, split="train"):
  info = json.loads((folder / synthetic.INFO_FILE).read_text())["splits"][split]
  raw = tf.data.TFRecordDataset([str(folder / s) for s in info["shards"]])
  return [r.numpy() for r in raw]


def test_info_and_shards(dataset):
  info = json.loads((dataset / synthetic.INFO_FILE).read_text())
  entry = info["splits"]["train"]
  assert entry["num_records"] == 3 and entry["num_frames"] == 2 and entry["image_size"] == 64
  assert entry["shards"] == ["train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
  parsed = [features.parse_example(tf.constant(r)) for r in records(dataset)]
  assert [int(p["identity"]) for p in parsed] == [0, 1, 2]


def test_stored_ground_truth_rerenders(dataset, front_model):
  """Decoded coefficients re-rendered by jaxface.render reproduce masks and landmarks."""
  for serialized in records(dataset):
    p = {k: np.asarray(v) for k, v in features.parse_example(tf.constant(serialized)).items()}
    mask, landmarks = rerender(front_model, p)
    stored = p["mask"] > 127
    iou = np.sum(mask & stored, axis=(1, 2)) / np.sum(mask | stored, axis=(1, 2))
    assert np.all(iou >= 0.99), iou
    assert np.max(np.abs(landmarks - p["landmarks"])) < 0.5


def test_output_does_not_depend_on_sharding(dataset, tmp_path):
  write(tmp_path, shards=1)
  assert records(tmp_path) == records(dataset)


def test_resume_rewrites_only_missing_shards(dataset, tmp_path):
  write(tmp_path)
  first, second = (tmp_path / s for s in ("train-00000-of-00002.tfrecord",
                                          "train-00001-of-00002.tfrecord"))
  before = first.stat().st_mtime_ns
  second.unlink()
  lines = []
  write(tmp_path, log=lines.append)
  assert first.stat().st_mtime_ns == before
  assert "1 of 2 shards already written" in lines[0]
  assert records(tmp_path) == records(dataset)


def test_conflicting_settings_are_refused(dataset):
  with pytest.raises(JaxfaceError, match="exists with other settings"):
    write(dataset, seed=6, eval_layout=True)


def test_eval_layout(dataset, front_model):
  frames = json.loads((dataset / "train" / "frames.json").read_text())["frames"]
  assert [f["image"] for f in frames] == [f"images/{i:05d}_{t:02d}.png"
                                          for i in range(3) for t in range(2)]
  for f in frames:
    assert (dataset / "train" / f["image"]).exists()
  first = features.parse_example(tf.constant(records(dataset)[0]))
  with np.load(dataset / "train" / "ground_truth" / "00000.npz") as gt:
    expected = synth.neutral_vertices(front_model, np.asarray(first["shape"]),
                                      np.asarray(first["detail"]))
    np.testing.assert_allclose(gt["neutral_vertices"], expected, atol=1e-4)
    np.testing.assert_array_equal(gt["triangles"], front_model.triangles)
    assert gt["landmarks_3d"].shape == (68, 3)
  tags = [t for f in frames for t in f["tags"]]
  assert set(tags) <= {"expression", "large_pose", "occluded", "key_light"}
