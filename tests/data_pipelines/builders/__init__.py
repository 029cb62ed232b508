"""Tests of the TFDS builders, each on a tiny fake manual download in the real layout."""
