"""VoxCeleb2 builder on fake extracted frames in the documented layout (dev/, test/)."""

import pathlib

import numpy as np
import pytest

from data_pipelines.builders import common
from data_pipelines.builders import voxceleb2
from jaxface import preprocess
from tests.data_pipelines.builders import fakes

SIZE = 64
FRAMES = 3
IMAGE = (96, 80)  # width, height
CLIPS = {  # (split, speaker/video/clip): number of frames
    ("dev", "id00012/21Uxsk56VDQ/00001"): 7,
    ("dev", "id00012/21Uxsk56VDQ/00002"): 2,  # too short for 3 frames
    ("dev", "id00015/0mXl2kR5fQE/00003"): 4,
    ("test", "id00017/01dfn2spqyE/00001"): 3,
}
CORRUPT = ("id00012/21Uxsk56VDQ/00001", 3)  # annotated by an earlier prepare, now corrupt
FACELESS = ("id00012/21Uxsk56VDQ/00001", 6)


def _landmarks(frame: int) -> np.ndarray:
  return fakes.face_landmarks(centre=(48.0 + frame, 44.0), scale=0.4, roll_deg=3.0 * frame)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp("voxceleb2")
  root = tmp_path / "voxceleb2"
  prepared = {s: fakes.PreparedFolder(root / s / "frames", root / "jaxface_annotations" / s)
              for s in ("dev", "test")}
  for (split, clip), count in CLIPS.items():
    (root / split / "mp4" / clip).parent.mkdir(parents=True, exist_ok=True)
    (root / split / "mp4" / f"{clip}.mp4").write_bytes(b"not read")
    for frame in range(1, count + 1):
      key = f"{clip}/{frame:06d}.jpg"
      path = root / split / "frames" / key
      if (clip, frame) == CORRUPT:
        fakes.write_corrupt_jpeg(path, IMAGE)
      else:
        fakes.write_jpeg(path, IMAGE, seed=frame)
      if (clip, frame) == FACELESS:
        prepared[split].failure(key, "no face found")
      else:
        prepared[split].face(key, _landmarks(frame), *IMAGE)
  for folder in prepared.values():
    folder.write()
  config = voxceleb2.VoxCeleb2Config(name="test", frames=FRAMES, size=SIZE)
  return fakes.build(voxceleb2.VoxCeleb2, tmp_path, root, config)


def test_clips_become_evenly_spaced_frames_of_one_speaker(built):
  dev = {e["paths"][0].decode().rsplit("/", 1)[0]: e for e in fakes.examples(built, "dev")}
  assert sorted(dev) == ["id00012/21Uxsk56VDQ/00001", "id00015/0mXl2kR5fQE/00003"]
  assert len(fakes.examples(built, "test")) == 1
  for clip, example in dev.items():
    assert example["image"].shape == (FRAMES, SIZE, SIZE, 3)
    assert example["image"].dtype == np.uint8
    assert example["landmarks"].shape == (FRAMES, 68, 2)
    assert example["mask"].shape == (FRAMES, SIZE, SIZE, 1)
    speaker, video, number = clip.split("/")
    assert example["identity_name"].decode() == speaker
    assert example["video"].decode() == video and example["clip"].decode() == number
    assert all(p.decode().startswith(clip + "/") for p in example["paths"])
  assert int(dev["id00012/21Uxsk56VDQ/00001"]["identity"]) == 0
  assert int(dev["id00015/0mXl2kR5fQE/00003"]["identity"]) == 1
  # Usable frames 1 2 3 4 5 7 -> picks 1 3 7; 3 is corrupt -> re-pick over 1 2 4 5 7.
  first = dev["id00012/21Uxsk56VDQ/00001"]
  np.testing.assert_array_equal(first["frame_index"], [1, 4, 7])
  np.testing.assert_array_equal(dev["id00015/0mXl2kR5fQE/00003"]["frame_index"], [1, 3, 4])
  for t, frame in enumerate(first["frame_index"]):
    source = _landmarks(int(frame))
    expected = preprocess.apply_transform(preprocess.alignment_transform(source, SIZE), source)
    np.testing.assert_allclose(first["landmarks"][t], expected, atol=1e-3)


def test_skipped_frames_and_clips_are_counted(built):
  assert built.info.metadata["skipped"]["dev"] == {
      "clip_too_short": 1, "corrupt_image": 1, "no_face": 1}
  assert built.info.metadata["skipped"]["test"] == {}


def test_frame_number():
  assert common.frame_number(pathlib.Path("a/000123.jpg")) == 123
  assert common.frame_number(pathlib.Path("a/thumb.jpg")) == -1
