"""TFDS builder for AFLW2000-3D (manual download): the 68-landmark evaluation set.

One example per `imageXXXXX.jpg` with a readable `imageXXXXX.mat` (3DDFA labels, see
`ddfa.py`): the original image, the 68 landmarks `pt3d_68` (x, y) moved to jaxface
pixels (-0.5: 3DDFA's are 1-based), the raw `pt3d_68` for protocol-exact NME, and the
head pose from `Pose_Para` in degrees (yaw bins the benchmark's results). A single
"test" split: the set is for evaluation (`jaxface evaluate`).
"""

import pathlib

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines.builders import common
from data_pipelines.builders import ddfa


def pose_degrees(pose_params: np.ndarray) -> np.ndarray:
  """(pitch, yaw, roll) in degrees from a 3DDFA `Pose_Para` [1, 7] (radians first)."""
  return np.rad2deg(ddfa.Pose.from_params(pose_params).angles)


class Aflw20003d(common.ManualBuilder):
  """AFLW2000-3D: images with 68 3DMM-fitted landmarks and head pose."""

  name = "jaxface_aflw2000_3d"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download AFLW2000-3D.zip from the 3DDFA project page (Zhu et al.,
http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/3DDFA/main.htm; research use) and
unzip it into manual_dir:

  <manual_dir>/AFLW2000/image00002.jpg
  <manual_dir>/AFLW2000/image00002.mat      (pt3d_68 [3, 68], Pose_Para [1, 7], ...)
"""

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description="AFLW2000-3D: 2000 AFLW images with 68 landmarks of a fitted 3DMM.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(
                shape=(None, None, 3), encoding_format="jpeg",
                doc="The original image (its own JPEG bytes when upright)."),
            "landmarks": tfds.features.Tensor(
                shape=(68, 2), dtype=np.float32,
                doc="[68, 2] pt3d_68 x, y in jaxface pixels (centres at +0.5), i.e. - 0.5."),
            "landmarks_ddfa": tfds.features.Tensor(
                shape=(68, 3), dtype=np.float32,
                doc="[68, 3] pt3d_68 as stored (1-based x, y; z), for 3DDFA's NME."),
            "pose": tfds.features.Tensor(
                shape=(3,), dtype=np.float32, doc="(pitch, yaw, roll), degrees."),
            "yaw": tfds.features.Scalar(dtype=np.float32, doc="Yaw, degrees."),
            "name": tfds.features.Text(doc="File name, e.g. image00002.jpg."),
        }),
        homepage="http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/3DDFA/main.htm",
        citation="Zhu et al., Face Alignment Across Large Poses: A 3D Solution, CVPR 2016.",
        metadata=tfds.core.MetadataDict())

  def _split_generators(self, dl_manager):
    root = common.require_dir(pathlib.Path(dl_manager.manual_dir) / "AFLW2000",
                              "the unzipped AFLW2000 folder")
    return {"test": self._generate_examples(root)}

  def _generate_examples(self, root):
    """Yields (file name, example) per image with readable labels."""
    skips = common.SkipCounter(self.name)
    for path in common.list_images(root):
      labels = ddfa.read_mat(path.with_suffix(".mat"), ("pt3d_68", "Pose_Para"))
      if labels is None or labels["pt3d_68"].shape != (3, 68) or labels["Pose_Para"].size != 7:
        skips.skip("bad_label", path.with_suffix(".mat"),
                   "missing, unreadable or without pt3d_68 [3, 68] and Pose_Para [1, 7]")
        continue
      image = common.read_image(path, skips)
      if image is None:
        continue
      points = labels["pt3d_68"].T
      angles = pose_degrees(labels["Pose_Para"])
      yield path.name, {
          "image": common.original_or_decoded(path, image),
          "landmarks": ddfa.to_pixels(points[:, :2]).astype(np.float32),
          "landmarks_ddfa": points.astype(np.float32),
          "pose": angles.astype(np.float32),
          "yaw": np.float32(angles[1]),
          "name": path.name,
      }
    common.record_skips(self.info, "test", skips)
