"""`prepare`: stored annotations equal direct detection; failures; resumption; refusals; CLI."""

import fcntl
import importlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import skimage.data
from PIL import Image

from jaxface import cli, preprocess
from jaxface.errors import JaxfaceError
from jaxface.preprocess import mask as mask_lib

# `jaxface.preprocess.prepare` is the function; the module is reached through importlib.
prepare_lib = importlib.import_module("jaxface.preprocess.prepare")

FACES = ["n000002/0001_01.jpg", "n000002/0002_01.JPG", "n000002/0003_01.jpg",
         "n000003/0001_01.png"]
FAILURES = {"n000003/0002_01.png": "no face found",  # flat grey
            "n000003/0003_01.jpg": "cannot open",  # JPEG header, then garbage
            "n000003/0004_01.png": "not an image file"}  # text


def _make_folder(root):
  """A VGGFace2-like folder: 4 astronaut faces (one with a second, smaller face), 3 failures."""
  head = Image.fromarray(skimage.data.astronaut()[0:250, 100:350])  # public domain
  (root / "n000002").mkdir(parents=True)
  (root / "n000003" / ".cache").mkdir(parents=True)
  head.save(root / "n000002/0001_01.jpg", quality=95)
  head.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((160, 160)).save(
      root / "n000002/0002_01.JPG")
  pair = Image.new("RGB", (400, 250), (90, 90, 90))
  pair.paste(head.resize((120, 120)), (10, 60))
  pair.paste(head, (150, 0))  # the larger face, on the right
  pair.save(root / "n000002/0003_01.jpg", quality=95)
  head.resize((200, 200)).rotate(8).save(root / "n000003/0001_01.png")
  Image.fromarray(np.full((80, 80, 3), 120, np.uint8)).save(root / "n000003/0002_01.png")
  (root / "n000003/0003_01.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"garbage" * 40)
  (root / "n000003/0004_01.png").write_text("not an image\n")
  (root / "n000003/notes.txt").write_text("not listed: other extension\n")
  (root / "n000003/.0005_01.jpg").write_bytes((root / "n000002/0001_01.jpg").read_bytes())
  shutil.copy(root / "n000002/0001_01.jpg", root / "n000003/.cache/0006_01.jpg")
  return root


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
  return _make_folder(tmp_path_factory.mktemp("raw") / "images")


@pytest.fixture(scope="module")
def full_run(image_dir, tmp_path_factory):
  """An uninterrupted run, chunks of 2: (out_dir, summary)."""
  out = tmp_path_factory.mktemp("full") / "prepared"
  return out, preprocess.prepare(image_dir, out, chunk_size=2, log=lambda _: None,
                                 progress=False)


class Calls(list):
  """The image paths `annotate_image` was called with; `stop_at`: interrupt after that many."""
  stop_at = None


@pytest.fixture
def counted(monkeypatch):
  """Counts (and can interrupt) `annotate_image` calls of in-process runs."""
  calls = Calls()
  real = prepare_lib.annotate_image

  def annotate(path, upsample=1):
    calls.append(path)
    if calls.stop_at is not None and len(calls) > calls.stop_at:
      raise KeyboardInterrupt
    return real(path, upsample)
  monkeypatch.setattr(prepare_lib, "annotate_image", annotate)
  return calls


def _chunks(out):
  return sorted(p.name for p in out.glob("chunk-*.npz"))


def test_listing_is_sorted_recursive_and_case_insensitive(image_dir):
  listed = prepare_lib.list_images(image_dir, (".jpg", ".jpeg", ".png"))
  assert listed == sorted(FACES + list(FAILURES))  # no .txt, no dot-names


def test_annotations_equal_direct_detection(image_dir, full_run):
  out, summary = full_run
  assert (summary.images, summary.faces, summary.failures) == (7, 4, 3)
  assert (summary.processed, summary.chunks_written, summary.chunks_skipped) == (7, 4, 0)
  annotations = preprocess.load_annotations(out)
  assert list(annotations) == FACES
  for name, ann in annotations.items():
    image = preprocess.load_image(image_dir / name)
    box = preprocess.detect_faces(image)[0]
    landmarks = preprocess.landmarks_68(image, box)
    np.testing.assert_array_equal(ann.landmarks, landmarks)
    np.testing.assert_allclose(ann.box, [box.left, box.top, box.right, box.bottom], rtol=1e-6)
    assert (ann.score, ann.detector) == (box.score, box.detector)
    assert (ann.height, ann.width) == image.shape[:2]
    np.testing.assert_allclose(ann.polygon, preprocess.face_polygon(landmarks), atol=1e-4)
    assert ann.landmarks.dtype == ann.polygon.dtype == ann.box.dtype == np.float32
  # two faces in 0003_01: the larger one (~90 px, on the right) is kept, not the 43 px one
  pair = annotations["n000002/0003_01.jpg"]
  assert pair.box[2] - pair.box[0] > 80 and pair.box[0] > 150
  assert len(preprocess.detect_faces(preprocess.load_image(image_dir / "n000002/0003_01.jpg"))) == 2


def test_mask_is_the_polygon_rasterised(full_run):
  for ann in preprocess.load_annotations(full_run[0]).values():
    face = ann.mask()
    assert face.shape == (ann.height, ann.width) and face.dtype == bool
    np.testing.assert_array_equal(face, mask_lib.polygon_mask(ann.polygon, ann.height,
                                                              ann.width) == 1)
    direct = preprocess.face_mask(ann.landmarks, (ann.height, ann.width)) == 1
    assert np.mean(face == direct) > 0.999
    inner = np.floor(ann.landmarks[27:]).astype(int)  # nose, eyes, mouth
    assert face[inner[:, 1], inner[:, 0]].all() and 0.05 < face.mean() < 0.5


def test_failures_are_recorded_with_reasons(full_run):
  out, _ = full_run
  failures = preprocess.load_failures(out)
  assert sorted(failures) == sorted(FAILURES)
  for name, reason in failures.items():
    assert FAILURES[name] in reason and "\n" not in reason
  with np.load(out / "chunk-000003.npz", allow_pickle=False) as chunk:  # n000003/0004_01.png
    assert chunk["paths"].tolist() == ["n000003/0004_01.png"]
    assert not chunk["ok"][0] and chunk["sizes"].tolist() == [[0, 0]]
  with np.load(out / "chunk-000002.npz", allow_pickle=False) as chunk:
    assert chunk["ok"].tolist() == [False, False]
    assert chunk["sizes"].tolist() == [[80, 80], [0, 0]]  # readable, no face / unreadable
    assert chunk["landmarks"].shape == (2, 68, 2) and chunk["polygons"].shape == (2, 27, 2)


def test_interrupted_run_resumes_with_only_the_missing_chunks(image_dir, full_run, tmp_path,
                                                              counted):
  out = tmp_path / "prepared"
  counted.stop_at = 3  # dies on the 4th image: chunk 0 is written, chunk 1 half-done
  with pytest.raises(KeyboardInterrupt):
    preprocess.prepare(image_dir, out, chunk_size=2, log=lambda _: None, progress=False)
  assert _chunks(out) == ["chunk-000000.npz"]
  first_written = (out / "chunk-000000.npz").stat().st_mtime_ns
  counted.clear()
  counted.stop_at = None
  summary = preprocess.prepare(image_dir, out, chunk_size=2, log=lambda _: None,
                               progress=False)
  assert [os.path.relpath(p, image_dir) for p in counted] == sorted(FACES + list(FAILURES))[2:]
  assert (summary.chunks_skipped, summary.chunks_written, summary.processed) == (1, 3, 5)
  assert (summary.faces, summary.failures) == (4, 3)  # the skipped chunk's faces count too
  assert (out / "chunk-000000.npz").stat().st_mtime_ns == first_written
  assert preprocess.load_annotations(out) == preprocess.load_annotations(full_run[0])
  assert preprocess.load_failures(out) == preprocess.load_failures(full_run[0])


def test_rerun_on_a_finished_folder_does_nothing(image_dir, full_run, counted):
  out, _ = full_run
  times = {name: (out / name).stat().st_mtime_ns for name in _chunks(out)}
  lines = []
  summary = preprocess.prepare(image_dir, out, chunk_size=2, log=lines.append)
  assert counted == [] and summary.processed == 0 and summary.chunks_skipped == 4
  assert (summary.faces, summary.failures) == (4, 3)
  assert {name: (out / name).stat().st_mtime_ns for name in _chunks(out)} == times
  assert lines == [f"prepare: 7 images in 4 chunks of 2 from {image_dir}; 4 chunks already done"]


def test_a_killed_process_resumes(image_dir, full_run, tmp_path, counted):
  out = tmp_path / "prepared"
  script = textwrap.dedent(f"""
      import importlib, time
      lib = importlib.import_module("jaxface.preprocess.prepare")
      real = lib.annotate_image
      lib.annotate_image = lambda *a: (time.sleep(0.3), real(*a))[1]
      lib.prepare({str(image_dir)!r}, {str(out)!r}, chunk_size=1, progress=False)
  """)
  process = subprocess.Popen([sys.executable, "-c", script])
  try:
    deadline = time.monotonic() + 30
    while not (out / "chunk-000000.npz").exists():
      assert process.poll() is None and time.monotonic() < deadline
      time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
  finally:
    process.kill()
    process.wait()
  done = len(_chunks(out))
  assert 1 <= done < 7
  (out / ".chunk-000006.npz.k1ll3d.tmp").write_bytes(b"PK\x03\x04")  # killed mid-write
  summary = preprocess.prepare(image_dir, out, chunk_size=1, log=lambda _: None,
                               progress=False)
  assert len(counted) == summary.processed == 7 - done and summary.chunks_skipped == done
  assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))
  assert preprocess.load_annotations(out) == preprocess.load_annotations(full_run[0])


