"""Training input pipeline: TFRecord shards of the synthetic dataset -> batch dicts.

`make_dataset(config, split)` reads `config.input` (defaults in `default_config()`):

| field          | default | meaning                                                        |
|----------------|---------|----------------------------------------------------------------|
| data_dir       | ""      | folder with `dataset_info.json` and the split's shard files     |
| batch_size     | 32      | GLOBAL batch size; each host yields batch_size / process_count  |
| frames         | 1       | T frames per sample (<= the stored F); distinct frames of one   |
|                |         | record: random when augmenting, the first T otherwise           |
| image_size     | 224     | H = W of the output; resized when the stored S differs          |
| shuffle_buffer | 1024    | records in the shuffle buffer; <= 1: no shuffling at all        |
| seed           | 0       | shuffling, frame choice and augmentation; same seed, same data |
| augment        | True    | PRNet augmentation (`augment.py`), ranges in `augmentation`     |
| augmentation   | PRNet   | rotation_degrees 45, translation 0.1, scale (0.9, 1.2),         |
|                |         | color_scale (0.6, 1.4), occlusion_probability 0.3,              |
|                |         | interpolation "bilinear" (or "nearest": faster, jagged)         |
| position_map   | False   | decode and include `position_map`                               |
| ground_truth   | False   | include the generating coefficients                             |
| detail         | False   | include the per-identity `detail` displacements                 |
| repeat         | True    | loop over the data forever (one pass otherwise)                 |
| prefetch       | 2       | batches prefetched (-1: autotuned)                              |

Batches (numpy through `iter(pipeline)`, tf through `pipeline.dataset`), B = per-host
batch size, T frames, H output size:

| key           | shape / dtype                 | meaning                                        |
|---------------|-------------------------------|------------------------------------------------|
| image         | [B,T,H,H,3] float32 in [0, 1] | RGB                                            |
| landmarks     | [B,T,68,2] float32            | iBUG-68 pixels (x right, y down, pixel centres |
|               |                               | at +0.5), in the (augmented) output image      |
| mask          | [B,T,H,H] float32 0/1         | visible face: model surface, not under an      |
|               |                               | occluder (stored or synthetic)                 |
| identity      | [B] int32                     | global identity index; the T frames of a row   |
|               |                               | are one identity                               |
| position_map  | [B,T,256,256,3] float32       | (`position_map`) x, y output pixels, z depth   |
|               |                               | pixels (larger = nearer), moved with the image |
| shape, albedo | [B,Ks], [B,Ka] float32        | (`ground_truth`) identity coefficients         |
| expression    | [B,T,Ke] float32              | (`ground_truth`)                               |
| rotation      | [B,T,3] float32 radians       | (`ground_truth`) Euler (pitch, yaw, roll)      |
| translation   | [B,T,3] float32 mm            | (`ground_truth`)                               |
| focal         | [B,T] float32 pixels          | (`ground_truth`) at the STORED image size S    |
| light         | [B,T,9,3] float32             | (`ground_truth`) SH coefficients               |
| detail        | [B,V,3] float32 mm            | (`detail`) see `features.py`                   |

Augmentation (and resizing) moves the image, mask, landmarks and position map
together; the coefficients are the ones that generated the STORED frame (before
augmentation and resizing), so the camera (rotation, translation, focal) no longer
matches an augmented image; shape, expression, albedo and light still do.

Sharding across hosts: the split's shard files are dealt round-robin to the processes
(disjoint files); with fewer files than processes every process reads every file and
keeps the records r of file k with (k + r) % process_count == process_index. Hosts may
then hold a few records more or less; with `repeat=False` they can yield different
numbers of batches (the last partial batch is always dropped).

Determinism: file order (per epoch), shuffling, frame choice and augmentation use
seeds derived from (seed, process_index, epoch or element index) and stateless random
ops; parallel stages keep their order (`deterministic=True`), so the same seed gives the
same batches whatever the thread timing.

Corrupt data is skipped, counted and reported, never fatal (`pipeline.stats`, one
warning line per skipped record, `stats.summary()` for one line in all):
  * Framing. When an epoch first reaches a shard file, a Python pass (`scan_file`)
    walks its records with TensorFlow's C++ random-access TFRecord reader, which checks
    the framing (uint64 length, masked CRC32C of the length, data, masked CRC32C of the
    data) at C++ speed. When a record fails, its header is checked here (a table-driven
    CRC32C of its 8 length bytes): a sound header gives the next record's offset
    exactly (one corrupt record skipped); a broken one is resynchronised by searching
    for the next offset where a whole record checks out. The result, the byte offsets
    of the runs of sound records, is kept for later epochs; tf.data then reads each
    run natively from its offset (`TFRecordDatasetV2`), so no record bytes pass through
    Python and corrupt ones never reach the parser. Counted in `stats.corrupt_records`.
  * Content. Records whose Example cannot be parsed, whose images or masks cannot be
    decoded or whose sizes disagree with `dataset_info.json` are dropped one by one:
    groups of `_DECODE_GROUP` records are decoded in their own small dataset with
    `ignore_errors`, each decoded record tagged with its place in the group; when
    fewer come out than went in, a py_function reports the missing ones (the set-up
    of the small dataset is paid once per group, not per record). Counted in
    `stats.undecodable_records`.
  Counts are of distinct records of this host's share, exact once the files have been
  read (a file is scanned when an epoch reaches it, ahead of the batches it feeds).

Stages: scan/plan (Python, once per file) -> interleaved native reads of up to 16 files
-> shuffle (serialized records) -> parallel decode in groups of 8 (parse, choose T frames,
decode JPEG/PNG images, inflate the zlib masks) -> batch -> parallel per-batch
augmentation or resize of all B*T frames at once (XLA, `augment.py`) -> prefetch.
Importing this module turns on TensorFlow's BFC allocator for CPU tensors (see below)
unless TF_CPU_ALLOCATOR_USE_BFC is already set.
"""

