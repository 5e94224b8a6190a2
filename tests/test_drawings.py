"""A drawing the user gives to `cnn predict --image` becomes the input a digit would: alpha laid
on paper, 16-bit scaled, blank images and decompression bombs refused by name."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from mapscope.cnn.predict import read_drawing
from mapscope.errors import DataError


def stroke(size: int = 112) -> np.ndarray:
    """A vertical bar (a '1') as a mask."""
    mask = np.zeros((size, size), bool)
    mask[size // 5 : -size // 5, size // 2 - size // 14 : size // 2 + size // 14] = True
    return mask


def bar_is_bright_on_dark(pixels: np.ndarray) -> None:
    image = pixels[0].astype(int)
    assert image.shape == (28, 28)
    assert image[14, 14] > 200 and image[2, 2] < 30  # MNIST convention: bright ink, dark paper


def test_black_ink_on_a_transparent_background(tmp_path):
    rgba = np.zeros((112, 112, 4), np.uint8)  # transparent black everywhere ...
    rgba[stroke()] = (0, 0, 0, 255)  # ... and opaque black ink: once an all-zero input
    Image.fromarray(rgba, "RGBA").save(tmp_path / "d.png")
    bar_is_bright_on_dark(read_drawing(tmp_path / "d.png"))


def test_white_ink_on_a_transparent_background(tmp_path):
    rgba = np.zeros((112, 112, 4), np.uint8)
    rgba[stroke()] = (255, 255, 255, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "d.png")
    bar_is_bright_on_dark(read_drawing(tmp_path / "d.png"))


def test_a_16_bit_drawing_with_a_dim_background(tmp_path):
    values = np.full((112, 112), 200, np.uint16)  # dim paper, dimmer than 8-bit black's 255
    values[stroke()] = 900
    Image.fromarray(values).save(tmp_path / "d.png")
    with Image.open(tmp_path / "d.png") as saved:
        assert saved.mode.startswith("I")
    bar_is_bright_on_dark(read_drawing(tmp_path / "d.png"))


def test_a_blank_image_is_refused(tmp_path):
    Image.new("L", (64, 64), 255).save(tmp_path / "blank.png")
    with pytest.raises(DataError, match="blank"):
        read_drawing(tmp_path / "blank.png")


def bomb(path, width: int, height: int) -> None:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels."""
    Image.new("1", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    start = data.index(b"IHDR")
    data[start + 4 : start + 12] = struct.pack(">II", width, height)
    data[start + 17 : start + 21] = struct.pack(">I", zlib.crc32(bytes(data[start : start + 17])))
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("side", [30000, 10000])  # above PIL's own limit, and below it
def test_a_decompression_bomb_is_refused_before_decoding(tmp_path, side):
    bomb(tmp_path / "bomb.png", side, side)
    assert (tmp_path / "bomb.png").stat().st_size < 1000
    with pytest.raises(DataError, match="too large for a drawing.*decompression bomb"):
        read_drawing(tmp_path / "bomb.png")


def test_a_refused_drawing_leaves_no_file_open(tmp_path):
    """PIL opens a file and reads its pixels later; a drawing refused in between has its file
    closed at once, not when the error's frames are collected (the live app reads upload after
    upload)."""
    import os

    bomb(tmp_path / "bomb.png", 10000, 10000)
    open_before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(DataError, match="too large") as refused:
        read_drawing(tmp_path / "bomb.png")
    assert refused.traceback  # the error's frames are alive here, and with them the image
    assert len(os.listdir("/proc/self/fd")) == open_before


def test_not_an_image(tmp_path):
    (tmp_path / "x.png").write_text("hello")
    with pytest.raises(DataError, match="not a readable image"):
        read_drawing(tmp_path / "x.png")


def test_a_png_whose_header_chunk_is_cut_short(tmp_path):
    """Found by the bytes fuzzer: PIL raises ValueError("Truncated IHDR chunk") on opening."""
    from PIL import Image

    Image.fromarray(np.eye(28, dtype=np.uint8) * 255).save(tmp_path / "x.png")
    content = bytearray((tmp_path / "x.png").read_bytes())
    content[11] ^= 1  # the IHDR chunk's length: 13 -> 12
    (tmp_path / "x.png").write_bytes(bytes(content))
    with pytest.raises(DataError, match="not a readable image.*Truncated IHDR"):
        read_drawing(tmp_path / "x.png")


@pytest.mark.parametrize("paper", ["dim 16-bit", "grey 8-bit", "transparent"])
def test_a_real_digit_on_any_paper_is_predicted_as_that_digit(
    paper, cnn_run, mnist, real_data, tmp_path
):
    """Test image 1302 (a 1) redrawn as users send it; the trained network must see a 1."""
    from mapscope.cnn.predict import predict_drawing
    from mapscope.runs import Run

    digit = mnist.x[60000 + 1302]
    assert mnist.y[60000 + 1302] == 1
    if paper == "dim 16-bit":  # once read as a 2: the dim paper stayed above MNIST's 0
        image = Image.fromarray(200 + digit.astype(np.uint16) * 3)
    elif paper == "grey 8-bit":  # dark ink on grey paper, as in a photo
        image = Image.fromarray((170 - digit * (150 / 255)).astype(np.uint8))
    else:
        rgba = np.zeros((28, 28, 4), np.uint8)
        rgba[..., 3] = digit
        image = Image.fromarray(rgba, "RGBA")
    image.resize((140, 140)).save(tmp_path / "d.png")
    pixels = read_drawing(tmp_path / "d.png")[0]
    assert np.median(pixels) == 0 and pixels.max() == 255
    run = Run.open(cnn_run)
    assert predict_drawing(run.module(), run.bundle(real_data), tmp_path / "d.png").argmax() == 1
