"""User-facing errors: one line, naming the file and what is wrong.

The CLI catches `JaxfaceError` and prints its message without a traceback; anything
else is a bug and keeps its traceback.
"""


class JaxfaceError(Exception):
  """A user mistake or a missing resource, reported as one clear line."""


class AssetError(JaxfaceError):
  """A required asset (model file, wheel, dlib weights) is missing or corrupt."""


class ModelFormatError(JaxfaceError):
  """A model file is missing, truncated or not in the expected format."""
