"""TFDS builder for the NoW benchmark (manual download): images and their ground truth.

One example per line of `imagepathsvalidation.txt` (split "validation") and, when
present, `imagepathstest.txt` (split "test", no public scans): the photo, its subject
and challenge, the dataset's face box (`detected_face/`), and the paths of the
subject's scan and 7-landmark `.pp` file relative to manual_dir (stored in
`info.metadata["manual_dir"]`). `jaxface evaluate` reads the scans itself.

Layouts accepted (as `jaxface.eval.now`): the lists, `scans/` and `scans_lmks_onlypp/`
in manual_dir or in manual_dir/NoW_Dataset/final_release_version/, the photos in
`iphone_pictures/<subject>/<challenge>/<image>.jpg` under either.
"""

import logging
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines.builders import common
from jaxface import safe_pickle
from jaxface.errors import ModelFormatError

NESTED = pathlib.Path("NoW_Dataset") / "final_release_version"
LISTS = {"validation": "imagepathsvalidation.txt", "test": "imagepathstest.txt"}
NO_BOX = (-1.0, -1.0, -1.0, -1.0)


def _first(root: pathlib.Path, name: str) -> pathlib.Path | None:
  """root/name or root/NoW_Dataset/final_release_version/name, whichever exists."""
  return next((p for p in (root / name, root / NESTED / name) if p.exists()), None)


def read_box(path: pathlib.Path) -> np.ndarray | None:
  """[4] float32 (left, top, right, bottom) of a NoW `detected_face/*.npy`, or None.

  The files are `np.save`d Python dicts (pickles, keys left/top/right/bottom); they are
  read with jaxface's allow-list unpickler, never plain `np.load(allow_pickle=True)`.
  """
  try:
    box = safe_pickle.load(path, "NoW detected_face box", npy=True)
  except ModelFormatError:
    return None
  if isinstance(box, np.ndarray) and box.dtype == object and box.shape == ():
    box = box.item()
  if not isinstance(box, dict):
    return None
  box = {(k.decode() if isinstance(k, bytes) else k): v for k, v in box.items()}
  try:
    return np.array([box["left"], box["top"], box["right"], box["bottom"]], np.float32)
  except (KeyError, TypeError, ValueError):
    return None


class Now(common.ManualBuilder):
  """NoW: photos with subject, challenge, face box and ground-truth scan paths."""

  name = "jaxface_now"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Register and download the NoW dataset (Sanyal et al., https://now.is.tue.mpg.de;
non-commercial research licence): the images (NoW_Dataset.zip) and the validation
scans with their landmarks. Lay them out as the official evaluation
(github.com/soubhiksanyal/now_evaluation) expects:

  <manual_dir>/imagepathsvalidation.txt        (lines subject/challenge/image.jpg)
  <manual_dir>/imagepathstest.txt              (optional: the test split)
  <manual_dir>/NoW_Dataset/final_release_version/iphone_pictures/<subject>/<challenge>/<image>.jpg
  <manual_dir>/NoW_Dataset/final_release_version/detected_face/<subject>/<challenge>/<image>.npy
  <manual_dir>/scans/<subject>/<scan>.obj
  <manual_dir>/scans_lmks_onlypp/<subject>/<scan>.pp

(the lists, scans/ and scans_lmks_onlypp/ may also sit in
NoW_Dataset/final_release_version/).
"""

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description="NoW benchmark photos with their subject, challenge, face box and "
                    "ground-truth scan paths (evaluation with `jaxface evaluate`).",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(
                shape=(None, None, 3), encoding_format="jpeg",
                doc="The photo, upright (its own JPEG bytes unless EXIF-rotated)."),
            "subject": tfds.features.Text(doc="Subject id, e.g. FaMoS_180424_03335_TA."),
            "challenge": tfds.features.Text(
                doc="multiview_neutral, multiview_expressions, multiview_occlusions or selfie."),
            "image_path": tfds.features.Text(
                doc="The image list's line: subject/challenge/image.jpg."),
            "box": tfds.features.Tensor(
                shape=(4,), dtype=np.float32,
                doc="(left, top, right, bottom) face box of detected_face/, pixels; -1 "
                    "when absent."),
            "scan_path": tfds.features.Text(
                doc="The subject's scan .obj relative to manual_dir; '' when absent."),
            "scan_landmarks_path": tfds.features.Text(
                doc="The scan's 7-landmark .pp relative to manual_dir; '' when absent."),
        }),
        homepage="https://now.is.tue.mpg.de",
        citation="Sanyal et al., Learning to Regress 3D Face Shape and Expression from an "
                 "Image without 3D Supervision, CVPR 2019.",
        metadata=tfds.core.MetadataDict())

  def _split_generators(self, dl_manager):
    root = common.require_dir(pathlib.Path(dl_manager.manual_dir), "the NoW download")
    lists = {split: _first(root, name) for split, name in LISTS.items()}
    if lists["validation"] is None:
      raise common.DatasetLayoutError(f"{root}: no imagepathsvalidation.txt in it or in {NESTED}")
    pictures = _first(root, "iphone_pictures")
    if pictures is None:
      raise common.DatasetLayoutError(f"{root}: no iphone_pictures/ folder in it or in {NESTED}")
    self.info.metadata["manual_dir"] = str(root)
    return {split: self._generate_examples(split, root, path, pictures)
            for split, path in lists.items() if path is not None}

  def _generate_examples(self, split, root, image_list, pictures):
    """Yields (image path, example) per line of the image list."""
    skips = common.SkipCounter(f"{self.name}/{split}")
    boxes = pictures.parent / "detected_face"
    scans = {}
    for line in image_list.read_text(encoding="utf-8").splitlines():
      line = line.strip().replace("\\", "/")
      if not line:
        continue
      parts = line.split("/")
      if len(parts) < 3:
        skips.skip("bad_line", image_list, f"expected subject/challenge/image, got {line!r}")
        continue
      subject, challenge = parts[-3], parts[-2]
      path = pictures / line
      if not path.is_file():
        skips.skip("missing_image", path)
        continue
      image = common.read_image(path, skips)
      if image is None:
        continue
      if subject not in scans:
        scans[subject] = self._scan_paths(root, subject, split)
      box = read_box(boxes / pathlib.PurePosixPath(line).with_suffix(".npy"))
      yield line, {
          "image": common.original_or_decoded(path, image),
          "subject": subject, "challenge": challenge, "image_path": line,
          "box": np.asarray(NO_BOX if box is None else box, np.float32),
          "scan_path": scans[subject][0], "scan_landmarks_path": scans[subject][1],
      }
    common.record_skips(self.info, split, skips)

  def _scan_paths(self, root, subject, split) -> tuple[str, str]:
    """(scan .obj, .pp) of a subject relative to root: the first of each, sorted."""
    found = []
    for folder, pattern in (("scans", "*.obj"), ("scans_lmks_onlypp", "*.pp")):
      base = _first(root, folder)
      files = sorted((base / subject).glob(pattern)) if base is not None else []
      found.append(files[0].relative_to(root).as_posix() if files else "")
    if split == "validation" and not all(found):
      logging.getLogger(__name__).warning("%s: no scan or .pp for subject %s", self.name,
                                          subject)
    return found[0], found[1]
