"""The builder table: every entry is a documented manual-download TFDS builder."""

import tensorflow_datasets as tfds

from data_pipelines import builders


def test_every_builder_documents_its_manual_download():
  assert sorted(builders.BUILDERS) == ["300w_lp", "aflw2000_3d", "micc", "now", "vggface2",
                                       "voxceleb2"]
  names = set()
  for cls in builders.BUILDERS.values():
    assert issubclass(cls, tfds.core.GeneratorBasedBuilder)
    assert cls.name.startswith("jaxface_") and cls.name not in names
    names.add(cls.name)
    assert "<manual_dir>/" in cls.MANUAL_DOWNLOAD_INSTRUCTIONS
    assert str(cls.VERSION) == "1.0.0"
