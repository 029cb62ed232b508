"""Face preprocessing in numpy + dlib: image loading, detection, 68 landmarks, aligned
crops and face masks. Pixel coordinates everywhere: x right, y down, pixel (row i,
column j) centred at (j + 0.5, i + 0.5), as in `jaxface.render.camera`.
"""

from jaxface.preprocess.align import (Crop, align_crop, alignment_transform, apply_transform,
                                      detect_and_align, invert_transform, warp_crop)
from jaxface.preprocess.detect import FaceBox, FaceNotFoundError, detect_faces, landmarks_68
from jaxface.preprocess.image_io import ImageError, load_image
from jaxface.preprocess.mask import face_mask, face_polygon
from jaxface.preprocess.prepare import (FaceAnnotation, PrepareSummary, iter_annotations,
                                        load_annotations, load_failures, prepare)
