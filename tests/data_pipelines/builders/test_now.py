"""NoW builder on a fake download in the official evaluation layout."""

import os

import numpy as np
import pytest

from data_pipelines.builders import now
from tests.data_pipelines.builders import fakes

SUBJECTS = ("FaMoS_180424_03335_TA", "FaMoS_180704_03355_TA")
LINES = [
    "FaMoS_180424_03335_TA/multiview_neutral/IMG_0101.jpg",
    "FaMoS_180424_03335_TA/selfie/IMG_0125.jpg",
    "FaMoS_180704_03355_TA/multiview_expressions/IMG_1948.jpg",
    "FaMoS_180704_03355_TA/multiview_occlusions/IMG_1990.jpg",  # corrupt
    "FaMoS_180704_03355_TA/selfie/IMG_2001.jpg",  # listed, not on disk
]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp("now")
  root = tmp_path / "now"
  release = root / "NoW_Dataset" / "final_release_version"
  for i, line in enumerate(LINES[:4]):
    if i == 3:
      fakes.write_corrupt_jpeg(release / "iphone_pictures" / line, (64, 80))
    else:
      fakes.write_jpeg(release / "iphone_pictures" / line, (64, 80), seed=i)
    if i != 1:  # one photo without a detected_face box
      box = release / "detected_face" / line.replace(".jpg", ".npy")
      box.parent.mkdir(parents=True, exist_ok=True)
      np.save(box, {"left": 10.0 + i, "top": 12.0, "right": 50.0, "bottom": 70.0 + i})
  for subject in SUBJECTS:
    (root / "scans" / subject).mkdir(parents=True)
    (root / "scans" / subject / "natural_head_rotation.000001.obj").write_text("v 0 0 0\n")
    (root / "scans_lmks_onlypp" / subject).mkdir(parents=True)
    (root / "scans_lmks_onlypp" / subject / "natural_head_rotation.000001_picked_points.pp"
     ).write_text("<!DOCTYPE PickedPoints>\n")
  (root / "imagepathsvalidation.txt").write_text("\n".join(LINES) + "\n")
  return fakes.build(now.Now, tmp_path, root), root


def test_validation_examples(built):
  builder, root = built
  examples = {e["image_path"].decode(): e for e in fakes.examples(builder, "validation")}
  assert sorted(examples) == sorted(LINES[:3])
  first = examples[LINES[0]]
  assert first["subject"].decode() == SUBJECTS[0]
  assert first["challenge"].decode() == "multiview_neutral"
  assert first["image"].shape == (80, 64, 3) and first["image"].dtype == np.uint8
  np.testing.assert_array_equal(first["box"], [10, 12, 50, 70])
  np.testing.assert_array_equal(examples[LINES[1]]["box"], [-1, -1, -1, -1])
  np.testing.assert_array_equal(examples[LINES[2]]["box"], [12, 12, 50, 72])
  for example in examples.values():
    subject = example["subject"].decode()
    scan = example["scan_path"].decode()
    assert scan == f"scans/{subject}/natural_head_rotation.000001.obj"
    assert (root / scan).is_file() and (root / example["scan_landmarks_path"].decode()).is_file()
  assert builder.info.metadata["manual_dir"] == str(root)
  assert list(builder.info.splits) == ["validation"]  # no imagepathstest.txt


def test_corrupt_and_missing_images_are_counted(built):
  builder, _ = built
  assert builder.info.metadata["skipped"]["validation"] == {
      "corrupt_image": 1, "missing_image": 1}


class _RunsCode:
  def __reduce__(self):
    return (os.system, ("echo should-never-run",))


def test_read_box_refuses_code_and_garbage(tmp_path):
  (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
  assert now.read_box(tmp_path / "bad.npy") is None
  np.save(tmp_path / "evil.npy", np.array(_RunsCode(), dtype=object))
  assert now.read_box(tmp_path / "evil.npy") is None
  np.save(tmp_path / "ok.npy", {b"left": 1, b"top": 2, b"right": 3, b"bottom": 4})
  np.testing.assert_array_equal(now.read_box(tmp_path / "ok.npy"), [1, 2, 3, 4])