import dataclasses
import json
import logging
import os
import threading

import jax
import ml_collections
import numpy as np
import tensorflow as tf
from tensorflow.python.lib.io import tf_record as _tf_record  # C++ CRC-checked reader

from data_pipelines import augment, features

tf.config.set_visible_devices([], "GPU")
# TensorFlow's BFC allocator for CPU tensors: it reuses memory, where the default
# allocator maps and page-faults every 77 MB batch afresh (2x the throughput of this
# pipeline on a 2-core machine). TF reads it when it makes its first CPU tensor, so it
# applies unless a TF op ran before this import; set it to "false" to opt out.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

logger = logging.getLogger(__name__)

_CYCLE_FILES = 16  # runs (files) read round-robin
_DECODE_GROUP = 8  # records decoded per small dataset (see "Content" above)
_READ_BUFFER = 1 << 20
_MASK_DELTA = 0xA282EAD8


def default_config() -> ml_collections.ConfigDict:
  """The `config.input` defaults (module table)."""
  return ml_collections.ConfigDict({
      "data_dir": "",
      "batch_size": 32,
      "frames": 1,
      "image_size": 224,
      "shuffle_buffer": 1024,
      "seed": 0,
      "augment": True,
      "augmentation": {**augment.DEFAULT_RANGES, "interpolation": "bilinear"},
      "position_map": False,
      "ground_truth": False,
      "detail": False,
      "repeat": True,
      "prefetch": 2,
  })


def _merge(defaults: dict, given: dict, path: str = "input") -> dict:
  out = dict(defaults)
  for key, value in given.items():
    if key not in defaults:
      raise ValueError(f"unknown config field {path}.{key}; known: {sorted(defaults)}")
    out[key] = _merge(defaults[key], value, f"{path}.{key}") if isinstance(defaults[key], dict) else value
  return out


def resolve_config(config: ml_collections.ConfigDict) -> dict:
  """`config.input` over `default_config()`, as a plain dict; rejects unknown fields."""
  given = config.input.to_dict() if hasattr(config.input, "to_dict") else dict(config.input)
  return _merge(default_config().to_dict(), given)


# --------------------------------------------------------------------------- CRC32C


def _crc32c_table() -> list[int]:
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    table.append(crc)
  return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
  """CRC-32C (Castagnoli), table-driven; for short strings such as record headers."""
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
  """TFRecord's masked CRC-32C: rotate right by 15, add 0xa282ead8 (mod 2^32)."""
  crc = crc32c(data)
  return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


# --------------------------------------------------------------------------- reader


