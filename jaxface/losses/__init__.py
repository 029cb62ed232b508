"""Pure loss functions: per-example values, explicit shape checks, keyword-only options."""

from jaxface.losses.gan import discriminator_loss, generator_loss
from jaxface.losses.identity import identity_loss
from jaxface.losses.landmarks import eye_closure_loss, landmark_loss
from jaxface.losses.mask import mask_consistency_loss
from jaxface.losses.photometric import masked_photometric_loss
from jaxface.losses.regularization import coefficient_prior
from jaxface.losses.skin import skin_loss
from jaxface.losses.ssim import ssim_loss
