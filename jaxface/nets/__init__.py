"""Flax linen modules: backbones, encoders, discriminator, PRNet and the identity net.

Never imports `render` or `losses`.
"""

from jaxface.nets.identity import (CHIP_SIZE, EMBEDDING_DIM, RECOGNITION_NETS, DlibResNet,
                                   RecognitionNet, chip_transform, embed, face_chip,
                                   load_dlib_params)
