"""Pure loss functions: per-example values, explicit shape checks, keyword-only options."""

from jaxface.losses.identity import identity_loss
from jaxface.losses.landmarks import eye_closure_loss, landmark_loss
from jaxface.losses.photometric import masked_photometric_loss
from jaxface.losses.regularization import coefficient_prior
