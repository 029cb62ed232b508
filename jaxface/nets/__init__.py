"""Flax linen modules: backbones, encoders, discriminator, PRNet and the identity net.

Never imports `render` or `losses`.
"""

from jaxface.nets.identity import (CHIP_SIZE, EMBEDDING_DIM, RECOGNITION_NETS, DlibResNet,
                                   RecognitionNet, chip_transform, embed, face_chip,
                                   load_dlib_params)
from jaxface.nets.resnet import (BACKBONES, ResNet, make_norm, resnet18, resnet50,
                                 tiny_resnet)
from jaxface.nets.attention import RGA, RGAChannel, RGASpatial, relation_embed
from jaxface.nets.gan3dmm import CoefficientDiscriminator, Gan3dmmGenerator
from jaxface.nets.mlfl_ga import (LANDMARK_VECTOR_SIZE, PRIOR_CHANNELS, MLFLGAEncoder,
                                  RunningWhitening, landmark_heatmaps, landmark_map,
                                  landmark_vector, prior_input, tiny_mlfl_ga)
