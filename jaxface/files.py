"""Atomic file writing: write a temporary file beside the target, then rename it.

One home for the pattern every cache and export uses, so a crash or a full disk
never leaves a half-written file under the final name.
"""

import contextlib
import json
import os
import pathlib
import tempfile

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
  """Yields a temporary path in the target's folder; renames it onto `path` on success."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
  os.close(fd)
  # mkstemp creates owner-only files; give the result the permissions open() would.
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(tmp, 0o666 & ~umask)
  try:
    yield pathlib.Path(tmp)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)


def save_npz(path: str | os.PathLike, **arrays) -> None:
  """`np.savez` to `path`, atomically."""
  with atomic_path(path) as tmp, open(tmp, "wb") as f:
    np.savez(f, **arrays)


def write_json(path: str | os.PathLike, value) -> None:
  """JSON (indented, UTF-8) to `path`, atomically."""
  with atomic_path(path) as tmp:
    tmp.write_text(json.dumps(value, indent=1) + "\n", encoding="utf-8")
