"""Shared pieces of the TFDS builders: image checks, skip counting, face crops, frames.

Conventions (as everywhere in jaxface): pixels with x right, y down, pixel (row i,
column j) centred at (j + 0.5, i + 0.5). Images are decoded with
`jaxface.preprocess.load_image` (EXIF orientation applied, float RGB in [0, 1]) so a
file that decodes here decodes the same way in `jaxface reconstruct`.

Bad inputs never stop a build: a corrupt or undecodable image, an image without a
face annotation, a label file that cannot be read are each skipped, logged with the
file name and counted per reason in a `SkipCounter`, whose totals the builders store
in `builder.info.metadata["skipped"][split]`.
"""

import collections
import dataclasses
import inspect
import itertools
import logging
import pathlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from etils import epath
import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core import utils as tfds_utils

from jaxface import preprocess
from jaxface.errors import JaxfaceError
from jaxface.preprocess.prepare import NO_FACE, iter_annotations, load_failures

log = logging.getLogger("data_pipelines.builders")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# Where `jaxface prepare` writes its annotations, inside a builder's manual_dir.
ANNOTATIONS_DIR = "jaxface_annotations"

T = TypeVar("T")


class DatasetLayoutError(JaxfaceError):
  """A manual download is missing or not laid out as the builder documents."""


class ManualBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base of the jaxface builders: a GeneratorBasedBuilder reading `manual_dir`.

  Only fixes `code_path`: TFDS 4.9.10 resolves it through `importlib_resources`, a
  package it declares only for Python < 3.9, so on 3.11 any builder living in a
  package fails with ModuleNotFoundError; this returns the builder's file directly.
  """

  @tfds_utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    return epath.Path(inspect.getfile(cls))


class SkipCounter:
  """Counts (and logs) inputs a build skips, per reason.

  Attributes:
    dataset: the builder name, for log lines.
    counts: reason -> number of skipped inputs.
  """

  def __init__(self, dataset: str):
    self.dataset = dataset
    self.counts: collections.Counter = collections.Counter()

  def skip(self, reason: str, path, detail: str = "", level: int = logging.WARNING) -> None:
    """Records one skipped input and logs it (at `level`) with its file name."""
    self.counts[reason] += 1
    log.log(level, "%s: skipped %s (%s%s)", self.dataset, path, reason,
            f": {detail}" if detail else "")

  def add(self, reason: str, count: int) -> None:
    """Counts `count` inputs dropped for `reason` without a log line each."""
    if count:
      self.counts[reason] += count

  def as_dict(self) -> dict[str, int]:
    return {k: int(v) for k, v in sorted(self.counts.items())}


def record_skips(info, split: str, counter: SkipCounter) -> None:
  """Stores a split's skip counts in `info.metadata["skipped"][split]` and logs them."""
  info.metadata.setdefault("skipped", {})[split] = counter.as_dict()
  if counter.counts:
    log.warning("%s/%s: skipped %s", counter.dataset, split, counter.as_dict())


def require_dir(path: pathlib.Path, what: str) -> pathlib.Path:
  """`path` if it is a folder, else a one-line `DatasetLayoutError` naming it."""
  if not path.is_dir():
    raise DatasetLayoutError(f"{path}: no such folder (expected {what})")
  return path


def list_images(folder: pathlib.Path) -> list[pathlib.Path]:
  """Image files directly in `folder`, sorted by name (hidden files ignored)."""
  return sorted(p for p in folder.iterdir()
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                and not p.name.startswith("."))


def list_dirs(folder: pathlib.Path) -> list[pathlib.Path]:
  """Sub-folders of `folder`, sorted by name (hidden ones ignored)."""
  return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def read_image(path: pathlib.Path, skips: SkipCounter) -> np.ndarray | None:
  """Decodes an image, or counts it as "corrupt_image" and returns None.

  Args:
    path: the image file.
    skips: where an undecodable file is counted.
  Returns:
    [H, W, 3] float32 RGB in [0, 1], or None if the file cannot be decoded.
  """
  try:
    return preprocess.load_image(path)
  except preprocess.ImageError as e:
    skips.skip("corrupt_image", path, str(e).split(": ", 1)[-1])
    return None


