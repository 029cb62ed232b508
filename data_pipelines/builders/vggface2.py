"""TFDS builder for VGGFace2 from its manual download: T aligned crops of one identity.

Each example holds T images of one identity (`VggFace2Config.frames`, default 4): the
identity's usable images sorted by file name and cut into consecutive groups of T, an
incomplete last group dropped. Images are aligned and cropped to S x S (default 224)
exactly as `jaxface reconstruct` crops them, from the 68 landmarks that `jaxface
prepare` found; landmarks and the face mask go through the same transform.

Build (after `jaxface prepare`, see MANUAL_DOWNLOAD_INSTRUCTIONS):

  import tensorflow_datasets as tfds
  from data_pipelines.builders import VggFace2
  VggFace2(data_dir="~/tensorflow_datasets").download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir="/data/vggface2"))
"""

import csv
import dataclasses
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines.builders import common

SPLITS = ("train", "test")


@dataclasses.dataclass
class VggFace2Config(tfds.core.BuilderConfig):
  """Frames per example T and crop side S (pixels)."""
  frames: int = 4
  size: int = 224


def read_identity_names(path: pathlib.Path) -> dict[str, str]:
  """Class_ID -> Name from VGGFace2's `identity_meta.csv` ({} if the file is absent).

  The file has a header `Class_ID, Name, Sample_Num, Flag, Gender` and rows like
  `n000002, "A_Fine_Frenzy", 315, 1, f` (spaces after commas, quoted names).
  """
  if not path.is_file():
    return {}
  names = {}
  with open(path, newline="", encoding="utf-8", errors="replace") as f:
    for row in csv.reader(f, skipinitialspace=True):
      if len(row) >= 2 and row[0].strip() and row[0].strip() != "Class_ID":
        names[row[0].strip()] = row[1].strip().strip('"')
  return names


class VggFace2(common.ManualBuilder):
  """VGGFace2: identity-grouped samples of T aligned face crops."""

  name = "jaxface_vggface2"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [VggFace2Config(name="frames4_size224", frames=4, size=224)]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Request access and download from the VGGFace2 authors (University of Oxford VGG;
https://www.robots.ox.ac.uk/~vgg/data/vgg_face2/; non-commercial research licence):
vggface2_train.tar.gz, vggface2_test.tar.gz and identity_meta.csv. Extract so that
manual_dir holds:

  <manual_dir>/train/n000002/0001_01.jpg      (one folder per identity, Class_ID)
  <manual_dir>/test/n000001/0001_01.jpg
  <manual_dir>/identity_meta.csv              (optional: identity names)

Then find faces and landmarks with jaxface (one folder of annotations per split):

  jaxface prepare <manual_dir>/train --out <manual_dir>/jaxface_annotations/train
  jaxface prepare <manual_dir>/test  --out <manual_dir>/jaxface_annotations/test

Either split may be absent. bb_landmark/*.csv (VGGFace2's loose boxes and 5 points)
is not used: crops come from jaxface's 68 landmarks, as in `jaxface reconstruct`.
"""

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    features = common.face_frames_features(config.frames, config.size)
    features.update(
        identity=tfds.features.Scalar(
            dtype=np.int64, doc="Class index: position of the identity folder among "
                                "the split's identity folders sorted by name."),
        identity_name=tfds.features.Text(
            doc="Name from identity_meta.csv (the Class_ID when absent)."),
        class_id=tfds.features.Text(doc="VGGFace2 Class_ID, e.g. n000002."))
    return tfds.core.DatasetInfo(
        builder=self,
        description="VGGFace2 identities as samples of T aligned face crops of one person, "
                    "with 68 landmarks and face masks from `jaxface prepare`.",
        features=tfds.features.FeaturesDict(features),
        homepage="https://www.robots.ox.ac.uk/~vgg/data/vgg_face2/",
        citation="Cao et al., VGGFace2: A dataset for recognising faces across pose and "
                 "age, FG 2018.",
        metadata=tfds.core.MetadataDict())

  def _split_generators(self, dl_manager):
    root = common.require_dir(pathlib.Path(dl_manager.manual_dir),
                              "the VGGFace2 manual download")
    present = [s for s in SPLITS if (root / s).is_dir()]
    if not present:
      raise common.DatasetLayoutError(f"{root}: no train/ or test/ folder of VGGFace2 "
                                      "identities (see MANUAL_DOWNLOAD_INSTRUCTIONS)")
    names = read_identity_names(root / "identity_meta.csv")
    return {split: self._generate_examples(split, root / split,
                                           root / common.ANNOTATIONS_DIR / split, names)
            for split in present}

  def _generate_examples(self, split, image_root, annotation_root, names):
    """Yields (key, example) per group of T usable images of one identity."""
    config = self.builder_config
    skips = common.SkipCounter(f"{self.name}/{split}")
    class_ids = sorted((d.name for d in common.list_dirs(image_root)), key=common.group_order)
    groups = common.annotation_groups(annotation_root, class_ids, depth=1)
    for index, group in enumerate(groups):
      usable = [0]

      def frames(group=group, usable=usable):
        for path in common.list_images(image_root / group.key):
          key = f"{group.key}/{path.name}"
          frame = common.annotated_frame(path, key, group, config.size, skips)
          if frame is not None:
            usable[0] += 1
            yield key, frame

      for number, sample in enumerate(common.consecutive_groups(frames(), config.frames)):
        example = common.face_frames_example(sample)
        example.update(identity=index, identity_name=names.get(group.key, group.key),
                       class_id=group.key)
        yield f"{group.key}/{number:05d}", example
      skips.add("remainder", usable[0] % config.frames)
    common.record_skips(self.info, split, skips)