class InputStats:
  """Counters of one pipeline, updated while it runs (thread-safe).

  Every count is of distinct records of this host's share of the data: a record met
  again in a later epoch is not counted again.

  Attributes:
    files_scanned: shard files checked so far (each once, when first read).
    sound_records: records whose framing and CRCs check out, in the files scanned.
    corrupt_records: records skipped for a framing or CRC failure.
    undecodable_records: sound records skipped because they could not be parsed or
      decoded, or disagree with the split's sizes.
    problems: "file#ordinal@offset: what" per skipped record, in the order met (the
      first 1000).
  """

  def __init__(self):
    self._lock = threading.Lock()
    self.files_scanned = 0
    self.sound_records = 0
    self.corrupt_records = 0
    self.undecodable_records = 0
    self.problems: list[str] = []
    self._seen: set = set()

  def _skip(self, counter: str, key, where: str, what: str):
    with self._lock:
      if key in self._seen:
        return
      self._seen.add(key)
      setattr(self, counter, getattr(self, counter) + 1)
      if len(self.problems) < 1000:
        self.problems.append(f"{where}: {what}")
      total = getattr(self, counter)
    logger.warning("input pipeline: skipped %s record %s (%d %s so far)", what, where, total, what)

  def add_scan(self, sound: int):
    with self._lock:
      self.files_scanned += 1
      self.sound_records += sound

  def add_corrupt(self, key, where: str):
    self._skip("corrupt_records", key, where, "corrupt")

  def add_undecodable(self, key, where: str):
    self._skip("undecodable_records", key, where, "undecodable")

  def summary(self) -> str:
    """One line: files and records checked, corrupt and undecodable records skipped."""
    return (f"input: {self.files_scanned} files, {self.sound_records} sound records; skipped "
            f"{self.corrupt_records} corrupt and {self.undecodable_records} undecodable records")


def _header_length(handle, offset: int, size: int) -> int | None:
  """The payload length of the record at `offset` if its header checks out and fits."""
  handle.seek(offset)
  header = handle.read(12)
  if len(header) < 12:
    return None
  length = int.from_bytes(header[:8], "little")
  if masked_crc32c(header[:8]) != int.from_bytes(header[8:], "little"):
    return None
  return length if offset + 16 + length <= size else None


def _resynchronise(reader, handle, start: int, size: int) -> int | None:
  """The first offset >= start where a whole record checks out, or None."""
  chunk = 1 << 22
  position = start
  while position + 16 <= size:
    handle.seek(position)
    data = np.frombuffer(handle.read(chunk + 15), np.uint8)
    count = len(data) - 15
    if count <= 0:
      return None
    # Candidate headers: a length below 2^32 that fits in the rest of the file.
    high = data[4:4 + count] | data[5:5 + count] | data[6:6 + count] | data[7:7 + count]
    low = (data[:count].astype(np.uint64) | data[1:1 + count].astype(np.uint64) << 8
           | data[2:2 + count].astype(np.uint64) << 16 | data[3:3 + count].astype(np.uint64) << 24)
    offsets = position + np.arange(count, dtype=np.uint64)
    fits = (high == 0) & (offsets + 16 + low <= size)
    for candidate in np.flatnonzero(fits):
      offset = position + int(candidate)
      if _header_length(handle, offset, size) is None:
        continue
      try:
        reader.read(offset)
      except (tf.errors.DataLossError, IndexError):
        continue
      return offset
    position += count
  return None


def read_records(path: str):
  """Yields (offset, payload bytes, or None for a corrupt record) for one TFRecord file.

  Framing: uint64 length, masked CRC32C of the length, payload, masked CRC32C of the
  payload. TensorFlow's C++ reader checks both CRCs; when a record fails, a sound
  header gives the next offset exactly, a broken one is resynchronised by scanning for
  the next offset where a whole record checks out.

  Args:
    path: a TFRecord file (uncompressed).
  Yields:
    (byte offset of the record, its payload or None when its framing or a CRC fails).
    Every sound record comes out once, in order; a corrupt stretch comes out as one None.
  """
  size = os.path.getsize(path)
  reader = _tf_record.tf_record_random_reader(path)
  try:
    with open(path, "rb") as handle:
      offset = 0
      while offset < size:
        try:
          record, end = reader.read(offset)
        except (tf.errors.DataLossError, IndexError):
          yield offset, None
          length = _header_length(handle, offset, size)
          offset = (offset + 16 + length if length is not None
                    else _resynchronise(reader, handle, offset + 1, size))
          if offset is None:
            return
          continue
        yield offset, record
        offset = end
  finally:
    reader.close()