def evenly_spaced(count: int, frames: int) -> np.ndarray:
  """`frames` indices spread evenly over range(count), first and last included.

  Args:
    count: number of items, >= frames >= 1.
    frames: number of indices to pick.
  Returns:
    [frames] int64 increasing indices.
  """
  if frames == 1:
    return np.array([count // 2], np.int64)
  return np.round(np.linspace(0, count - 1, frames)).astype(np.int64)


def pick_evenly(items: Sequence[T], frames: int,
                load: Callable[[T], object | None]) -> list[tuple[T, object]] | None:
  """Picks `frames` evenly spaced items whose `load` succeeds.

  An item whose `load` returns None is dropped and the pick is redone on the rest, so
  a corrupt frame is replaced by another instead of losing the clip.

  Args:
    items: candidates in temporal order.
    frames: how many to pick.
    load: item -> loaded value, or None when the item is unusable (already counted).
  Returns:
    [(item, value)] of length `frames` in temporal order, or None when fewer than
    `frames` items load.
  """
  alive = list(range(len(items)))
  loaded: dict[int, object] = {}
  while len(alive) >= frames:
    picked = [alive[i] for i in evenly_spaced(len(alive), frames)]
    bad = set()
    for index in picked:
      if index not in loaded:
        value = load(items[index])
        if value is None:
          bad.add(index)
        else:
          loaded[index] = value
    if not bad:
      return [(items[i], loaded[i]) for i in picked]
    alive = [i for i in alive if i not in bad]
  return None


def frame_number(path: pathlib.Path) -> int:
  """The counter in an ffmpeg frame file name (000123.jpg -> 123), -1 if there is none."""
  return int(path.stem) if path.stem.isdigit() else -1


def consecutive_groups(items: Iterable[T], frames: int) -> Iterator[list[T]]:
  """Consecutive groups of `frames` items; an incomplete last group is dropped."""
  group: list[T] = []
  for item in items:
    group.append(item)
    if len(group) == frames:
      yield group
      group = []


@dataclasses.dataclass(frozen=True)
class AnnotationGroup:
  """`jaxface prepare` results for one group of images (an identity, a video clip).

  Attributes:
    key: the group's folder relative to the prepared image folder, e.g. "n000002".
    faces: image path relative to the prepared folder -> FaceAnnotation (box, score,
      detector, landmarks [68, 2] in image pixels, polygon, width, height, mask()).
    failures: image path -> why `prepare` found no face ("no face found", or why the
      image could not be read).
  """
  key: str
  faces: dict
  failures: dict


def _group_of(path: str, depth: int) -> str:
  return "/".join(path.split("/")[:depth])


def annotation_groups(folder: pathlib.Path, keys: Iterable[str],
                      depth: int) -> Iterator[AnnotationGroup]:
  """Streams `jaxface prepare` annotations group by group, one group in memory at a time.

  `prepare` lists images sorted by relative path, so each group's images are
  contiguous; groups are joined with `keys` in that order (`group_order`), which keeps
  memory bounded for millions of images.

  Args:
    folder: the `--out` folder of `jaxface prepare`.
    keys: the groups present on disk (relative folders of `depth` components).
    depth: how many leading path components name a group (1: "n000002", 3:
      "id00012/21Uxsk56VDQ/00001").
  Returns:
    an iterator of `AnnotationGroup`, one per key, in `group_order`.
  Raises:
    JaxfaceError: `folder` is missing or not a finished `prepare` output.
  """
  require_dir(folder, "face annotations written by `jaxface prepare`")
  failures: dict[str, dict] = collections.defaultdict(dict)
  for path, reason in load_failures(folder).items():
    failures[_group_of(path, depth)][path] = reason
  stream = ((group, dict(items)) for group, items in itertools.groupby(
      iter_annotations(folder), key=lambda item: _group_of(item[0], depth)))
  pending = next(stream, None)
  for key in sorted(keys, key=group_order):
    while pending is not None and group_order(pending[0]) < group_order(key):
      pending = next(stream, None)  # annotations of a group no longer on disk
    faces = {}
    if pending is not None and pending[0] == key:
      faces, pending = pending[1], next(stream, None)
    yield AnnotationGroup(key=key, faces=faces, failures=failures.get(key, {}))


def group_order(key: str) -> str:
  """Sort key of group folders that matches `prepare`'s sorted listing of their files."""
  return key + "/"


@dataclasses.dataclass(frozen=True, eq=False)
class FaceFrame:
  """One aligned face crop with its landmarks and face mask.

  Attributes:
    image: [S, S, 3] uint8 RGB crop.
    landmarks: [68, 2] float32 iBUG landmarks in crop pixels.
    mask: [S, S, 1] uint8 face mask in {0, 1}.
    transform: [2, 3] float64 affine map, original-image pixels -> crop pixels.
  """
  image: np.ndarray
  landmarks: np.ndarray
  mask: np.ndarray
  transform: np.ndarray


def to_uint8(image: np.ndarray) -> np.ndarray:
  """float [0, 1] -> uint8 [0, 255], rounded."""
  return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def align_face(image: np.ndarray, annotation, size: int) -> FaceFrame:
  """Crops a face as `jaxface reconstruct` does, carrying landmarks and mask along.

  The crop is `jaxface.preprocess.align_crop` on the annotation's landmarks; the mask
  (`annotation.mask()`, [height, width] in the annotated image's pixels) goes through
  the same transform and is thresholded at 0.5. When the decoded image is smaller
  than the annotated one (`load_image` downscales huge images), landmarks and mask
  are rescaled to it first.

  Args:
    image: [H, W, 3] float32 RGB in [0, 1] (`load_image`).
    annotation: a `jaxface.preprocess.prepare.FaceAnnotation` of this image.
    size: crop side S, pixels.
  Returns:
    a `FaceFrame`.
  """
  height, width = image.shape[:2]
  scale = np.array([width / float(annotation.width), height / float(annotation.height)])
  landmarks = np.asarray(annotation.landmarks, np.float64) * scale
  crop = preprocess.align_crop(image, landmarks, size=size)
  mask_transform = crop.transform.copy()
  mask_transform[:, :2] = mask_transform[:, :2] * scale[None, :]
  mask = np.asarray(annotation.mask(), np.float32)
  mask = preprocess.warp_crop(np.repeat(mask[:, :, None], 3, axis=2), mask_transform, size)
  return FaceFrame(image=to_uint8(crop.image), landmarks=crop.landmarks.astype(np.float32),
                   mask=(mask[:, :, :1] >= 0.5).astype(np.uint8), transform=crop.transform)


def face_frames_features(frames: int, size: int) -> dict:
  """Features of T aligned face crops (VGGFace2, VoxCeleb2): image, landmarks, mask, paths.

  Args:
    frames: T, frames per example.
    size: crop side S, pixels.
  Returns:
    dict of TFDS features: image [T, S, S, 3] uint8 (JPEG), landmarks [T, 68, 2]
    float32 (crop pixels), mask [T, S, S, 1] uint8 in {0, 1} (PNG), paths [T] text.
  """
  return {
      "image": tfds.features.Sequence(
          tfds.features.Image(shape=(size, size, 3), encoding_format="jpeg"), length=frames,
          doc="[T, S, S, 3] uint8 RGB face crops aligned as `jaxface reconstruct` aligns "
              "them (`jaxface.preprocess.align_crop`)."),
      "landmarks": tfds.features.Sequence(
          tfds.features.Tensor(shape=(68, 2), dtype=np.float32), length=frames,
          doc="[T, 68, 2] float32 iBUG-68 landmarks (x, y) in crop pixels, pixel (i, j) "
              "centred at (j + 0.5, i + 0.5)."),
      "mask": tfds.features.Sequence(
          tfds.features.Image(shape=(size, size, 1), encoding_format="png"), length=frames,
          doc="[T, S, S, 1] uint8 face mask in {0, 1}, warped like the image."),
      "paths": tfds.features.Sequence(
          tfds.features.Text(), length=frames,
          doc="[T] source image paths relative to the split's image folder."),
  }


def face_frames_example(frames: Sequence[tuple[str, FaceFrame]]) -> dict:
  """The `face_frames_features` part of an example from [(relative path, FaceFrame)]."""
  return {
      "image": [f.image for _, f in frames],
      "landmarks": [f.landmarks for _, f in frames],
      "mask": [f.mask for _, f in frames],
      "paths": [path for path, _ in frames],
  }


def annotated_frame(image_path: pathlib.Path, key: str, group: AnnotationGroup, size: int,
                    skips: SkipCounter) -> FaceFrame | None:
  """Decodes and aligns one annotated image, or counts why it cannot be used.

  Args:
    image_path: the image file.
    key: its path relative to the prepared folder.
    group: the `AnnotationGroup` holding it.
    size: crop side, pixels.
    skips: counts "no_face" (prepare found none), "corrupt_image" (prepare could not
      read it, or it no longer decodes) and "not_prepared" (absent from prepare's
      listing: added after `jaxface prepare` ran).
  Returns:
    a `FaceFrame`, or None.
  """
  annotation = group.faces.get(key)
  if annotation is None:
    reason = group.failures.get(key)
    if reason is None:
      skips.skip("not_prepared", image_path, "not in the `jaxface prepare` output; rerun it")
    elif reason == NO_FACE:
      skips.skip("no_face", image_path, reason, logging.INFO)
    else:
      skips.skip("corrupt_image", image_path, reason)
    return None
  image = read_image(image_path, skips)
  if image is None:
    return None
  return align_face(image, annotation, size)


def original_or_decoded(path: pathlib.Path, image: np.ndarray):
  """What to store for a full image: the file's own bytes when they decode to `image`.

  The original JPEG bytes are kept (no re-encoding loss) when the file is an RGB JPEG
  without an EXIF rotation and `load_image` did not downscale it; otherwise the
  decoded, upright pixels are stored, so coordinates always refer to what is stored.

  Args:
    path: the image file (already decoded successfully into `image`).
    image: [H, W, 3] float32 RGB in [0, 1], `load_image(path)`.
  Returns:
    bytes of the file, or a [H, W, 3] uint8 array for TFDS to encode.
  """
  from PIL import Image  # pylint: disable=import-outside-toplevel
  with Image.open(path) as original:
    unchanged = (original.format == "JPEG" and original.mode == "RGB"
                 and original.getexif().get(0x0112, 1) == 1
                 and original.size == (image.shape[1], image.shape[0]))
  return path.read_bytes() if unchanged else to_uint8(image)
