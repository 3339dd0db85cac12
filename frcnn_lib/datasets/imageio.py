"""Reading image files into ``uint8 (H, W, 3)`` RGB arrays with PIL.

Shape glossary: ``H, W`` image height and width in pixels (after EXIF orientation).

What :func:`read_image` guarantees:

- EXIF orientation is applied (``ImageOps.exif_transpose``), so the array is the image as
  a viewer shows it and as annotators drew on it.
- Every PIL mode becomes 8-bit RGB: grayscale and palette are expanded; images with an
  alpha channel (RGBA, LA, palette with transparency) are composited over white;
  16-bit images are scaled by ``255 / 65535`` (not clipped).
- Size: PIL's own decompression-bomb limit stays in force (``PIL.Image.MAX_IMAGE_PIXELS``,
  about 89 megapixels by default, so 8000x6000 photos read fine).  A larger image raises
  FrcnnError; raise ``PIL.Image.MAX_IMAGE_PIXELS`` yourself if you trust your files.
- A missing, truncated or corrupt file raises FrcnnError naming the file.
"""
from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from frcnn_lib.runtime.errors import FrcnnError

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def read_image(path, root=None) -> np.ndarray:
    """Read the image file ``path`` as ``uint8 (H, W, 3)`` RGB.

    Args:
      path: image file.
      root: optional dataset folder; ``path`` must then resolve inside it (symlinks
        resolved), else FrcnnError.

    Raises:
      FrcnnError: naming ``path`` if it is outside ``root``, missing, not an image,
        truncated, corrupt or larger than PIL's pixel limit.
    """
    path = Path(path)
    if root is not None:
        real_root = os.path.realpath(root)
        real = os.path.realpath(path)
        if os.path.commonpath([real_root, real]) != real_root:
            raise FrcnnError(f"{path}: image file lies outside the dataset folder {root}")
    try:
        with warnings.catch_warnings():
            # Above MAX_IMAGE_PIXELS PIL warns, above twice that it raises: treat both alike.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                image = ImageOps.exif_transpose(image)
                return to_rgb_uint8(image)
    except FileNotFoundError:
        raise FrcnnError(f"{path}: image file not found") from None
    except IsADirectoryError:
        raise FrcnnError(f"{path}: expected an image file, found a directory") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise FrcnnError(
            f"{path}: image too large ({e}); raise PIL.Image.MAX_IMAGE_PIXELS if you "
            "trust this file") from None
    except UnidentifiedImageError:
        raise FrcnnError(f"{path}: not a readable image file (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as e:
        # PIL reports truncated / corrupt data as OSError, SyntaxError or ValueError.
        raise FrcnnError(f"{path}: truncated or corrupt image file ({e})") from None


def to_rgb_uint8(image: Image.Image) -> np.ndarray:
    """Any PIL image -> ``uint8 (H, W, 3)`` RGB (see the module docstring for the rules)."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        gray = np.asarray(image).astype(np.float64)
        if mode == "I" and gray.size and gray.max() <= 255:
            gray8 = np.clip(gray, 0, 255)  # an 8-bit image stored in 32-bit ints
        else:
            gray8 = np.clip(gray, 0, 65535) * (255.0 / 65535.0)
        gray8 = np.round(gray8).astype(np.uint8)
        return np.repeat(gray8[..., None], 3, axis=-1)
    if mode == "F":
        gray = np.nan_to_num(np.asarray(image, np.float64))
        scale = 255.0 if gray.size and gray.max() <= 1.0 else 1.0
        gray8 = np.round(np.clip(gray * scale, 0, 255)).astype(np.uint8)
        return np.repeat(gray8[..., None], 3, axis=-1)
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    if image.mode == "L":  # cheaper in numpy than through PIL for very large images
        return np.repeat(np.asarray(image, np.uint8)[..., None], 3, axis=-1)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.array(image, np.uint8)  # a writable copy


def image_size(path) -> tuple[int, int]:
    """``(height, width)`` of an image file after EXIF orientation, reading only the header."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except FileNotFoundError:
        raise FrcnnError(f"{path}: image file not found") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise FrcnnError(f"{path}: not a readable image file ({e})") from None
    if orientation in (5, 6, 7, 8):  # the transposing orientations swap the sides
        height, width = width, height
    return int(height), int(width)


def user_image(image, index=0):
    """What a user may pass to ``detect`` as one image -> a numpy array.

    A file path (``str`` or ``os.PathLike``) is read by :func:`read_image` (EXIF orientation
    applied, as ``frcnn predict`` reads it); errors name ``index`` and the file.  A
    ``PIL.Image.Image`` of any mode becomes ``uint8 (H, W, 3)`` RGB by the same rules (so
    ``detect(Image.open(f))`` sees what ``frcnn predict f`` sees), except that EXIF
    orientation is not applied: boxes refer to the pixels of the object given.  Arrays (and
    array-likes such as tensors) pass through ``np.asarray``.  ``None``, bytes, numbers,
    lists and other objects raise FrcnnError naming ``index``.
    """
    if isinstance(image, (str, os.PathLike)):
        try:
            return read_image(image)
        except FrcnnError as err:
            raise FrcnnError(f"image {index}: {err}") from None
    if isinstance(image, Image.Image):
        try:
            image.load()
            return to_rgb_uint8(image)
        except (OSError, SyntaxError, ValueError, EOFError, struct.error) as e:
            raise FrcnnError(f"image {index}: PIL image (mode {image.mode}) could not be read "
                             f"({e})") from None
    if isinstance(image, np.ndarray) or (hasattr(image, "__array__") and not isinstance(image, (list, tuple))):
        return np.asarray(image)
    if image is None:
        hint = " (cv2.imread returns None for a missing file)"
    elif isinstance(image, bytes):
        hint = " (encoded file contents? decode them first: PIL.Image.open(io.BytesIO(data)))"
    else:
        hint = ""
    shown = "None" if image is None else f"{type(image).__name__}"
    raise FrcnnError(f"image {index}: expected a numpy array, a PIL.Image or a file path, "
                     f"got {shown}{hint}")