def test_workers_give_the_same_chunks(image_dir, full_run, tmp_path):
  out = tmp_path / "prepared"
  preprocess.prepare(image_dir, out, chunk_size=2, workers=2, log=lambda _: None,
                     progress=False)
  for name in _chunks(full_run[0]):
    with np.load(out / name) as ours, np.load(full_run[0] / name) as reference:
      assert ours.files == reference.files
      for key in ours.files:
        np.testing.assert_array_equal(ours[key], reference[key])


def test_another_folder_listing_chunk_size_or_settings_is_refused(image_dir, full_run, tmp_path,
                                                                  counted):
  out, _ = full_run
  def run(folder, **kwargs):
    options = {"chunk_size": 2, "log": lambda _: None, "progress": False} | kwargs
    with pytest.raises(JaxfaceError) as error:
      preprocess.prepare(folder, out, **options)
    assert "\n" not in str(error.value) and str(out) in str(error.value)
    return str(error.value)
  assert "chunk size 2, not 3" in run(image_dir, chunk_size=3)
  assert "upsample" in run(image_dir, upsample=0)
  assert "another listing" in run(image_dir, extensions=(".jpg",))
  other = shutil.copytree(image_dir, tmp_path / "elsewhere")
  assert f"holds annotations of {image_dir}, not {other}" in run(other)
  shutil.copy(image_dir / FACES[0], image_dir / "n000003/0009_01.jpg")
  try:
    assert "7 images then, 8 now" in run(image_dir)
  finally:
    os.unlink(image_dir / "n000003/0009_01.jpg")
  with open(out / ".lock", "w", encoding="utf-8") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    assert "another `jaxface prepare` is writing here" in run(image_dir)
  assert counted == []


