"""`prepare`: detection, 68 landmarks and face polygons over an image folder, stored once.

The training datasets (VGGFace2, VoxCeleb2 frames) need, per image, the largest face's
box, its iBUG-68 landmarks and the face-mask polygon (`face_polygon`). Computing them
takes ~60 ms per 250x250 image on a CPU core (HOG with one upsampling; the MMOD CNN
fallback on faceless images costs more), so it is done once, here, and the TFDS
builders read the result with `load_annotations`, `iter_annotations` (one chunk in
memory at a time) and `load_failures`.

Storage (`out_dir`):
  manifest.json       image_dir, chunk size, image and chunk counts, the detector
                      settings and a sha256 fingerprint of the listing.
  chunk-000000.npz    one per `chunk_size` images of the sorted listing, written
                      atomically (`jaxface.files.save_npz`), plain arrays (no pickle):
                        paths      [N] str  image path relative to image_dir, '/'-separated
                        ok         [N] bool a face was found
                        reasons    [N] str  why not ('' when ok)
                        boxes      [N, 4] float32 (x0, y0, x1, y1) pixels
                        scores     [N] float64 detector confidence
                        detectors  [N] str  "hog" or "mmod" ('' when not ok)
                        landmarks  [N, 68, 2] float32 (x, y) pixels
                        polygons   [N, 27, 2] float32 (x, y) pixels
                        sizes      [N, 2] int32 (width, height) of the loaded image
                      Rows that are not ok hold zeros (sizes: 0 when unreadable).

The listing is every file under image_dir (recursively, following no folder links,
skipping names that start with '.') whose extension matches case-insensitively, sorted
by its '/'-separated relative path. A run skips the chunks already on disk, so a run
that was killed continues where it stopped; a second process on the same `out_dir` is
refused (a `flock` on `out_dir/.lock`). With `workers > 1`, images go to worker
processes (dlib holds the GIL) in order; the chunks are the same bytes either way.

Coordinates are those of `jaxface.preprocess`: pixels of the image as `load_image`
returns it (EXIF-upright; the file's own size unless its long side exceeds 4096),
x right, y down, pixel (row i, column j) centred at (j + 0.5, i + 0.5).
"""

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import multiprocessing
import os
import pathlib
import signal
import sys
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from jaxface import files
from jaxface.errors import JaxfaceError
from jaxface.preprocess import detect, image_io
from jaxface.preprocess import mask as mask_lib

MANIFEST = "manifest.json"
FORMAT = "jaxface-prepare/1"
POLYGON_POINTS = 27  # `face_polygon`: 17 jaw + 10 raised brow points
MAX_REASON = 200  # characters kept of a failure reason
NO_FACE = "no face found"
# Fixed settings (recorded in the manifest; `upsample` is the only one a run chooses).
MAX_SIDE = 4096  # `load_image(max_side=...)`
MIN_SCORE = 0.3  # `detect_faces(min_score=...)`
FOREHEAD = 0.25  # `face_polygon(forehead=...)`


@dataclasses.dataclass(frozen=True)
class FaceAnnotation:
  """The largest face of one image, as stored by `prepare`.

  Attributes:
    box: [4] float32 (x0, y0, x1, y1) detection box, pixels (may extend past the image).
    score: detector confidence (faces ~0.5-3).
    detector: "hog" or "mmod" (the CNN fallback, when HOG found nothing).
    landmarks: [68, 2] float32 iBUG landmarks, (x, y) pixels, x right, y down, pixel
      centres at +0.5.
    polygon: [27, 2] float32 face-mask polygon (`face_polygon` of the landmarks), pixels.
    width, height: size of the image the coordinates refer to, pixels.
  """
  box: np.ndarray
  score: float
  detector: str
  landmarks: np.ndarray
  polygon: np.ndarray
  width: int
  height: int

  def mask(self) -> np.ndarray:
    """The face region: [height, width] bool, True where a pixel centre is inside `polygon`."""
    return mask_lib.polygon_mask(self.polygon, self.height, self.width) > 0.5

  def __eq__(self, other) -> bool:
    if not isinstance(other, FaceAnnotation):
      return NotImplemented
    return all(np.array_equal(getattr(self, f.name), getattr(other, f.name))
               for f in dataclasses.fields(self))


