"""MICC Florence builder on a fake Florence folder with extracted video frames."""

import numpy as np
import pytest

from data_pipelines.builders import micc
from tests.data_pipelines.builders import fakes

FRAMES = 3


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  """subject_01: Indoor-Cooperative (6 frames), PTZ-Indoor (2 frames: too few),
  PTZ-Outdoor (video only, not extracted); subject_02: no scan; subject_03: frontal2 only."""
  tmp_path = tmp_path_factory.mktemp("micc")
  root = tmp_path / "Florence"
  videos = {("subject_01", "Indoor-Cooperative"): 6, ("subject_01", "PTZ-Indoor"): 2,
            ("subject_02", "Indoor-Cooperative"): 4, ("subject_03", "PTZ-Outdoor"): 3}
  for (subject, setting), count in videos.items():
    video = root / subject / "Video"
    video.mkdir(parents=True, exist_ok=True)
    (video / f"{setting}.mjpg").write_bytes(b"not read")
    for frame in range(1, count + 1):
      fakes.write_jpeg(video / setting / f"{frame:06d}.jpg", (80, 60), seed=frame)
  (root / "subject_01" / "Video" / "PTZ-Outdoor.mjpg").write_bytes(b"not extracted")
  for subject, take in (("subject_01", "frontal1"), ("subject_01", "frontal2"),
                        ("subject_03", "frontal2")):
    obj = root / subject / "Model" / take / "obj"
    obj.mkdir(parents=True)
    (obj / "110920150452.obj").write_text("v 0 0 0\n")
  config = micc.MiccConfig(name="test", frames=FRAMES)
  return fakes.build(micc.Micc, tmp_path, root, config), root


def test_examples_are_frames_of_one_video(built):
  builder, root = built
  examples = {f'{e["subject"].decode()}/{e["setting"].decode()}': e
              for e in fakes.examples(builder, "test")}
  assert sorted(examples) == ["subject_01/Indoor-Cooperative", "subject_03/PTZ-Outdoor"]
  first = examples["subject_01/Indoor-Cooperative"]
  assert first["image"].shape == (FRAMES, 60, 80, 3) and first["image"].dtype == np.uint8
  # Frames 1..6 -> indices round(0, 2.5, 5) = 0 2 5 (half to even) -> frames 1 3 6.
  np.testing.assert_array_equal(first["frame_index"], [1, 3, 6])
  assert [p.decode() for p in first["paths"]] == [
      f"subject_01/Video/Indoor-Cooperative/{n:06d}.jpg" for n in (1, 3, 6)]
  assert int(first["subject_id"]) == 1
  assert first["scan_path"].decode() == "subject_01/Model/frontal1/obj/110920150452.obj"
  third = examples["subject_03/PTZ-Outdoor"]
  assert third["scan_path"].decode() == "subject_03/Model/frontal2/obj/110920150452.obj"
  assert (root / third["scan_path"].decode()).is_file()


def test_skips_are_counted(built):
  builder, _ = built
  assert builder.info.metadata["skipped"]["test"] == {
      "no_scan": 1, "not_extracted": 1, "video_too_short": 1}


def test_corrupt_frame_is_replaced(tmp_path):
  root = tmp_path / "Florence"
  for frame in range(1, 6):
    path = root / "subject_07" / "Video" / "PTZ-Indoor" / f"{frame:06d}.jpg"
    if frame == 3:
      fakes.write_corrupt_jpeg(path, (64, 48))
    else:
      fakes.write_jpeg(path, (64, 48), seed=frame)
  obj = root / "subject_07" / "Model" / "frontal1" / "obj"
  obj.mkdir(parents=True)
  (obj / "scan.obj").write_text("v 0 0 0\n")
  builder = fakes.build(micc.Micc, tmp_path, root, micc.MiccConfig(name="t3", frames=3))
  (example,) = fakes.examples(builder, "test")
  # Frames 1..5 -> picks 1 3 5; 3 is corrupt -> indices round(0, 1.5, 3) = 0 2 3 of
  # frames 1 2 4 5 -> 1 4 5.
  np.testing.assert_array_equal(example["frame_index"], [1, 4, 5])
  assert builder.info.metadata["skipped"]["test"] == {"corrupt_image": 1}