def scan_file(path: str) -> list[tuple[int, bool]]:
  """(offset, sound) of every record position of a TFRecord file (`read_records`)."""
  return [(offset, record is not None) for offset, record in read_records(path)]


def _host_files(shards: list[str], process_index: int, process_count: int):
  """[(file position k, path)] of this host, and whether records are dealt instead."""
  if len(shards) >= process_count:
    return list(enumerate(shards))[process_index::process_count], False
  return list(enumerate(shards)), True


class _Reader:
  """Plans the reading of this host's files: runs of sound records, per epoch.

  A file is scanned (`scan_file`) when an epoch first reaches it; the result is kept,
  so later epochs do not read it twice. Each run of consecutive sound records is read
  natively by tf.data from its byte offset; corrupt records are never handed to it.
  """

  def __init__(self, files, *, shuffle: bool, seed: int, process_index: int,
               process_count: int, by_record: bool, stats: InputStats):
    self.files, self.shuffle, self.seed = files, shuffle, seed
    self.index, self.count, self.by_record = process_index, process_count, by_record
    self.stats = stats
    self.scans: dict[int, list[tuple[int, bool]]] = {}
    self._lock = threading.Lock()

  def owned(self, k: int, ordinal: int) -> bool:
    return not self.by_record or (k + ordinal) % self.count == self.index

  def scan(self, k: int, path: str) -> list[tuple[int, bool]]:
    with self._lock:
      if k not in self.scans:
        positions = scan_file(path)
        name = os.path.basename(path)
        for ordinal, (offset, sound) in enumerate(positions):
          if not sound and self.owned(k, ordinal):
            self.stats.add_corrupt((k, ordinal), f"{name}#{ordinal}@{offset}")
        self.stats.add_scan(sum(s for o, (_, s) in enumerate(positions) if self.owned(k, o)))
        self.scans[k] = positions
      return self.scans[k]

  def where(self, k: int, ordinal: int) -> str:
    path = dict(self.files)[k]
    offset = self.scans[k][ordinal][0] if k in self.scans else -1
    return f"{os.path.basename(path)}#{ordinal}@{offset}"

  def runs(self, epoch):
    """Yields (path, byte offset, count, file k, first ordinal, phase, stride) per run."""
    order = list(self.files)
    if self.shuffle:
      rng = np.random.default_rng([self.seed, self.index, int(epoch)])
      order = [order[i] for i in rng.permutation(len(order))]
    stride = self.count if self.by_record else 1
    planned = 0
    for k, path in order:
      positions = self.scan(k, path)
      ordinal = 0
      while ordinal < len(positions):
        if not positions[ordinal][1]:
          ordinal += 1
          continue
        first = ordinal
        while ordinal < len(positions) and positions[ordinal][1]:
          ordinal += 1
        phase = (self.index - k - first) % self.count if self.by_record else 0
        if phase < ordinal - first:
          planned += 1
          yield path.encode(), positions[first][0], ordinal - first, k, first, phase, stride
    if not planned:  # with repeat=True an empty epoch would spin forever
      raise ValueError(f"process {self.index}: no sound record in its files "
                       f"({self.stats.summary()})")


_RUN_SIGNATURE = (tf.TensorSpec([], tf.string),) + (tf.TensorSpec([], tf.int64),) * 6


def _run_records(path, offset, count, k, first, phase, stride):
  """A run of sound records read natively: (payload, file k, ordinal) elements."""
  # TFRecordDatasetV2 starts at a byte offset (tf.data.TFRecordDataset does not expose
  # it); TF 2.21 drops the offset when serialising the op, so it is only built here,
  # inside the interleave function, never at the top level of a pipeline.
  variant = tf.raw_ops.TFRecordDatasetV2(
      filenames=tf.reshape(path, [1]), compression_type="",
      buffer_size=tf.constant(_READ_BUFFER, tf.int64), byte_offsets=tf.reshape(offset, [1]))
  records = tf.data.experimental.from_variant(variant, tf.TensorSpec([], tf.string))
  records = records.take(count).skip(phase).shard(stride, 0)
  # A file changed since its scan is the only way to fail here: skip, do not crash.
  records = records.ignore_errors(log_warning=True)
  return records.enumerate().map(lambda j, r: (r, k, first + phase + j * stride))