@dataclasses.dataclass(frozen=True)
class PrepareSummary:
  """What `prepare` found and did.

  Attributes:
    images: images in the listing.
    faces: images with a face, over all chunks (this run's and earlier runs').
    failures: images without one (no face, unreadable), over all chunks.
    processed: images processed by this run (0 when every chunk was already written).
    chunks_written: chunks this run wrote.
    chunks_skipped: chunks already on disk.
    seconds: wall time of this run.
  """
  images: int
  faces: int
  failures: int
  processed: int
  chunks_written: int
  chunks_skipped: int
  seconds: float


def chunk_path(out_dir: str | os.PathLike, index: int) -> pathlib.Path:
  """`out_dir/chunk-000123.npz`."""
  return pathlib.Path(out_dir) / f"chunk-{index:06d}.npz"


def list_images(image_dir: str | os.PathLike, extensions: Sequence[str]) -> list[str]:
  """The sorted '/'-separated relative paths of the images under `image_dir`.

  Args:
    image_dir: the folder, searched recursively (folder links are not followed).
    extensions: file name endings, matched case-insensitively (".jpg", ...).
  Returns:
    Paths relative to image_dir, e.g. "n000002/0001_01.jpg"; names starting with '.'
    (and folders so named) are skipped.
  """
  endings = tuple(e.lower() for e in extensions)
  found = []
  for folder, subfolders, names in os.walk(image_dir):
    subfolders[:] = [s for s in subfolders if not s.startswith(".")]
    relative = pathlib.Path(folder).relative_to(image_dir).as_posix()
    prefix = "" if relative == "." else relative + "/"
    found += [prefix + n for n in names if n.lower().endswith(endings) and not n.startswith(".")]
  return sorted(found)


def _fingerprint(paths: Sequence[str]) -> str:
  digest = hashlib.sha256()
  for path in paths:
    digest.update(path.encode("utf-8", "surrogateescape") + b"\n")
  return digest.hexdigest()


def annotate_image(path: str | os.PathLike, upsample: int = 1) -> dict:
  """Loads one image and annotates its largest face; failures become a reason, not an error.

  Args:
    path: the image file.
    upsample: `detect_faces(upsample=...)`.
  Returns:
    A dict of one chunk row (see the module docstring): ok, reason, box [4], score,
    detector, landmarks [68, 2], polygon [27, 2], size [2] (width, height).
  Raises:
    JaxfaceError: other than an unreadable image (e.g. the dlib models are missing).
  """
  row = {"ok": False, "reason": "", "box": np.zeros(4, np.float32), "score": 0.0,
         "detector": "", "landmarks": np.zeros((68, 2), np.float32),
         "polygon": np.zeros((POLYGON_POINTS, 2), np.float32), "size": (0, 0)}
  try:
    pixels = detect.to_uint8(image_io.load_image(path, max_side=MAX_SIDE))
  except image_io.ImageError as e:
    return row | {"reason": str(e).removeprefix(f"{path}: ")[:MAX_REASON]}
  except JaxfaceError:
    raise
  except Exception as e:  # noqa: BLE001  one bad file must not stop a dataset
    return row | {"reason": f"unexpected {type(e).__name__}: {e}"[:MAX_REASON]}
  row["size"] = (pixels.shape[1], pixels.shape[0])
  boxes = detect.detect_faces(pixels, upsample=upsample, cnn_fallback=True, min_score=MIN_SCORE)
  if not boxes:
    return row | {"reason": NO_FACE}
  box = boxes[0]  # largest first
  landmarks = detect.landmarks_68(pixels, box)
  return row | {"ok": True, "box": np.array([box.left, box.top, box.right, box.bottom],
                                             np.float32),
                "score": box.score, "detector": box.detector, "landmarks": landmarks,
                "polygon": mask_lib.face_polygon(landmarks, forehead=FOREHEAD).astype(np.float32)}


def _chunk_arrays(paths: Sequence[str], rows: Sequence[dict]) -> dict[str, np.ndarray]:
  """Stacks rows into the chunk's fixed-size arrays (see the module docstring)."""
  def strings(values):  # at least <U1, so an all-empty column still has a str dtype
    return np.array(values, dtype=f"<U{max([1, *map(len, values)])}")
  return {
      "paths": strings(paths),
      "ok": np.array([r["ok"] for r in rows], bool),
      "reasons": strings([r["reason"] for r in rows]),
      "boxes": np.stack([r["box"] for r in rows]).astype(np.float32),
      "scores": np.array([r["score"] for r in rows], np.float64),
      "detectors": strings([r["detector"] for r in rows]),
      "landmarks": np.stack([r["landmarks"] for r in rows]).astype(np.float32),
      "polygons": np.stack([r["polygon"] for r in rows]).astype(np.float32),
      "sizes": np.array([r["size"] for r in rows], np.int32),
  }


