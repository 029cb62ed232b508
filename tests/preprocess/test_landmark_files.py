"""User-supplied 68-landmark files (.pts, .txt) and `jaxface reconstruct --landmarks`."""

import numpy as np
import pytest

from jaxface import cli
from jaxface.errors import JaxfaceError
from jaxface.preprocess import landmark_files


def _points():
  return np.stack([np.arange(68) * 1.5 + 10, np.arange(68) * 0.5 + 20], -1)


def test_pts_is_read_with_300w_pixel_centres(tmp_path):
  path = tmp_path / "a.pts"
  body = "\n".join(f"{x:.3f} {y:.3f}" for x, y in _points())
  path.write_text(f"version: 1\nn_points:  68\n{{\n{body}\n}}\n")
  np.testing.assert_allclose(landmark_files.read_landmarks(path), _points() - 0.5)


def test_txt_is_read_as_is(tmp_path):
  path = tmp_path / "a.txt"
  np.savetxt(path, _points())
  np.testing.assert_allclose(landmark_files.read_landmarks(path), _points())


@pytest.mark.parametrize("name, text, message", [
    ("short.txt", "1 2\n3 4\n", "expected 68 points .136 numbers., got 4"),
    ("words.txt", "one two\n" * 68, "landmark coordinates must be numbers"),
    ("nan.txt", "nan 1\n" * 68, "landmark coordinates must be finite"),
    ("noblock.pts", "version: 1\nn_points: 68\n", "not an iBUG .pts file"),
    ("five.pts", "version: 1\nn_points: 5\n{\n1 2\n}\n", "n_points must be 68, got 5"),
    ("a.csv", "1,2", "landmark files are .pts or .txt"),
])
def test_bad_files_name_the_file_and_the_problem(tmp_path, name, text, message):
  path = tmp_path / name
  path.write_text(text)
  with pytest.raises(JaxfaceError, match=f"^{path}: {message}"):
    landmark_files.read_landmarks(path)


def test_files_are_matched_by_image_stem(tmp_path):
  np.savetxt(tmp_path / "face.txt", _points())
  found = landmark_files.find_landmark_files(["photos/face.jpg", "photos/other.jpg"], tmp_path)
  assert list(found) == ["photos/face.jpg"]
  with pytest.raises(JaxfaceError, match="no such folder"):
    landmark_files.find_landmark_files(["face.jpg"], tmp_path / "missing")


def test_cli_reports_a_bad_landmark_file_in_one_line(tmp_path, capsys):
  (tmp_path / "face.txt").write_text("1 2 3")
  status = cli.main(["reconstruct", str(tmp_path / "face.png"), "--out", str(tmp_path / "out"),
                     "--landmarks", str(tmp_path)])
  err = capsys.readouterr().err.strip().splitlines()
  assert status != 0
  assert err[-1] == f"jaxface: error: {tmp_path / 'face.txt'}: expected 68 points (136 numbers), got 3 numbers"
