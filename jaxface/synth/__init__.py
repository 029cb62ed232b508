"""Synthetic faces with exact ground truth (the data issue's generator; numpy + jaxface.render).

`jaxface synth` writes them as TFRecord shards through `data_pipelines.synthetic`.
"""

from jaxface.synth.generate import (Generator, finish_identity, generate_identities,
                                    generate_identity, make_generator, neutral_vertices,
                                    position_maps, render_frames, start_identity)
from jaxface.synth.scene import CAMERA_DISTANCE_MM, FOCAL_AT_224, SynthConfig