# --------------------------------------------------------------------------- decoding


@dataclasses.dataclass(frozen=True)
class RecordSizes:
  """Sizes shared by the records of a split (`dataset_info.json` + the first record)."""
  num_frames: int
  image_size: int
  num_shape: int
  num_expression: int
  num_albedo: int
  num_vertices: int


def _peek_sizes(paths: list[str], split_info: dict) -> RecordSizes:
  for path in paths:
    for _, record in read_records(path):
      if record is None:
        continue
      try:
        parsed = features.parse_raw(tf.constant(record), ["shape", "expression", "albedo"])
      except tf.errors.OpError:
        continue
      return RecordSizes(num_frames=int(split_info.get("num_frames", parsed["num_frames"])),
                         image_size=int(split_info.get("image_size", parsed["image_size"])),
                         num_shape=int(parsed["shape"].shape[0]),
                         num_expression=int(parsed["expression"].shape[1]),
                         num_albedo=int(parsed["albedo"].shape[0]),
                         num_vertices=int(parsed["num_vertices"]))
  raise ValueError(f"no readable record in {paths}")


def _frames_spec(cfg: dict, sizes: RecordSizes) -> dict:
  """Static shapes/dtypes of one decoded record (before batching and augmentation)."""
  t, s = cfg["frames"], sizes.image_size
  spec = {"image": ([t, s, s, 3], tf.uint8), "mask": ([t, s, s], tf.uint8),
          "occlusion": ([t, s, s], tf.uint8),
          "landmarks": ([t, 68, 2], tf.float32), "identity": ([], tf.int32)}
  if cfg["position_map"]:
    spec["position_map"] = ([t, 256, 256, 3], tf.float32)
  if cfg["ground_truth"]:
    spec.update({"shape": ([sizes.num_shape], tf.float32),
                 "expression": ([t, sizes.num_expression], tf.float32),
                 "albedo": ([sizes.num_albedo], tf.float32),
                 "rotation": ([t, 3], tf.float32), "translation": ([t, 3], tf.float32),
                 "focal": ([t], tf.float32), "light": ([t, 9, 3], tf.float32)})
  if cfg["detail"]:
    spec["detail"] = ([sizes.num_vertices, 3], tf.float32)
  return spec


def _make_decoder(cfg: dict, sizes: RecordSizes, frame_seed: int):
  """The per-record decode: parse, choose T frames, decode them (raises on bad data)."""
  t, f, s = cfg["frames"], sizes.num_frames, sizes.image_size
  random_frames = cfg["augment"]  # a random choice (and order) of T of the F frames
  keys = ["identity", "image", *features.MASK_FEATURES, "landmarks"]
  if cfg["position_map"]:
    keys.append("position_map")
  if cfg["ground_truth"]:
    keys += ["shape", "expression", "albedo", "rotation", "translation", "focal", "light"]
  if cfg["detail"]:
    keys.append("detail")
  spec = _frames_spec(cfg, sizes)

  def decode(index, serialized):
    p = features.parse_raw(serialized, keys)
    checks = [tf.debugging.assert_equal(p["num_frames"], tf.constant(f, tf.int64)),
              tf.debugging.assert_equal(p["image_size"], tf.constant(s, tf.int64))]
    if random_frames:
      seed = tf.stack([tf.constant(frame_seed, tf.int64), index])
      chosen = tf.argsort(tf.random.stateless_uniform([f], seed))[:t]
    else:
      chosen = tf.range(t)

    def frames_of(key, decoder):
      encoded = tf.gather(p[key], chosen)
      return tf.stack([decoder(encoded[i]) for i in range(t)])

    # Masks stay apart until the batch: packing per record with TF ops costs more than
    # decoding (augment.pack_words packs whole batches under XLA). One zlib inflate per
    # frame for both (PNG pair in records of earlier versions, `features.decode_masks`).
    mask, occlusion = features.decode_masks(p, chosen)
    out = {"image": frames_of("image", features.decode_image),
           "mask": mask, "occlusion": occlusion,
           "landmarks": tf.gather(p["landmarks"], chosen),
           "identity": tf.cast(p["identity"], tf.int32)}
    if cfg["position_map"]:
      out["position_map"] = frames_of("position_map", features.decode_position_map)
    if cfg["ground_truth"]:
      out.update({k: p[k] for k in ("shape", "albedo")})
      out.update({k: tf.gather(p[k], chosen)
                  for k in ("expression", "rotation", "translation", "focal", "light")})
    if cfg["detail"]:
      out["detail"] = features.decode_detail(p["detail"])
    with tf.control_dependencies(checks):
      return {k: tf.ensure_shape(tf.identity(v), spec[k][0]) for k, v in out.items()}

  def no_records():  # a group of none: what a group whose every record failed yields
    return {k: tf.zeros([0] + shape, dtype) for k, (shape, dtype) in spec.items()}

  return decode, no_records


