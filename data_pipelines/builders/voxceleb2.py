"""TFDS builder for VoxCeleb2 video frames (manual download): T aligned frames of one clip.

Each example is one clip (one `.mp4` of the release): T frames (`VoxCeleb2Config.frames`,
default 4) evenly spaced over the clip's usable frames (a face found by `jaxface
prepare`, decodable), aligned and cropped to S x S (default 224) as `jaxface
reconstruct` crops them; landmarks and the face mask follow the same transform. A frame
that turns out corrupt is replaced by the next even pick; a clip with fewer than T
usable frames is skipped and counted ("clip_too_short").

TensorFlow cannot decode mp4, so the builder reads JPEG frames the user extracts with
ffmpeg (the command is in MANUAL_DOWNLOAD_INSTRUCTIONS).
"""

import dataclasses
import logging
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines.builders import common

SPLITS = ("dev", "test")
CLIP_DEPTH = 3  # speaker / video / clip


@dataclasses.dataclass
class VoxCeleb2Config(tfds.core.BuilderConfig):
  """Frames per example T and crop side S (pixels)."""
  frames: int = 4
  size: int = 224


class VoxCeleb2(common.ManualBuilder):
  """VoxCeleb2: samples of T aligned frames of one video clip."""

  name = "jaxface_voxceleb2"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [VoxCeleb2Config(name="frames4_size224", frames=4, size=224)]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Request access and download VoxCeleb2 from the VGG group (University of Oxford;
https://www.robots.ox.ac.uk/~vgg/data/voxceleb/vox2.html; research use): the video
parts vox2_dev_mp4_parta..h (concatenate, then unzip) and vox2_test_mp4.zip. Extract
so that manual_dir holds

  <manual_dir>/dev/mp4/id00012/21Uxsk56VDQ/00001.mp4
  <manual_dir>/test/mp4/id00017/01dfn2spqyE/00001.mp4

TensorFlow cannot decode mp4: extract JPEG frames with ffmpeg (here 5 frames per
second) into a frames/ folder beside mp4/, one folder per clip:

  cd <manual_dir> && find dev/mp4 test/mp4 -name '*.mp4' | while read -r f; do
    o="${f/\\/mp4\\//\\/frames\\/}"; o="${o%.mp4}"; mkdir -p "$o"
    ffmpeg -nostdin -loglevel error -i "$f" -vf fps=5 -q:v 2 "$o/%06d.jpg"
  done

giving <manual_dir>/dev/frames/id00012/21Uxsk56VDQ/00001/000001.jpg. Then find faces
and landmarks with jaxface (one annotation folder per split):

  jaxface prepare <manual_dir>/dev/frames  --out <manual_dir>/jaxface_annotations/dev
  jaxface prepare <manual_dir>/test/frames --out <manual_dir>/jaxface_annotations/test

Either split may be absent; the mp4/ folders are not read.
"""

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    features = common.face_frames_features(config.frames, config.size)
    features.update(
        identity=tfds.features.Scalar(
            dtype=np.int64, doc="Speaker index: position of the speaker folder among the "
                                "split's speaker folders sorted by name."),
        identity_name=tfds.features.Text(doc="VoxCeleb2 speaker id, e.g. id00012."),
        video=tfds.features.Text(doc="YouTube video id, e.g. 21Uxsk56VDQ."),
        clip=tfds.features.Text(doc="Clip (utterance) number, e.g. 00001."),
        frame_index=tfds.features.Tensor(
            shape=(config.frames,), dtype=np.int64,
            doc="[T] ffmpeg frame numbers (1-based) of the frames; -1 if not numeric."))
    return tfds.core.DatasetInfo(
        builder=self,
        description="VoxCeleb2 clips as samples of T evenly spaced aligned face crops of "
                    "one speaker, with 68 landmarks and face masks from `jaxface prepare`.",
        features=tfds.features.FeaturesDict(features),
        homepage="https://www.robots.ox.ac.uk/~vgg/data/voxceleb/vox2.html",
        citation="Chung, Nagrani and Zisserman, VoxCeleb2: Deep Speaker Recognition, "
                 "Interspeech 2018.",
        metadata=tfds.core.MetadataDict())

  def _split_generators(self, dl_manager):
    root = common.require_dir(pathlib.Path(dl_manager.manual_dir),
                              "the VoxCeleb2 manual download")
    present = [s for s in SPLITS if (root / s / "frames").is_dir()]
    if not present:
      raise common.DatasetLayoutError(
          f"{root}: no dev/frames/ or test/frames/ folder of extracted frames (see "
          "MANUAL_DOWNLOAD_INSTRUCTIONS for the ffmpeg command)")
    return {split: self._generate_examples(split, root / split / "frames",
                                           root / common.ANNOTATIONS_DIR / split)
            for split in present}

  def _generate_examples(self, split, frames_root, annotation_root):
    """Yields (clip key, example) per clip with at least T usable frames."""
    config = self.builder_config
    skips = common.SkipCounter(f"{self.name}/{split}")
    speakers = [d.name for d in common.list_dirs(frames_root)]
    speaker_index = {s: i for i, s in enumerate(sorted(speakers))}
    clips = [f"{s}/{v.name}/{c.name}" for s in speakers
             for v in common.list_dirs(frames_root / s) for c in common.list_dirs(v)]
    for group in common.annotation_groups(annotation_root, clips, depth=CLIP_DEPTH):
      candidates = []
      for path in common.list_images(frames_root / group.key):
        key = f"{group.key}/{path.name}"
        if key in group.faces:
          candidates.append((path, key))
        else:  # counted now; decoding waits until a frame is picked
          common.annotated_frame(path, key, group, config.size, skips)

      def load(candidate, group=group):
        return common.annotated_frame(candidate[0], candidate[1], group, config.size, skips)

      picked = common.pick_evenly(candidates, config.frames, load)
      if picked is None:
        skips.skip("clip_too_short", frames_root / group.key,
                   f"fewer than {config.frames} usable frames", logging.INFO)
        continue
      speaker, video, clip = group.key.split("/")
      example = common.face_frames_example([(key, frame) for (_, key), frame in picked])
      example.update(identity=speaker_index[speaker], identity_name=speaker, video=video,
                     clip=clip, frame_index=np.array([common.frame_number(path)
                                                      for (path, _), _ in picked], np.int64))
      yield group.key, example
    common.record_skips(self.info, split, skips)