def _read_chunk(path: pathlib.Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
  with np.load(path, allow_pickle=False) as data:
    return {key: data[key] for key in keys}


def _chunk_ok(path: pathlib.Path, paths: Sequence[str]) -> np.ndarray | None:
  """The ok flags of a written chunk, or None if it is absent or not the expected chunk."""
  if not path.is_file():
    return None
  try:
    chunk = _read_chunk(path, ("paths", "ok"))
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
    return None
  if chunk["paths"].tolist() != list(paths) or chunk["ok"].shape != (len(paths),):
    return None
  return chunk["ok"]


def _written_chunks(out_dir: pathlib.Path, chunks: Sequence[Sequence[str]],
                    log: Callable[[str], None]) -> dict[int, np.ndarray]:
  """chunk index -> ok flags [N] bool, for the chunks already written (and valid)."""
  done = {}
  for index, paths in enumerate(chunks):
    ok = _chunk_ok(chunk_path(out_dir, index), paths)
    if ok is not None:
      done[index] = ok
    elif chunk_path(out_dir, index).exists():
      log(f"{chunk_path(out_dir, index)}: unreadable or not this listing's; preparing it again")
  return done


def _check_manifest(out_dir: pathlib.Path, manifest: dict) -> None:
  """Writes the manifest, or checks that the one on disk describes the same job."""
  path = out_dir / MANIFEST
  if not path.exists():
    if any(out_dir.glob("chunk-*.npz")):
      raise JaxfaceError(f"{out_dir}: holds chunk files but no {MANIFEST}; use an empty --out")
    files.write_json(path, manifest)
    return
  try:
    old = json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise JaxfaceError(f"{path}: unreadable ({e}); use another --out") from None
  if old.get("format") != FORMAT:
    raise JaxfaceError(f"{path}: not a {FORMAT} manifest; use another --out")
  if old["image_dir"] != manifest["image_dir"]:
    raise JaxfaceError(f"{out_dir}: holds annotations of {old['image_dir']}, not "
                       f"{manifest['image_dir']}; use another --out")
  if old["chunk_size"] != manifest["chunk_size"]:
    raise JaxfaceError(f"{out_dir}: was prepared with chunk size {old['chunk_size']}, not "
                       f"{manifest['chunk_size']}; rerun with --chunk-size {old['chunk_size']}")
  if old["settings"] != manifest["settings"]:
    raise JaxfaceError(f"{out_dir}: was prepared with {old['settings']}, not "
                       f"{manifest['settings']}; use another --out")
  if old["fingerprint"] != manifest["fingerprint"]:
    raise JaxfaceError(f"{out_dir}: was prepared from another listing of {old['image_dir']} "
                       f"({old['num_images']} images then, {manifest['num_images']} now); "
                       "use another --out")


@contextlib.contextmanager
def _exclusive(out_dir: pathlib.Path):
  """Holds an exclusive lock on `out_dir` (one `prepare` per output folder at a time)."""
  with open(out_dir / ".lock", "w", encoding="utf-8") as lock:
    try:
      fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise JaxfaceError(f"{out_dir}: another `jaxface prepare` is writing here") from None
    yield


class _Progress:
  """One stderr line: images done/total, images/s, ETA, failures.

  On a terminal the line is rewritten in place (at most 5 times a second); otherwise a
  full line is printed every `every` seconds and at the end.
  """

  def __init__(self, total: int, done: int, failures: int, enabled: bool, every: float = 30.0):
    self.total, self.done, self.failures, self.enabled = total, done, failures, enabled
    self.stream = sys.stderr
    self.tty = enabled and self.stream.isatty()
    self.last = time.monotonic()
    self.first = None  # when the first image finished: the rate excludes model loading
    self.every = 0.2 if self.tty else every
    self.processed = 0
    self.width = 0

  def line(self) -> str:
    elapsed = time.monotonic() - self.first if self.first is not None else 0.0
    rate = (self.processed - 1) / elapsed if elapsed > 0 else 0.0
    seconds = (self.total - self.done) / rate if rate > 0 else float("inf")
    eta = ("--:--:--" if seconds == float("inf") else f"{seconds / 86400:.1f} days"
           if seconds >= 86400 else time.strftime("%H:%M:%S", time.gmtime(seconds)))
    return (f"prepare: {self.done}/{self.total} images, {rate:.1f} images/s, "
            f"ETA {eta}, {self.failures} failures")

  def update(self, ok: bool) -> None:
    self.done, self.processed, self.failures = (self.done + 1, self.processed + 1,
                                                self.failures + (not ok))
    now = time.monotonic()
    self.first = now if self.first is None else self.first
    if self.enabled and now - self.last >= self.every:
      self.last = now
      self.write()

  def write(self, end: str = "") -> None:
    text = self.line()
    if self.tty:
      self.stream.write("\r" + text.ljust(self.width) + end)
      self.width = len(text)
    else:
      self.stream.write(text + "\n")
    self.stream.flush()

  def close(self) -> None:
    if self.enabled:
      self.write(end="\n")


def _worker_init() -> None:
  signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle


def _annotate_task(task: tuple[str, int]) -> dict:
  return annotate_image(*task)


@contextlib.contextmanager
def _mapper(workers: int):
  """An ordered `map(_annotate_task, tasks)`: in this process, or in `workers` processes."""
  if workers <= 1:
    yield lambda tasks: (annotate_image(*task) for task in tasks)
    return
  # spawn: the parent may have imported jax/threads, which forking would copy half-way.
  pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_worker_init)
  try:
    yield lambda tasks: pool.imap(_annotate_task, tasks, chunksize=4)
  finally:
    pool.terminate()
    pool.join()


