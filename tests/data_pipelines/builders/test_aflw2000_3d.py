"""AFLW2000-3D builder on a fake flat AFLW2000/ folder of images and 3DDFA .mat labels."""

import numpy as np
import pytest
import scipy.io
import tensorflow_datasets as tfds
from PIL import Image

from data_pipelines.builders import aflw2000_3d
from tests.data_pipelines.builders import fakes

SIZE = (100, 90)  # width, height


def _labels(rng):
  pose = np.concatenate([rng.uniform(-1.2, 1.2, 3), [200.0, 230.0, 0.0, 1.1e-3]])
  points = np.stack([rng.uniform(10, 90, 68), rng.uniform(10, 80, 68), rng.normal(0, 20, 68)])
  return pose, points


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  """4 labelled images (one corrupt, one EXIF-rotated), one image without a .mat."""
  tmp_path = tmp_path_factory.mktemp("aflw")
  folder = tmp_path / "download" / "AFLW2000"
  rng = np.random.default_rng(5)
  truth = {}
  for number in (2, 4, 8, 13, 21):
    stem = f"image{number:05d}"
    if number == 8:
      fakes.write_corrupt_jpeg(folder / f"{stem}.jpg", SIZE)
    elif number == 13:  # stored with EXIF orientation 6 (rotate 90 degrees to view)
      exif = Image.Exif()
      exif[0x0112] = 6
      Image.fromarray(rng.integers(0, 255, (SIZE[1], SIZE[0], 3)).astype(np.uint8)).save(
          folder / f"{stem}.jpg", exif=exif)
    else:
      fakes.write_jpeg(folder / f"{stem}.jpg", SIZE, seed=number)
    if number != 21:
      pose, points = _labels(rng)
      truth[f"{stem}.jpg"] = (pose, points)
      scipy.io.savemat(str(folder / f"{stem}.mat"), {
          "pt3d_68": points, "Pose_Para": pose.reshape(1, 7), "pt2d": points[:2],
          "Shape_Para": np.zeros((199, 1)), "Exp_Para": np.zeros((29, 1)),
          "roi": np.array([[0.0, 0.0, 100.0, 90.0]])})
  return fakes.build(aflw2000_3d.Aflw20003d, tmp_path, tmp_path / "download"), folder, truth


def test_examples_carry_landmarks_and_pose_in_degrees(built):
  builder, _, truth = built
  examples = {e["name"].decode(): e for e in fakes.examples(builder, "test")}
  assert sorted(examples) == ["image00002.jpg", "image00004.jpg", "image00013.jpg"]
  for name, example in examples.items():
    pose, points = truth[name]
    np.testing.assert_allclose(example["yaw"], np.degrees(pose[1]), rtol=1e-5)
    np.testing.assert_allclose(example["pose"], np.degrees(pose[:3]), rtol=1e-5)
    assert abs(example["yaw"]) <= 180.0
    np.testing.assert_allclose(example["landmarks"], points[:2].T - 0.5, atol=1e-4)
    np.testing.assert_allclose(example["landmarks_ddfa"], points.T, atol=1e-4)
    assert example["landmarks"].dtype == np.float32 and example["image"].dtype == np.uint8
  assert examples["image00002.jpg"]["image"].shape == (SIZE[1], SIZE[0], 3)
  assert examples["image00013.jpg"]["image"].shape == (SIZE[0], SIZE[1], 3)  # upright


def test_original_bytes_are_kept(built):
  builder, folder, _ = built
  raw = builder.as_dataset(split="test", decoders={"image": tfds.decode.SkipDecoding()})
  stored = {e["name"].decode(): e["image"] for e in tfds.as_numpy(raw)}
  assert stored["image00002.jpg"] == (folder / "image00002.jpg").read_bytes()
  assert stored["image00013.jpg"] != (folder / "image00013.jpg").read_bytes()  # re-encoded


def test_corrupt_image_and_missing_label_are_counted(built):
  builder, _, _ = built
  assert builder.info.metadata["skipped"]["test"] == {"bad_label": 1, "corrupt_image": 1}


def test_pose_degrees():
  np.testing.assert_allclose(aflw2000_3d.pose_degrees(np.array([[np.pi / 2, -np.pi / 4, 0, 1,
                                                                  2, 3, 4]])), [90, -45, 0])
