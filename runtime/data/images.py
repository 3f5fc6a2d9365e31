"""Image folders: ``DIR/<class>/*.png|jpg|...`` (the layout of torchvision's ImageFolder and Keras's
``image_dataset_from_directory``), decoded by Pillow.

The stated rule (kept in the model card's ``image``): every image becomes the model's channels
(``L`` for one channel, ``RGB`` for three: grey is copied to three channels, alpha dropped) and
size. With ``resize: refuse`` (the default) an image of another size is refused naming its path,
so a folder of mixed sizes never trains on silently distorted pictures; ``resize: stretch``
resizes every image to the model's height and width (bilinear). Pixels are scaled by
``pixel_scale`` (1/255: 8-bit values to [0, 1], like the sample digit arrays) when decoded; the
scale travels in the card, and every decode (``train``, ``infer``, ``predict``, the server's
encoded-image inputs) goes through :func:`decode_image`, so the same file gives the same input.
Class names are the subfolder names in sorted order; a class folder without images is refused.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onnxforge.runtime.data.spill import RowSpill
from onnxforge.runtime.errors import DataError

__all__ = ["IMAGE_SUFFIXES", "RESIZE_RULES", "ImageSpec", "is_image", "scan_folder", "decode_image", "read_folder",
           "read_images", "list_images"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
RESIZE_RULES = ("refuse", "stretch")
PIXEL_SCALE = 1.0 / 255.0
# Pixels an image may declare before it is decoded (its header is read first): 4096x4096, or the
# model's own size if larger. A few KB of PNG can declare gigapixels; Pillow's own bomb check
# allows about 179 million (over 500 MB of RGB) before it refuses.
MAX_DECODE_PIXELS = 4096 * 4096


def is_image(path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


@dataclass(frozen=True)
class ImageSpec:
    """How an image becomes one ``[channels, height, width]`` float32 input."""

    channels: int
    height: int
    width: int
    resize: str = "refuse"
    pixel_scale: float = PIXEL_SCALE

    def __post_init__(self):
        if self.channels not in (1, 3):
            raise DataError(f"images decode to 1 (grey) or 3 (RGB) channels; the model's input has {self.channels}")
        if self.resize not in RESIZE_RULES:
            raise DataError(f"resize rule must be one of {', '.join(RESIZE_RULES)}; got {self.resize!r}")

    @classmethod
    def for_model(cls, card, input_shape) -> ImageSpec:
        """The spec in the card's ``image`` and ``preprocessing``, else the model's input shape
        ``[N, C, H, W]`` with the default rule."""
        image = card.image or {}
        shape = list(input_shape or [])
        if len(shape) != 4 or not all(isinstance(d, int) for d in shape[1:]):
            raise DataError(f"images need a model whose input is [N, C, H, W] with fixed C, H, W; this one takes "
                            f"{shape or 'an unknown shape'}")
        scale = (card.preprocessing or {}).get("pixel_scale", PIXEL_SCALE)
        return cls(int(shape[1]), int(shape[2]), int(shape[3]), str(image.get("resize", "refuse")), float(scale))

    def card_values(self) -> dict:
        return {"image": {"channels": self.channels, "height": self.height, "width": self.width,
                          "resize": self.resize}, "pixel_scale": self.pixel_scale}


def _pil():
    from PIL import Image  # imported on use: only image commands need Pillow

    return Image


def _check_declared_size(size, spec: ImageSpec, where: str) -> None:
    width, height = int(size[0]), int(size[1])
    if (width, height) != (spec.width, spec.height) and spec.resize != "stretch":
        raise DataError(f"image {where} is {width}x{height} pixels; the model takes {spec.width}x"
                        f"{spec.height} and its rule refuses other sizes (build it with --resize stretch to "
                        "resize images)")
    cap = max(MAX_DECODE_PIXELS, spec.width * spec.height)
    if width * height > cap:
        raise DataError(f"image {where} declares {width}x{height} pixels, more than the {cap} an image may have "
                        f"before it is decoded; send it at most 4096x4096 (the model takes {spec.width}x{spec.height})")


def decode_image(source, spec: ImageSpec, where: str | None = None) -> np.ndarray:
    """A path or encoded bytes decoded to float32 ``[C, H, W]`` by ``spec``'s rule; ``where`` names
    the image in errors (default: its path, or "image bytes")."""
    Image = _pil()
    where = where or (f"'{source}'" if isinstance(source, (str, Path)) else "image bytes")
    if isinstance(source, (str, Path)) and Path(source).exists() and not Path(source).is_file():
        raise DataError(f"image {where} is not a regular file")  # a FIFO would block the read forever
    try:
        with Image.open(io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray, memoryview)) else source) as im:
            _check_declared_size(im.size, spec, where)  # from the header, before any pixel is decoded
            im = im.convert("L" if spec.channels == 1 else "RGB")
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"image {where} does not exist") from None
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"image {where} cannot be decoded ({text[:160]})") from None
    if im.size != (spec.width, spec.height):
        im = im.resize((spec.width, spec.height), Image.BILINEAR)
    pixels = np.asarray(im, np.float32) * np.float32(spec.pixel_scale)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image(p) and not p.name.startswith("."))


def scan_folder(root) -> tuple[list[str], list[tuple[Path, int]]]:
    """``(class names, [(image path, class index)])`` of ``root/<class>/...`` (sorted)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder '{root}' does not exist" if not root.exists() else f"'{root}' is not a folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"image folder '{root}' has no class subfolders; put the images of each class in "
                        f"{root}/<class name>/")
    files: list[tuple[Path, int]] = []
    for index, name in enumerate(classes):
        found = _images_in(root / name)
        if not found:
            raise DataError(f"class folder '{root / name}' holds no images ({', '.join(IMAGE_SUFFIXES)})")
        files.extend((path, index) for path in found)
    return classes, files


def list_images(root) -> list[Path]:
    """Every image under ``root`` (sorted), for unlabelled inputs."""
    found = _images_in(Path(root))
    if not found:
        raise DataError(f"folder '{root}' holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return found


def read_images(paths, spec: ImageSpec, *, progress: bool = False, budget: int | None = None) -> np.ndarray:
    """The images at ``paths`` as float32 ``[N, C, H, W]`` (memory-mapped past the spill budget)."""
    paths = list(paths)
    if progress:
        from tqdm import tqdm

        paths = tqdm(paths, desc="decoding images", unit=" images", leave=False, disable=None)
    with RowSpill(np.float32, (spec.channels, spec.height, spec.width), budget) as rows:  # no spill file left on error
        block = []
        for path in paths:
            block.append(decode_image(path, spec))
            if len(block) == 1024:
                rows.append(np.stack(block))
                block = []
        if block:
            rows.append(np.stack(block))
        return rows.finish()


def read_folder(root, spec: ImageSpec, labels: list[str] | None = None, *, progress: bool = False,
                budget: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of a class folder; with the model's ``labels``, ids are those names' indices (a
    subfolder naming no class of the model is refused)."""
    classes, files = scan_folder(root)
    ids = np.arange(len(classes))
    if labels:
        index = {name: i for i, name in enumerate(labels)}
        unknown = [c for c in classes if c not in index]
        if unknown:
            raise DataError(f"image folder '{root}': class folder '{unknown[0]}' is not one of the model's "
                            f"{len(labels)} classes ({', '.join(labels[:10])}{', ...' if len(labels) > 10 else ''})")
        ids = np.array([index[c] for c in classes])
    x = read_images([p for p, _ in files], spec, progress=progress, budget=budget)
    return x, ids[np.array([c for _, c in files], np.int64)].astype(np.int64)