def prepare(image_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
            chunk_size: int = 256, extensions: Sequence[str] = (".jpg", ".jpeg", ".png"),
            log: Callable[[str], None] = print, upsample: int = 1, workers: int = 1,
            progress: bool = True) -> PrepareSummary:
  """Detects the largest face, its 68 landmarks and mask polygon in every image; stores them.

  Resumable: chunks already in `out_dir` are kept, so a killed run continues where it
  stopped and a run over a finished folder does nothing. Images without a face or
  that cannot be read are recorded with a reason and counted, never raised.

  Args:
    image_dir: the raw image folder (searched recursively, see `list_images`).
    out_dir: where the manifest and chunks go (created).
    chunk_size: images per chunk file (the unit of resumption).
    extensions: image file endings, case-insensitive.
    log: called with one-line messages (the plan at the start).
    upsample: `detect_faces(upsample=...)`: each doubling finds 2x smaller faces and
      costs ~4x the detection time.
    workers: processes detecting in parallel (1: this process).
    progress: show the progress line on stderr.
  Returns:
    A `PrepareSummary`.
  Raises:
    JaxfaceError: image_dir missing or holding no images; out_dir not creatable, prepared
      from another folder, listing, chunk size or settings, or in use by another run;
      chunk_size, workers or upsample out of range.
  """
  start = time.monotonic()
  if chunk_size < 1 or workers < 1 or upsample < 0:
    raise JaxfaceError(f"need chunk size >= 1, workers >= 1, upsample >= 0; got "
                       f"{chunk_size}, {workers}, {upsample}")
  if not os.path.isdir(image_dir):
    raise JaxfaceError(f"{image_dir}: not a folder" if os.path.exists(image_dir)
                       else f"{image_dir}: no such folder")
  image_dir, out_dir = pathlib.Path(image_dir).resolve(), pathlib.Path(out_dir)
  paths = list_images(image_dir, extensions)
  if not paths:
    raise JaxfaceError(f"{image_dir}: no images ({', '.join(extensions)}) in it or below it")
  chunks = [paths[i:i + chunk_size] for i in range(0, len(paths), chunk_size)]
  manifest = {"format": FORMAT, "image_dir": str(image_dir), "chunk_size": chunk_size,
              "num_images": len(paths), "num_chunks": len(chunks),
              "fingerprint": _fingerprint(paths),
              "extensions": [e.lower() for e in extensions],
              "settings": {"upsample": upsample, "cnn_fallback": True, "min_score": MIN_SCORE,
                           "forehead": FOREHEAD, "max_side": MAX_SIDE}}
  try:
    out_dir.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise JaxfaceError(f"{out_dir}: cannot create the output folder ({e.strerror})") from None
  with _exclusive(out_dir):
    _check_manifest(out_dir, manifest)
    for stale in [*out_dir.glob(".chunk-*.tmp"), *out_dir.glob(f".{MANIFEST}.*.tmp")]:
      stale.unlink()  # left by a killed run's `atomic_path`
    done = _written_chunks(out_dir, chunks, log)
    faces = sum(int(ok.sum()) for ok in done.values())
    failures = sum(int((~ok).sum()) for ok in done.values())
    pending = [i for i in range(len(chunks)) if i not in done]
    log(f"prepare: {len(paths)} images in {len(chunks)} chunks of {chunk_size} from "
        f"{image_dir}; {len(done)} chunks already done")
    bar = _Progress(len(paths), sum(len(chunks[i]) for i in done), failures,
                    progress and bool(pending))
    tasks = ((str(image_dir / p), upsample) for i in pending for p in chunks[i])
    rows, written = [], 0
    with _mapper(workers) as mapper, contextlib.closing(bar):
      for row in mapper(tasks):
        rows.append(row)
        bar.update(row["ok"])
        index = pending[written]
        if len(rows) == len(chunks[index]):
          files.save_npz(chunk_path(out_dir, index), **_chunk_arrays(chunks[index], rows))
          faces += sum(r["ok"] for r in rows)
          failures += sum(not r["ok"] for r in rows)
          rows, written = [], written + 1
  return PrepareSummary(images=len(paths), faces=faces, failures=failures,
                        processed=sum(len(chunks[i]) for i in pending),
                        chunks_written=written, chunks_skipped=len(done),
                        seconds=time.monotonic() - start)


