"""Mesh and landmark readers: the formats in the wild, and one-line errors naming the file."""

import numpy as np
import pytest

from jaxface.errors import JaxfaceError
from jaxface.eval import mesh_files
from jaxface.export import write_obj
from tests.eval import faces


def test_obj_with_uvs_normals_colours_quads_and_negative_indices(tmp_path):
  path = tmp_path / "scan.obj"
  path.write_text("# a scan\nmtllib scan.mtl\n"
                  "v 0 0 0 0.5 0.5 0.5\nv 1 0 0 0.5 0.5 0.5\nv 1 1 0\nv 0 1 0\n"
                  "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nvn 0 0 1\n"
                  "usemtl skin\nf 1/1/1 2/2/1 3/3/1 4/4/1\nf -4//1 -2//1 -1//1\n")
  vertices, triangles = mesh_files.read_mesh(path)
  np.testing.assert_array_equal(vertices[2], [1, 1, 0])
  np.testing.assert_array_equal(triangles, [[0, 1, 2], [0, 2, 3], [0, 2, 3]])


def test_obj_written_by_jaxface_round_trips(tmp_path):
  vertices, triangles = faces.face_mesh(step=20.0)
  uv = np.zeros((len(vertices), 2))
  write_obj(tmp_path / "x_neutral.obj", vertices, triangles, uv=uv, texture_png="x.png")
  read_v, read_t = mesh_files.read_mesh(tmp_path / "x_neutral.obj")
  np.testing.assert_allclose(read_v, vertices, atol=1e-5)
  np.testing.assert_array_equal(read_t, triangles)


def test_ply_binary(tmp_path):
  import trimesh  # pylint: disable=import-outside-toplevel
  vertices, triangles = faces.face_mesh(step=20.0)
  trimesh.Trimesh(vertices, triangles, process=False).export(tmp_path / "m.ply")
  read_v, read_t = mesh_files.read_mesh(tmp_path / "m.ply")
  np.testing.assert_allclose(read_v, vertices, atol=1e-5)
  np.testing.assert_array_equal(read_t, triangles)


@pytest.mark.parametrize("text, message", [
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n", r"bad.obj:4: face index out of range"),
    ("v 0 0 0\nv 1 zero 0\nv 0 1 0\nf 1 2 3\n", r"bad.obj:2: bad vertex line"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2\n", r"bad.obj:4: a face needs 3"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\n", r"bad.obj: the mesh has no faces"),
    ("\x89PNG\r\n\x1a\n binary", r"bad.obj: not an OBJ mesh"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 a 3\n", r"bad.obj:4: bad face line"),
])
def test_malformed_obj_names_file_and_line(tmp_path, text, message):
  path = tmp_path / "bad.obj"
  path.write_text(text)
  with pytest.raises(JaxfaceError, match=message) as info:
    mesh_files.read_mesh(path)
  assert "\n" not in str(info.value)


def test_malformed_ply_and_unknown_suffix(tmp_path):
  (tmp_path / "bad.ply").write_bytes(b"ply\nformat nonsense\n")
  with pytest.raises(JaxfaceError, match="bad.ply: not a readable PLY mesh"):
    mesh_files.read_mesh(tmp_path / "bad.ply")
  with pytest.raises(JaxfaceError, match="m.stl: unknown mesh format"):
    mesh_files.read_mesh(tmp_path / "m.stl")
  with pytest.raises(JaxfaceError, match="none.obj: no such file"):
    mesh_files.read_mesh(tmp_path / "none.obj")


def test_picked_points_like_the_now_scans(tmp_path):
  points = faces.landmarks7()
  faces.write_pp(tmp_path / "lmk.pp", points)
  np.testing.assert_allclose(mesh_files.read_landmarks(tmp_path / "lmk.pp", counts=(7,)), points,
                             atol=1e-6)
  (tmp_path / "bad.pp").write_text("<PickedPoints><point x='1' y='2'/></PickedPoints>")
  with pytest.raises(JaxfaceError, match="bad.pp: a <point> lacks numeric x, y, z"):
    mesh_files.read_pp(tmp_path / "bad.pp")
  (tmp_path / "cut.pp").write_text("<PickedPoints><point x='1'")
  with pytest.raises(JaxfaceError, match="cut.pp: not a PickedPoints XML file"):
    mesh_files.read_pp(tmp_path / "cut.pp")


def test_text_and_npy_landmarks(tmp_path):
  lmk68 = faces.landmarks68()
  faces.write_points(tmp_path / "a_lmk68.txt", lmk68)
  np.testing.assert_allclose(mesh_files.read_now_landmarks(tmp_path / "a_lmk68.txt"),
                             lmk68[list(mesh_files.NOW_LANDMARKS_FROM_68)], atol=1e-6)
  np.save(tmp_path / "b.npy", lmk68[None, :7].astype(np.float32))  # [1, 7, 3] as some methods save
  np.testing.assert_allclose(mesh_files.read_now_landmarks(tmp_path / "b.npy"), lmk68[:7],
                             atol=1e-5)
  (tmp_path / "c.txt").write_text("1,2\n3,4\n")
  with pytest.raises(JaxfaceError, match=r"c.txt: expected 7x3 or 68x3 landmarks, got 2x2"):
    mesh_files.read_now_landmarks(tmp_path / "c.txt")
  (tmp_path / "d.txt").write_text("1 2 3\n4 5\n")
  with pytest.raises(JaxfaceError, match=r"d.txt:2: 2 numbers where line 1 has 3"):
    mesh_files.read_points(tmp_path / "d.txt")
  np.save(tmp_path / "e.npy", np.array([{"a": 1}], dtype=object))
  with pytest.raises(JaxfaceError, match="e.npy: not a numeric .npy array"):
    mesh_files.read_points(tmp_path / "e.npy")