def _seed_int(*parts: int) -> int:
  return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint32)[0])


def _finish_batch(cfg: dict, augment_seed: int, batch_size: int):
  """The batch-level map: augment (or resize) all B*T frames in one vectorised call."""
  t, h = cfg["frames"], cfg["image_size"]

  def finish(index, batch):
    frames = {k: tf.reshape(batch[k], [batch_size * t] + batch[k].shape[2:].as_list())
              for k in ("image", "mask", "occlusion", "landmarks", "position_map") if k in batch}
    if cfg["augment"]:
      seed = tf.stack([tf.constant(augment_seed, tf.int64), index])
      ranges = dict(cfg["augmentation"])
      interpolation = ranges.pop("interpolation")
      moved = augment.augment_frames(frames, seed, output_size=h, ranges=ranges,
                                     interpolation=interpolation)
    else:
      moved = augment.resize_frames(frames, output_size=h)
    out = {"image": tf.reshape(moved["image"], [batch_size, t, h, h, 3]),
           "landmarks": tf.reshape(moved["landmarks"], [batch_size, t, 68, 2]),
           "mask": tf.reshape(moved["mask"], [batch_size, t, h, h]),
           "identity": batch["identity"]}
    if "position_map" in moved:
      out["position_map"] = tf.reshape(moved["position_map"], [batch_size, t, 256, 256, 3])
    for key in ("shape", "expression", "albedo", "rotation", "translation", "focal", "light",
                "detail"):
      if key in batch:
        out[key] = batch[key]
    return out

  return finish


# --------------------------------------------------------------------------- pipeline


@dataclasses.dataclass
class InputPipeline:
  """What `make_dataset` returns.

  Attributes:
    dataset: the `tf.data.Dataset` of batch dicts (module table).
    stats: live `InputStats` (files scanned, sound records, corrupt and undecodable
      records skipped).
    batch_size: the per-host batch size B.
    sizes: the record sizes of the split.
    files: this host's shard files.
  Iterating the pipeline yields the batches as dicts of numpy arrays.
  """
  dataset: tf.data.Dataset
  stats: InputStats
  batch_size: int
  sizes: RecordSizes
  files: list

  def __iter__(self):
    return self.dataset.as_numpy_iterator()