def _read_manifest(out_dir: pathlib.Path) -> dict:
  path = out_dir / MANIFEST
  if not path.is_file():
    raise JaxfaceError(f"{out_dir}: no {MANIFEST}; not the output of `jaxface prepare`")
  try:
    manifest = json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise JaxfaceError(f"{path}: unreadable ({e})") from None
  if manifest.get("format") != FORMAT:
    raise JaxfaceError(f"{path}: not a {FORMAT} manifest")
  return manifest


def _iter_chunks(out_dir: str | os.PathLike) -> Iterator[dict[str, np.ndarray]]:
  """Every chunk of a finished `prepare` output, in order, as read-only arrays."""
  out_dir = pathlib.Path(out_dir)
  manifest = _read_manifest(out_dir)
  for index in range(manifest["num_chunks"]):
    path = chunk_path(out_dir, index)
    if not path.is_file():
      raise JaxfaceError(f"{path}: missing ({manifest['num_chunks']} chunks expected); "
                         f"rerun `jaxface prepare {manifest['image_dir']} --out {out_dir}`")
    try:
      with np.load(path, allow_pickle=False) as data:
        chunk = {key: data[key] for key in data.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
      raise JaxfaceError(f"{path}: unreadable ({e}); delete it and rerun `jaxface prepare`") \
          from None
    for array in chunk.values():
      array.flags.writeable = False
    yield chunk


def iter_annotations(out_dir: str | os.PathLike) -> Iterator[tuple[str, FaceAnnotation]]:
  """(relative path, `FaceAnnotation`) of every image with a face, in listing order.

  One chunk in memory at a time (for folders whose annotations do not fit a dict).

  Args:
    out_dir: a finished `prepare` output.
  Raises:
    JaxfaceError: out_dir has no manifest, or a chunk is missing or unreadable.
  """
  for chunk in _iter_chunks(out_dir):
    for i in np.flatnonzero(chunk["ok"]):
      width, height = chunk["sizes"][i].tolist()
      yield str(chunk["paths"][i]), FaceAnnotation(
          box=chunk["boxes"][i], score=float(chunk["scores"][i]),
          detector=str(chunk["detectors"][i]), landmarks=chunk["landmarks"][i],
          polygon=chunk["polygons"][i], width=width, height=height)


def load_annotations(out_dir: str | os.PathLike) -> dict[str, FaceAnnotation]:
  """Every image with a face: relative '/'-separated path -> its largest face's `FaceAnnotation`.

  Args:
    out_dir: a finished `prepare` output.
  Returns:
    A dict in listing order; images without a face are absent (see `load_failures`).
  Raises:
    JaxfaceError: out_dir has no manifest, or a chunk is missing or unreadable.
  """
  return dict(iter_annotations(out_dir))


def load_failures(out_dir: str | os.PathLike) -> dict[str, str]:
  """Every image without a face: relative path -> reason ("no face found", "empty file", ...)."""
  return {str(path): str(reason) for chunk in _iter_chunks(out_dir)
          for path, reason in zip(chunk["paths"][~chunk["ok"]], chunk["reasons"][~chunk["ok"]])}
