"""TFDS builder for MICC Florence (manual download): T video frames per subject and setting.

One example per subject and video setting (Indoor-Cooperative, PTZ-Indoor,
PTZ-Outdoor): T frames (`MiccConfig.frames`, default 8) evenly spaced over the frames
the user extracted from the video (a corrupt frame is replaced by another even pick),
with the subject, the setting and the ground-truth scan's path relative to manual_dir
(`Model/frontal1/obj/*.obj`, else frontal2, as `jaxface.eval.micc` picks it). A single
"test" split; `jaxface evaluate` reads the scans itself.

The videos are MJPEG/AVI files TensorFlow cannot decode: extract frames with ffmpeg
(command in MANUAL_DOWNLOAD_INSTRUCTIONS) into a folder named after the video.
"""

import dataclasses
import logging
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines.builders import common
from jaxface.eval.micc import scan_path  # the scan `jaxface evaluate` scores

SETTINGS = ("Indoor-Cooperative", "PTZ-Indoor", "PTZ-Outdoor")


@dataclasses.dataclass
class MiccConfig(tfds.core.BuilderConfig):
  """Frames per example T."""
  frames: int = 8


class Micc(common.ManualBuilder):
  """MICC Florence: T frames of one subject's video in one setting, with the scan path."""

  name = "jaxface_micc"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [MiccConfig(name="frames8", frames=8)]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Request the Florence 2D/3D Hybrid Face Dataset from MICC, University of Florence
(https://www.micc.unifi.it/resources/datasets/florence-3d-faces/; research use) and
unpack its Florence folder as manual_dir:

  <manual_dir>/subject_01/Model/frontal1/obj/<timestamp>.obj   (+ frontal2, sidel, sider)
  <manual_dir>/subject_01/Video/Indoor-Cooperative.mjpg        (PTZ-Indoor, PTZ-Outdoor;
                                                                 .mjpg/.mjpeg/.mpg/.avi)

Extract frames (here 5 per second) into a folder named after each video:

  cd <manual_dir> && for v in subject_*/Video/*.*; do
    o="${v%.*}"; mkdir -p "$o"
    ffmpeg -nostdin -loglevel error -i "$v" -vf fps=5 -q:v 2 "$o/%06d.jpg"
  done

giving <manual_dir>/subject_01/Video/Indoor-Cooperative/000001.jpg.
"""

  def _info(self) -> tfds.core.DatasetInfo:
    frames = self.builder_config.frames
    return tfds.core.DatasetInfo(
        builder=self,
        description="MICC Florence videos as T evenly spaced frames per subject and "
                    "setting, with the ground-truth scan path (evaluation).",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Sequence(
                tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                length=frames, doc="[T, H, W, 3] uint8 frames in temporal order."),
            "paths": tfds.features.Sequence(
                tfds.features.Text(), length=frames,
                doc="[T] frame paths relative to manual_dir."),
            "frame_index": tfds.features.Tensor(
                shape=(frames,), dtype=np.int64,
                doc="[T] ffmpeg frame numbers (1-based); -1 if not numeric."),
            "subject": tfds.features.Text(doc="Subject folder, e.g. subject_01."),
            "subject_id": tfds.features.Scalar(dtype=np.int64, doc="Subject number, e.g. 1."),
            "setting": tfds.features.Text(doc="Indoor-Cooperative, PTZ-Indoor or PTZ-Outdoor."),
            "scan_path": tfds.features.Text(
                doc="Ground-truth scan .obj relative to manual_dir (frontal1, else frontal2)."),
        }),
        homepage="https://www.micc.unifi.it/resources/datasets/florence-3d-faces/",
        citation="Bagdanov, Del Bimbo and Masi, The Florence 2D/3D Hybrid Face Dataset, "
                 "ACM MM workshop J-HGBU 2011.",
        metadata=tfds.core.MetadataDict())

  def _split_generators(self, dl_manager):
    root = common.require_dir(pathlib.Path(dl_manager.manual_dir), "the MICC Florence folder")
    subjects = [d for d in common.list_dirs(root) if d.name.startswith("subject_")]
    if not subjects:
      raise common.DatasetLayoutError(f"{root}: no subject_XX folders (the MICC Florence folder)")
    self.info.metadata["manual_dir"] = str(root)
    return {"test": self._generate_examples(root, subjects)}

  def _generate_examples(self, root, subjects):
    """Yields (subject/setting, example) per extracted video with T decodable frames."""
    frames = self.builder_config.frames
    skips = common.SkipCounter(self.name)
    for subject_dir in subjects:
      scan = scan_path(subject_dir)
      if scan is None:
        skips.skip("no_scan", subject_dir / "Model", "no frontal1/frontal2 obj")
        continue
      for setting in SETTINGS:
        folder = subject_dir / "Video" / setting
        if not folder.is_dir():
          videos = list((subject_dir / "Video").glob(f"{setting}.*"))
          if videos:
            skips.skip("not_extracted", videos[0], f"no frames in {folder}")
          continue

        def load(path):
          image = common.read_image(path, skips)
          return None if image is None else common.original_or_decoded(path, image)

        picked = common.pick_evenly(common.list_images(folder), frames, load)
        if picked is None:
          skips.skip("video_too_short", folder, f"fewer than {frames} decodable frames",
                     logging.INFO)
          continue
        number = subject_dir.name.removeprefix("subject_")
        yield f"{subject_dir.name}/{setting}", {
            "image": [value for _, value in picked],
            "paths": [path.relative_to(root).as_posix() for path, _ in picked],
            "frame_index": np.array([common.frame_number(p) for p, _ in picked], np.int64),
            "subject": subject_dir.name,
            "subject_id": int(number) if number.isdigit() else -1,
            "setting": setting,
            "scan_path": scan.relative_to(root).as_posix(),
        }
    common.record_skips(self.info, "test", skips)
