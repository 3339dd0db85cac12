"""Uploaded bytes -> ``uint8 (H, W, 3)`` RGB, refusing what must not be decoded.

Shape glossary: ``H, W`` the image's height and width after EXIF orientation.

The order matters for safety: the header is read first (``Image.open`` parses only the
header), the declared pixel count is checked against ``max_pixels``, and only then are the
pixels decoded.  A decompression bomb -- a few hundred bytes of PNG declaring
100 000 x 100 000 pixels -- is refused before any pixel buffer is allocated.  PIL's own
``MAX_IMAGE_PIXELS`` guard stays in force behind ours (it is never changed here: it is
process-global).

Only the formats a browser or a camera produces are opened (``FORMATS``), which keeps PIL's
rarer decoders out of reach of uploads.  EXIF orientation and the colour rules are those of
``frcnn_lib.datasets.imageio`` (alpha over white, 16-bit scaled, palette expanded).
"""
import io
import re
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from frcnn_lib.datasets.imageio import to_rgb_uint8
from frcnn_lib.runtime.errors import FrcnnError

FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF")
# Leading bytes of those formats: a file that starts like one but cannot be opened is a
# truncated or corrupt image (400), not some other kind of file (415).
MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00",
         b"MM\x00*")


class BadImage(FrcnnError):
    """An upload that is not a usable image; ``status`` is the HTTP status to answer with."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


def decode_image(data, name="upload", max_pixels=25_000_000) -> np.ndarray:
    """Decode the bytes of one image file.

    Args:
      data: the file's bytes.
      name: how error messages call it (the upload's file name).
      max_pixels: largest ``H * W`` accepted, checked on the header before decoding.

    Returns:
      ``uint8 (H, W, 3)`` RGB, EXIF orientation applied.

    Raises:
      BadImage: status 400 (empty, truncated or corrupt), 415 (not an image in one of
        ``FORMATS``) or 413 (more than ``max_pixels`` pixels).
    """
    if not data:
        raise BadImage(f"{name}: empty file; expected an image ({', '.join(FORMATS)})")
    try:
        with warnings.catch_warnings():
            # PIL warns above MAX_IMAGE_PIXELS and raises above twice that: refuse both.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as image:
                width, height = image.size           # header only: nothing decoded yet
                if width * height > max_pixels:
                    raise _too_large(name, width * height, max_pixels, f"{width} x {height} = ")
                if width < 1 or height < 1:
                    raise BadImage(f"{name}: declares {width} x {height} pixels; expected at least 1 x 1")
                image.load()                         # truncated data raises here
                image = ImageOps.exif_transpose(image)
                return to_rgb_uint8(image)
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        # PIL's guard fired inside Image.open (above 2 x MAX_IMAGE_PIXELS), header read only.
        found = re.search(r"\((\d+) pixels\)", str(err))
        raise _too_large(name, int(found.group(1)) if found else None, max_pixels) from None
    except UnidentifiedImageError:
        if data.startswith(MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
            raise BadImage(f"{name}: truncated or corrupt image (its header cannot be "
                           f"read)") from None
        raise BadImage(f"{name}: not an image file in a supported format "
                       f"({', '.join(FORMATS)})", status=415) from None
    except MemoryError:
        raise BadImage(f"{name}: not enough memory to decode this image", status=413) from None
    except Exception as err:  # noqa: BLE001 -- PIL reports corrupt data through many types
        raise BadImage(f"{name}: truncated or corrupt image ({type(err).__name__}: "
                       f"{str(err).splitlines()[0] if str(err) else 'no detail'})") from None


def _too_large(name, pixels, max_pixels, dims=""):
    declared = f"declares {dims}{pixels} pixels" if pixels else "declares too many pixels"
    return BadImage(f"{name}: {declared}, more than the limit of {max_pixels / 1e6:g} megapixels "
                    f"(frcnn serve --max-megapixels); nothing was decoded", status=413)