def load_info(data_dir: str) -> dict:
  """Reads `dataset_info.json` of a dataset folder."""
  path = os.path.join(data_dir, features.INFO_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: is {data_dir!r} a jaxface dataset folder?")
  with open(path, encoding="utf-8") as handle:
    return json.load(handle)


def make_dataset(config: ml_collections.ConfigDict, split: str, *, process_index: int | None = None,
                 process_count: int | None = None) -> InputPipeline:
  """The input pipeline of one host (module docstring).

  Args:
    config: a ConfigDict with an `input` section (module table; unset fields default).
    split: a split of `dataset_info.json`, e.g. "train".
    process_index: this host's index; default `jax.process_index()`.
    process_count: number of hosts; default `jax.process_count()`.
  Returns:
    An `InputPipeline`: `.dataset` (tf.data, batches as in the module table), `.stats`,
    `.batch_size` (per host), `.sizes`, `.files`; iterate it for numpy batches.
  Raises:
    ValueError: bad config (unknown field, batch not divisible by the hosts, more
      frames than stored), unknown split, or no readable record.
    FileNotFoundError: no dataset_info.json, or shard files it lists are missing.
  """
  cfg = resolve_config(config)
  process_index = jax.process_index() if process_index is None else int(process_index)
  process_count = jax.process_count() if process_count is None else int(process_count)
  if cfg["batch_size"] % process_count:
    raise ValueError(f"global batch size {cfg['batch_size']} is not divisible by "
                     f"{process_count} processes")
  batch_size = cfg["batch_size"] // process_count
  info = load_info(cfg["data_dir"])
  if split not in info.get("splits", {}):
    raise ValueError(f"split {split!r} not in {sorted(info.get('splits', {}))}")
  split_info = info["splits"][split]
  shards = [os.path.join(cfg["data_dir"], name) for name in split_info["shards"]]
  missing = [os.path.basename(path) for path in shards if not os.path.exists(path)]
  if missing:
    raise FileNotFoundError(f"{len(missing)} of the {len(shards)} shard files of split {split!r} "
                            f"are missing (an interrupted `jaxface synth`?): {', '.join(missing[:5])}")
  sizes = _peek_sizes(shards, split_info)
  if not 1 <= cfg["frames"] <= sizes.num_frames:
    raise ValueError(f"input.frames={cfg['frames']} but records hold {sizes.num_frames} frames")

  files, by_record = _host_files(shards, process_index, process_count)
  shuffle = cfg["shuffle_buffer"] > 1
  seed = cfg["seed"]
  stats = InputStats()
  reader = _Reader(files, shuffle=shuffle, seed=seed, process_index=process_index,
                   process_count=process_count, by_record=by_record, stats=stats)
  epochs = tf.data.Dataset.counter() if cfg["repeat"] else tf.data.Dataset.range(1)

  def epoch_records(epoch):  # one pass over this host's files, read round-robin
    runs = tf.data.Dataset.from_generator(reader.runs, output_signature=_RUN_SIGNATURE,
                                          args=(epoch,))
    return runs.interleave(_run_records, cycle_length=_CYCLE_FILES, block_length=1,
                           num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

  ds = epochs.flat_map(epoch_records)
  if shuffle:
    ds = ds.shuffle(cfg["shuffle_buffer"], seed=_seed_int(seed, process_index, 1),
                    reshuffle_each_iteration=True)
  decode, no_records = _make_decoder(cfg, sizes, _seed_int(seed, process_index, 2))

  def report(files, ordinals, decoded):
    seen = set(decoded.numpy().tolist())
    for j, (k, ordinal) in enumerate(zip(files.numpy().tolist(), ordinals.numpy().tolist())):
      if j not in seen:
        stats.add_undecodable((k, ordinal), reader.where(k, ordinal))
    return True

  def decode_group(indices, serialized, files, ordinals):
    # The group's records in their own dataset: a decode error drops just that record
    # (ignore_errors); the places that come out show which were dropped.
    size = tf.size(indices)
    decoded = tf.data.Dataset.from_tensor_slices((tf.range(size), indices, serialized)).map(
        lambda j, i, s: (j, decode(i, s))).ignore_errors().batch(_DECODE_GROUP)
    empty = tf.data.Dataset.from_tensors((tf.zeros([0], tf.int32), no_records()))

    def check(places, records):
      done = tf.cond(tf.size(places) < size,
                     lambda: tf.py_function(report, [files, ordinals, places], tf.bool),
                     lambda: tf.constant(True))
      with tf.control_dependencies([done]):
        records = {k: tf.identity(v) for k, v in records.items()}
      return tf.data.Dataset.from_tensor_slices(records)

    return decoded.concatenate(empty).take(1).flat_map(check)

  ds = ds.enumerate().batch(_DECODE_GROUP).interleave(
      lambda i, item: decode_group(i, *item), cycle_length=max(2, os.cpu_count() or 1),
      block_length=_DECODE_GROUP, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(batch_size, drop_remainder=True)
  ds = ds.enumerate().map(_finish_batch(cfg, _seed_int(seed, process_index, 3), batch_size),
                          num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.prefetch(tf.data.AUTOTUNE if cfg["prefetch"] < 0 else cfg["prefetch"])
  options = tf.data.Options()
  options.deterministic = True
  options.autotune.enabled = True
  ds = ds.with_options(options)
  return InputPipeline(dataset=ds, stats=stats, batch_size=batch_size, sizes=sizes,
                       files=[path for _, path in files])
