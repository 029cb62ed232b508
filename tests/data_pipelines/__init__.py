"""Tests of the tf.data / TFDS input pipelines (data_pipelines/)."""
