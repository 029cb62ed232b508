"""VGGFace2 builder on a fake manual download in the real layout (train/, test/, meta)."""

import pathlib
import zlib

import numpy as np
import pytest

from data_pipelines.builders import common
from data_pipelines.builders import vggface2
from jaxface import preprocess
from tests.data_pipelines.builders import fakes

SIZE = 112
FRAMES = 2
IMAGE = (120, 128)  # width, height
NOSE_TIP = 30


def _landmarks(split: str, class_id: str, index: int) -> np.ndarray:
  rng = np.random.default_rng(zlib.crc32(f"{split}/{class_id}/{index}".encode()))
  return fakes.face_landmarks(centre=(60.0 + rng.uniform(-4, 4), 66.0 + rng.uniform(-4, 4)),
                              scale=0.55, roll_deg=rng.uniform(-15, 15))


def _write_manual_dir(tmp_path):
  """train: n000002 (6 images, 1 corrupt), n000005 (4: one without a face, one added after
  `jaxface prepare` ran); test: n000001 (2).

  The first image of n000002 has a white dot centred on its nose-tip landmark. As
  `jaxface prepare` would, the corrupt image is recorded as unreadable.
  """
  root = tmp_path / "vggface2"
  prepared = {s: fakes.PreparedFolder(root / s, root / "jaxface_annotations" / s)
              for s in ("train", "test")}
  layout = {("train", "n000002"): 6, ("train", "n000005"): 4, ("test", "n000001"): 2}
  for (split, class_id), count in layout.items():
    for i in range(count):
      name = f"{i + 1:04d}_01.jpg"
      key = f"{class_id}/{name}"
      path = root / split / key
      landmarks = _landmarks(split, class_id, i)
      if (class_id, i) == ("n000002", 3):
        fakes.write_corrupt_jpeg(path, IMAGE)
        prepared[split].failure(key, "truncated or corrupt image data (image file is "
                                     "truncated)")
        continue
      dot = None
      if (class_id, i) == ("n000002", 0):
        dot = np.floor(landmarks[NOSE_TIP]).astype(int)
        landmarks[NOSE_TIP] = dot + 0.5  # the dot's centre pixel
      fakes.write_jpeg(path, IMAGE, dot=dot, seed=i)
      if (class_id, i) == ("n000005", 1):
        prepared[split].failure(key, "no face found")
      elif (class_id, i) == ("n000005", 3):
        pass  # added after `jaxface prepare` ran
      else:
        prepared[split].face(key, landmarks, *IMAGE)
  for folder in prepared.values():
    folder.write()
  (root / "identity_meta.csv").write_text(
      "Class_ID, Name, Sample_Num, Flag, Gender\n"
      'n000001, "14th_Dalai_Lama", 424, 0, m\n'
      'n000002, "A_Fine_Frenzy", 315, 1, f\n'
      'n000005, "Aaron_Tippin", 319, 1, m\n')
  return root


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  """(builder, manual_dir) built once for the module."""
  tmp_path = tmp_path_factory.mktemp("vggface2")
  config = vggface2.VggFace2Config(name="test", frames=FRAMES, size=SIZE)
  manual_dir = _write_manual_dir(tmp_path)
  return fakes.build(vggface2.VggFace2, tmp_path, manual_dir, config), manual_dir


def test_examples_group_frames_of_one_identity(built):
  builder, _ = built
  train = fakes.examples(builder, "train")
  # n000002: 5 decodable images -> 2 groups of 2 (1 left over); n000005: 2 with a face.
  assert len(train) == 3 and len(fakes.examples(builder, "test")) == 1
  for example in train:
    assert example["image"].shape == (FRAMES, SIZE, SIZE, 3)
    assert example["image"].dtype == np.uint8
    assert example["landmarks"].shape == (FRAMES, 68, 2)
    assert example["landmarks"].dtype == np.float32
    assert example["mask"].shape == (FRAMES, SIZE, SIZE, 1)
    assert set(np.unique(example["mask"])) == {0, 1}
    class_id = example["class_id"].decode()
    assert all(p.decode().split("/")[0] == class_id for p in example["paths"])
  by_class = {}
  for example in train:
    by_class.setdefault(example["class_id"].decode(), []).append(example)
  assert {k: len(v) for k, v in by_class.items()} == {"n000002": 2, "n000005": 1}
  assert {int(e["identity"]) for e in by_class["n000002"]} == {0}
  assert int(by_class["n000005"][0]["identity"]) == 1
  assert by_class["n000002"][0]["identity_name"].decode() == "A_Fine_Frenzy"
  paths = sorted(p.decode() for e in by_class["n000002"] for p in e["paths"])
  assert paths == ["n000002/0001_01.jpg", "n000002/0002_01.jpg", "n000002/0003_01.jpg",
                   "n000002/0005_01.jpg"]  # sorted, 0004 corrupt, 0006 left over


def test_corrupt_and_faceless_images_are_counted(built):
  builder, _ = built
  expected = {"corrupt_image": 1, "no_face": 1, "not_prepared": 1, "remainder": 1}
  assert builder.info.metadata["skipped"]["train"] == expected
  assert builder.info.metadata["skipped"]["test"] == {}
  # The counts are stored with the dataset: a fresh builder reads them back.
  again = vggface2.VggFace2(data_dir=str(pathlib.Path(builder.data_dir).parents[2]),
                            config=builder.builder_config)
  assert again.info.metadata["skipped"]["train"] == expected


def test_landmarks_and_dot_land_in_crop_pixels(built):
  builder, _ = built
  example = next(e for e in fakes.examples(builder, "train")
                 if e["paths"][0].decode() == "n000002/0001_01.jpg")
  # Independent transform of the annotated landmarks (the reconstruct alignment rule).
  source = _landmarks("train", "n000002", 0)
  source[NOSE_TIP] = np.floor(source[NOSE_TIP]) + 0.5
  transform = preprocess.alignment_transform(source, SIZE)
  expected = preprocess.apply_transform(transform, source)
  np.testing.assert_allclose(example["landmarks"][0], expected, atol=1e-3)
  # The dot drawn at the nose tip in the source image is where the landmark says.
  centroid = fakes.dot_centroid(example["image"][0])
  assert np.linalg.norm(centroid - expected[NOSE_TIP]) < 1.0, (centroid, expected[NOSE_TIP])
  # The mask covers the nose tip and not the crop's corners.
  x, y = expected[NOSE_TIP].astype(int)
  assert example["mask"][0, y, x, 0] == 1 and example["mask"][0, 0, 0, 0] == 0


def test_wrong_layout_and_missing_annotations_are_one_line_errors(tmp_path):
  (tmp_path / "download" / "vggface2_train").mkdir(parents=True)  # not extracted as documented
  with pytest.raises(common.DatasetLayoutError, match="no train/ or test/ folder"):
    fakes.build(vggface2.VggFace2, tmp_path, tmp_path / "download")
  fakes.write_jpeg(tmp_path / "download" / "train" / "n000002" / "0001_01.jpg")
  with pytest.raises(common.DatasetLayoutError, match="jaxface_annotations/train: no such folder"):
    fakes.build(vggface2.VggFace2, tmp_path, tmp_path / "download")


def test_identity_meta_parsing(tmp_path):
  path = tmp_path / "identity_meta.csv"
  path.write_text('Class_ID, Name, Sample_Num, Flag, Gender\nn000003, "A._A._Gill", 205, 1, m\n')
  assert vggface2.read_identity_names(path) == {"n000003": "A._A._Gill"}
  assert vggface2.read_identity_names(tmp_path / "absent.csv") == {}
