"""Optimisation-based fitting (analysis by synthesis), single and multi-frame."""

from jaxface.fit.fitting import (FitConfig, FitResult, FitTargets, camera_for,
                                 detector_landmarks, fit, fit_loss, fit_step, init_params,
                                 posed_vertices, projected_landmarks)
