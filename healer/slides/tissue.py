"""Where the tissue is, on a low-resolution RGB image of the slide.

H&E-stained tissue is coloured; glass, background and most dust are grey or white. So the
mask is the saturation channel above its Otsu threshold, with two guards: a floor, so a slide
with no tissue at all (where Otsu splits noise) gives an empty mask, and the removal of specks
and pinholes smaller than a fraction of the image.
"""

import numpy as np
from skimage.filters import threshold_otsu
from skimage.morphology import remove_small_holes, remove_small_objects

MIN_SATURATION = 0.08  # below this nothing is stained, whatever Otsu says
SPECK_FRACTION = 0.0005  # components (and holes) smaller than this share of the image go


def tissue_mask(rgb: np.ndarray) -> np.ndarray:
    """Boolean mask, True on tissue, for an (h, w, 3) uint8 image."""
    saturation = _saturation(rgb)
    if float(saturation.max(initial=0)) < MIN_SATURATION:
        return np.zeros(saturation.shape, dtype=bool)
    threshold = max(float(threshold_otsu(saturation)), MIN_SATURATION)
    mask = saturation > threshold
    speck = max(16, int(SPECK_FRACTION * mask.size))
    mask = remove_small_objects(mask, max_size=speck)
    return remove_small_holes(mask, max_size=speck)


def _saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation, (max - min) / max, as skimage's rgb2hsv gives it, in float32 and without
    the full HSV image: on a 2,048 px thumbnail that is ~40 MiB instead of ~300 MiB."""
    high = rgb.max(axis=2).astype(np.float32)
    low = rgb.min(axis=2).astype(np.float32)
    return np.divide(high - low, high, out=np.zeros_like(high), where=high > 0)
