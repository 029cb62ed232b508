"""tf.data and TFDS input pipelines. Uses `jaxface`; `jaxface` never imports this package.

Added with the data issue; empty until then.
"""
