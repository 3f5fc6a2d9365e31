"""Image folders decoded by Pillow: pixels against the PNG's own bytes, grey to RGB, the refuse and
stretch rules, and one-line errors naming the path."""

import numpy as np
import pytest

from onnxforge.runtime.data.images import ImageSpec, decode_image, read_folder, scan_folder
from onnxforge.runtime.errors import DataError

Image = pytest.importorskip("PIL.Image")


def _png(path, pixels, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8), mode).save(path)
    return path


@pytest.fixture
def folder(tmp_path, rng):
    pixels = {}
    for cls in ("cat", "dog"):
        for i in range(3):
            px = rng.integers(0, 256, (6, 5))
            pixels[(cls, i)] = px
            _png(tmp_path / "data" / cls / f"{i}.png", px)
    return tmp_path / "data", pixels


def test_folder_reads_classes_in_sorted_order_with_scaled_pixels(folder):
    root, pixels = folder
    x, y = read_folder(root, ImageSpec(1, 6, 5))
    assert x.shape == (6, 1, 6, 5) and x.dtype == np.float32
    assert list(y) == [0, 0, 0, 1, 1, 1]
    np.testing.assert_allclose(x[4, 0], pixels[("dog", 1)] / 255.0, rtol=1e-6)
    _, y2 = read_folder(root, ImageSpec(1, 6, 5), labels=["dog", "cat"])  # the model's own order
    assert list(y2) == [1, 1, 1, 0, 0, 0]


def test_grey_becomes_three_equal_channels_and_stretch_resizes(folder):
    root, pixels = folder
    rgb = decode_image(root / "cat" / "0.png", ImageSpec(3, 6, 5))
    assert rgb.shape == (3, 6, 5)
    np.testing.assert_array_equal(rgb[0], rgb[2])
    big = decode_image(root / "cat" / "0.png", ImageSpec(1, 12, 10, resize="stretch"))
    ref = np.asarray(Image.fromarray(pixels[("cat", 0)].astype(np.uint8)).resize((10, 12), Image.BILINEAR)) / 255.0
    np.testing.assert_allclose(big[0], ref, rtol=1e-6)
    data = (root / "cat" / "0.png").read_bytes()
    np.testing.assert_array_equal(decode_image(data, ImageSpec(1, 6, 5)), decode_image(root / "cat" / "0.png", ImageSpec(1, 6, 5)))


def test_mixed_sizes_under_refuse_name_the_image(folder, rng):
    root, _ = folder
    odd = _png(root / "dog" / "9.png", rng.integers(0, 256, (7, 5)))
    with pytest.raises(DataError) as err:
        read_folder(root, ImageSpec(1, 6, 5))
    assert str(err.value).startswith(f"image '{odd}' is 5x7 pixels; the model takes 5x6")


def test_unreadable_image_and_empty_class_folder_are_named(folder):
    root, _ = folder
    bad = root / "cat" / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=f"image '{bad}' cannot be decoded"):
        read_folder(root, ImageSpec(1, 6, 5))
    bad.unlink()
    (root / "bird").mkdir()
    with pytest.raises(DataError, match=f"class folder '{root / 'bird'}' holds no images"):
        scan_folder(root)
