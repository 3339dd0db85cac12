"""Image reading: modes, EXIF orientation, sizes, corrupt files."""
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from frcnn_lib.datasets.imageio import image_size, read_image
from frcnn_lib.runtime.errors import FrcnnError


def _png16(path, array, color_type):
    """Write a 16-bit PNG by hand (PIL cannot write 16-bit RGB): 0 gray, 2 RGB."""
    h, w = array.shape[:2]
    raw = b"".join(b"\x00" + array[i].astype(">u2").tobytes() for i in range(h))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_rgb_png_round_trips(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (12, 17, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (12, 17, 3)
    np.testing.assert_array_equal(out, rgb)


def test_grayscale_becomes_three_equal_channels(tmp_path):
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (8, 8, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_rgba_is_composited_over_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[0, :, 3] = 255          # opaque red row
    rgba[1, :, 3] = 0            # fully transparent row
    rgba[2, :, 3] = 128          # half
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out[0, 0].tolist() == [200, 0, 0]
    assert out[1, 0].tolist() == [255, 255, 255]
    assert out[2, 0, 1] == pytest.approx(127, abs=1)


def test_palette_with_and_without_transparency(tmp_path):
    image = Image.new("P", (6, 4), 1)
    image.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    image.putpixel((0, 0), 0)
    image.save(tmp_path / "p.png")
    out = read_image(tmp_path / "p.png")
    assert out[1, 1].tolist() == [10, 200, 30] and out[0, 0].tolist() == [0, 0, 0]
    image.save(tmp_path / "pt.png", transparency=0)
    out = read_image(tmp_path / "pt.png")
    assert out[0, 0].tolist() == [255, 255, 255] and out[1, 1].tolist() == [10, 200, 30]


def test_16_bit_images_are_scaled_not_clipped(tmp_path):
    gray = np.array([[0, 257, 32768, 65535]], np.uint16)
    Image.fromarray(gray).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    out = read_image(tmp_path / "g16.png")
    assert out[0, :, 0].tolist() == [0, 1, 128, 255]
    rgb = np.zeros((2, 2, 3), np.uint16)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 65535, 32768, 514
    _png16(tmp_path / "rgb16.png", rgb, 2)
    out = read_image(tmp_path / "rgb16.png")
    assert out[0, 0].tolist() == [255, 128, 2]


def test_exif_orientation_is_applied(tmp_path):
    raw = np.zeros((20, 40, 3), np.uint8)
    raw[:, :20] = [255, 0, 0]            # left half red, right half blue
    raw[:, 20:] = [0, 0, 255]
    exif = Image.Exif()
    exif[0x0112] = 6                      # "rotate 90 degrees clockwise to display"
    path = tmp_path / "rotated.jpg"
    Image.fromarray(raw).save(path, exif=exif, quality=95)
    out = read_image(path)
    assert out.shape == (40, 20, 3)
    assert image_size(path) == (40, 20)
    expected = np.rot90(raw, k=-1)        # clockwise: the left half becomes the top
    assert np.abs(out.astype(int) - expected).mean() < 8
    assert out[5, 10, 0] > 200 and out[35, 10, 2] > 200


def test_tiny_and_huge_images(tmp_path):
    Image.new("RGB", (10, 10), (1, 2, 3)).save(tmp_path / "tiny.png")
    assert read_image(tmp_path / "tiny.png").shape == (10, 10, 3)
    Image.new("L", (8000, 6000), 7).save(tmp_path / "huge.png", compress_level=1)
    out = read_image(tmp_path / "huge.png")
    assert out.shape == (6000, 8000, 3) and out[5999, 7999].tolist() == [7, 7, 7]


def test_decompression_bomb_limit_gives_frcnn_error(tmp_path, monkeypatch):
    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4000)     # 2.5x the limit: PIL raises
    with pytest.raises(FrcnnError, match=r"big\.png: image too large.*MAX_IMAGE_PIXELS"):
        read_image(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 8000)     # 1.25x: PIL only warns
    with pytest.raises(FrcnnError, match="too large"):
        read_image(tmp_path / "big.png")


def test_truncated_and_corrupt_files_raise_frcnn_error(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(FrcnnError, match=r"cut\.jpg: truncated or corrupt"):
        read_image(tmp_path / "cut.jpg")
    Image.fromarray(rgb).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) - 200])
    with pytest.raises(FrcnnError, match=r"cut\.png"):
        read_image(tmp_path / "cut.png")
    (tmp_path / "noise.jpg").write_bytes(b"\xff\xd8\xff" + bytes(range(256)) * 4)
    with pytest.raises(FrcnnError, match=r"noise\.jpg"):
        read_image(tmp_path / "noise.jpg")
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(FrcnnError, match=r"text\.png: not a readable image"):
        read_image(tmp_path / "text.png")
    with pytest.raises(FrcnnError, match=r"absent\.png: image file not found"):
        read_image(tmp_path / "absent.png")
    with pytest.raises(FrcnnError, match="directory"):
        read_image(tmp_path)


def test_paths_outside_root_are_refused(tmp_path):
    root = tmp_path / "dataset"
    root.mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "outside.png")
    Image.new("RGB", (4, 4)).save(root / "inside.png")
    assert read_image(root / "inside.png", root=root).shape == (4, 4, 3)
    with pytest.raises(FrcnnError, match="outside the dataset folder"):
        read_image(root / ".." / "outside.png", root=root)
    (root / "link.png").symlink_to(tmp_path / "outside.png")
    with pytest.raises(FrcnnError, match="outside the dataset folder"):
        read_image(root / "link.png", root=root)
