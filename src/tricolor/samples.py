"""Real photos that need no download: scikit-image's bundled ones (its package data), encoded.

For the tests, the GPU checks and anyone who wants a quick image; scikit-image is a dev
dependency, imported only when photos are asked for.
"""

from __future__ import annotations

import functools
import io

SAMPLE_PHOTOS = ("chelsea", "astronaut", "coffee", "rocket", "hubble_deep_field")


@functools.cache  # callers only read it; decoding and encoding take most of a second
def sample_photos(image_format: str = "PNG") -> dict[str, bytes]:
    """{"chelsea.png": bytes, ...}: each photo encoded losslessly (PNG) or as `image_format`."""
    from PIL import Image  # noqa: PLC0415
    from skimage import data  # noqa: PLC0415 (slow import, only where photos are needed)

    photos = {}
    for name in SAMPLE_PHOTOS:
        buffer = io.BytesIO()
        Image.fromarray(getattr(data, name)()).save(buffer, format=image_format)
        photos[f"{name}.{image_format.lower()}"] = buffer.getvalue()
    return photos