def test_missing_chunk_and_missing_manifest_are_one_line_errors(full_run, tmp_path):
  out = shutil.copytree(full_run[0], tmp_path / "copy")
  os.unlink(out / "chunk-000001.npz")
  with pytest.raises(JaxfaceError, match=r"chunk-000001.npz: missing \(4 chunks expected\)"):
    preprocess.load_annotations(out)
  with pytest.raises(JaxfaceError, match="no manifest.json"):
    preprocess.load_annotations(tmp_path)


def test_cli_prepares_and_reports(image_dir, tmp_path, capsys):
  out = tmp_path / "prepared"
  assert cli.main(["prepare", str(image_dir), "--out", str(out), "--chunk-size", "3"]) == 0
  captured = capsys.readouterr()
  assert captured.out.startswith("jaxface: prepare: 7 images, 4 faces, 3 failures (7 processed")
  assert captured.out.count("\n") == 1
  assert "prepare: 7/7 images" in captured.err and "3 failures" in captured.err  # progress
  assert _chunks(out) == ["chunk-000000.npz", "chunk-000001.npz", "chunk-000002.npz"]
  assert oct((out / "chunk-000000.npz").stat().st_mode & 0o644) == oct(0o644 & ~_umask())


def _umask():
  umask = os.umask(0)
  os.umask(umask)
  return umask


@pytest.mark.parametrize("make", [lambda p: None, lambda p: p.mkdir(),
                                  lambda p: (p.mkdir(), (p / "a.txt").write_text("x"))])
def test_cli_missing_or_empty_folder_exits_2(tmp_path, capsys, make):
  folder = tmp_path / "raw"
  make(folder)
  assert cli.main(["prepare", str(folder), "--out", str(tmp_path / "out")]) == 2
  err = capsys.readouterr().err
  assert err.startswith(f"jaxface: error: {folder}: no ") and err.count("\n") == 1


def test_a_damaged_chunk_is_prepared_again(image_dir, full_run, tmp_path, counted):
  out = shutil.copytree(full_run[0], tmp_path / "copy")
  (out / "chunk-000001.npz").write_bytes(b"PK\x03\x04 cut short")
  lines = []
  summary = preprocess.prepare(image_dir, out, chunk_size=2, log=lines.append, progress=False)
  assert [os.path.relpath(p, image_dir) for p in counted] == FACES[2:4]
  assert summary.chunks_written == 1 and "chunk-000001.npz: unreadable" in lines[0]
  assert preprocess.load_annotations(out) == preprocess.load_annotations(full_run[0])


def test_cli_output_folder_that_is_a_file_exits_2(image_dir, tmp_path, capsys):
  (tmp_path / "out").write_text("")
  assert cli.main(["prepare", str(image_dir), "--out", str(tmp_path / "out")]) == 2
  assert "out: cannot create the output folder" in capsys.readouterr().err


def test_a_damaged_chunk_is_a_one_line_error_when_loading(full_run, tmp_path):
  out = shutil.copytree(full_run[0], tmp_path / "copy")
  (out / "chunk-000002.npz").write_bytes(b"not a zip")
  with pytest.raises(JaxfaceError, match=r"chunk-000002.npz: unreadable .*rerun"):
    preprocess.load_failures(out)
