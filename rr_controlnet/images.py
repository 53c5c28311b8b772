"""Input images: decoding, the model's RGB view of them, explicit resizing and Canny edge maps."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from rr_controlnet.errors import ItemFailed

# Larger images are refused before decoding (a few kB of PNG can decode to gigabytes).
MAX_IMAGE_PIXELS: Final = 50_000_000

# The original example blacks out pixels whose alpha is below this before edge detection.
ALPHA_THRESHOLD: Final = 200
SIZE_MULTIPLE: Final = 8


@dataclass(frozen=True)
class SourceImage:
    """An input image as given (any mode), plus the file's bytes for a lossless record of it."""

    path: Path
    pixels: np.ndarray  # HxW (L), HxWx3 (RGB) or HxWx4 (RGBA), uint8, exactly as decoded
    encoded: bytes
    media_type: str | None  # set when the viewer can decode `encoded` itself


@dataclass(frozen=True)
class ControlImages:
    """What the model sees: the resized RGB image and its Canny edge map, both HxW(x3) uint8."""

    rgb: np.ndarray
    canny: np.ndarray  # HxW, 0 or 255

    @property
    def canny_rgb(self) -> np.ndarray:
        return np.repeat(self.canny[:, :, None], 3, axis=2)


VIEWER_MEDIA_TYPES: Final = {"PNG": "image/png", "JPEG": "image/jpeg"}


def image_file_problem(path: Path) -> str | None:
    """Why a file is not a readable image within the pixel limit, or None; reads headers, never pixels."""
    if not path.exists():
        return f"image file not found: {path}"
    if not path.is_file():
        return f"image is not a file: {path}"
    try:
        stats = path.stat()
    except OSError as exc:
        return f"cannot read image {path}: {exc.strerror}"
    return _image_file_problem(path, stats.st_mtime_ns, stats.st_size)


@functools.lru_cache(maxsize=4096)
def _image_file_problem(path: Path, mtime_ns: int, size: int) -> str | None:
    """image_file_problem's verdict on one version of a file: many items may share an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height <= MAX_IMAGE_PIXELS:
                image.verify()  # reads the file's structure and checksums (catches truncation) without decoding
    except UnidentifiedImageError:
        return f"not an image file: {path}"
    except Image.DecompressionBombError:
        return f"image is larger than {MAX_IMAGE_PIXELS:,} pixels: {path}"
    except (OSError, SyntaxError) as exc:
        return f"cannot read image {path}: {getattr(exc, 'strerror', None) or exc}"
    if width * height > MAX_IMAGE_PIXELS:
        return f"image is {width}x{height}, larger than {MAX_IMAGE_PIXELS:,} pixels: {path}"
    return None


def load_image(path: Path, data: bytes | None = None) -> SourceImage:
    """Decode an image fully, from its file or from `data` (the file's bytes, read elsewhere). Raises
    ItemFailed for files that are not images or decode wrongly."""
    import io

    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        encoded = path.read_bytes() if data is None else data
        with Image.open(io.BytesIO(encoded)) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise ItemFailed(f"image is {image.width}x{image.height}, larger than {MAX_IMAGE_PIXELS:,} pixels")
            file_format = image.format
            image.load()
            pixels = _as_array(ImageOps.exif_transpose(image) or image)
            orientation_applied = image.getexif().get(0x0112, 1) != 1
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as exc:
        # The file's name alone: this message is kept in the output folder, which must not show the machine's
        # layout (the item's summary entry has the image's path).
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ItemFailed(f"cannot decode image {Path(path).name}: {reason}") from None
    media_type = None if orientation_applied else VIEWER_MEDIA_TYPES.get(file_format or "")
    return SourceImage(path=path, pixels=pixels, encoded=encoded, media_type=media_type)


def oriented_size(encoded: bytes) -> tuple[int, int] | None:
    """An image file's (width, height) as load_image's pixels have it (EXIF rotation applied), from its
    header alone; None when it is not an image."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(encoded)) as image:
            rotated = image.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # a quarter turn, mirrored or not
            return (image.height, image.width) if rotated else (image.width, image.height)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError):
        return None


def _as_array(image) -> np.ndarray:
    """Keep L, RGB and RGBA as they are; expand other modes to one of them."""
    if image.mode in ("L", "RGB", "RGBA"):
        return np.asarray(image).copy()
    if image.mode == "P":
        has_alpha = "transparency" in image.info
        return np.asarray(image.convert("RGBA" if has_alpha else "RGB"))
    if image.mode in ("LA", "PA"):
        return np.asarray(image.convert("RGBA"))
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.asarray(image, dtype=np.float64)
        top = 65535.0 if wide.max() > 255 else 255.0
        return np.clip(wide / top * 255.0, 0, 255).astype(np.uint8)
    return np.asarray(image.convert("RGB"))


def pixels_of(image: Any, what: str) -> np.ndarray:
    """An image given as a path, a PIL image or an array, as uint8 pixels (HxW, HxWx3 or HxWx4). Raises
    ItemFailed naming `what` for anything else."""
    from PIL import Image

    if isinstance(image, (str, Path)):
        try:
            return load_image(Path(image)).pixels
        except ItemFailed as exc:
            raise ItemFailed(f"{what}: {exc}") from None
    if isinstance(image, Image.Image):
        return _as_array(image)
    if isinstance(image, np.ndarray):
        pixels = image.astype(np.uint8) * 255 if image.dtype == bool else image
        channels_ok = pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] in (1, 3, 4))
        if pixels.dtype != np.uint8 or not channels_ok or 0 in pixels.shape:
            raise ItemFailed(f"{what}: an array must be uint8 (or bool), HxW or HxWxC with 1, 3 or 4 channels, "
                             f"got {pixels.dtype} {pixels.shape}")  # fmt: skip
        return pixels[:, :, 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels
    raise ItemFailed(f"{what}: expected an image path, a PIL image or a numpy array, got {type(image).__name__}")


def is_edge_map(pixels: np.ndarray) -> bool:
    """One channel holding only 0 and one other level (255, or 1): an edge map rather than a photo."""
    return pixels.ndim == 2 and len(np.unique(pixels)) <= 2 and set(np.unique(pixels).tolist()) <= {0, 1, 255}


def model_rgb(pixels: np.ndarray) -> np.ndarray:
    """The RGB image the model is conditioned on: gray expanded, transparent pixels blacked out."""
    if pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2)
    if pixels.shape[2] == 4:
        rgb = pixels[:, :, :3].copy()
        rgb[pixels[:, :, 3] < ALPHA_THRESHOLD] = 0
        return rgb
    return pixels[:, :, :3].copy()


def target_size(
    image_size: tuple[int, int], width: int | None, height: int | None, native: int, multiple: int = SIZE_MULTIPLE
) -> tuple[int, int]:
    """The (width, height) to generate at: as requested, or derived keeping the image's aspect.

    With neither side given, the image's longer side becomes the model's native size; with one side
    given, the other follows the aspect. Derived sides are rounded to a multiple of `multiple` (the model
    family's: 8, or 16 for SD3 and Flux).
    """
    image_width, image_height = image_size
    if width and height:
        return width, height
    if width:
        return width, _round_side(width * image_height / image_width, multiple)
    if height:
        return _round_side(height * image_width / image_height, multiple), height
    scale = native / max(image_width, image_height)
    return _round_side(image_width * scale, multiple), _round_side(image_height * scale, multiple)


def _round_side(value: float, multiple: int) -> int:
    return max(multiple, round(value / multiple) * multiple)


def resize(rgb: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """Resize to exactly `size` (width, height).

    crop: scale to cover, then cut the centre (keeps aspect); fit: scale to fit inside, then pad with
    black (keeps aspect); stretch: scale each axis independently.
    """
    import cv2

    width, height = size
    source_height, source_width = rgb.shape[:2]
    if mode == "stretch":
        return _scaled(cv2, rgb, width, height)
    if mode == "crop":
        scale = max(width / source_width, height / source_height)
        scaled_width = max(width, round(source_width * scale))
        scaled_height = max(height, round(source_height * scale))
        scaled = _scaled(cv2, rgb, scaled_width, scaled_height)
        left = (scaled_width - width) // 2
        top = (scaled_height - height) // 2
        return scaled[top : top + height, left : left + width].copy()
    if mode == "fit":
        return pad_to(_scaled(cv2, rgb, *fitted_size(rgb, size)), size)
    raise ValueError(f"unknown resize mode {mode!r}")


def fitted_size(rgb: np.ndarray, size: tuple[int, int]) -> tuple[int, int]:
    """The largest (width, height) with the image's aspect that fits inside `size`."""
    width, height = size
    source_height, source_width = rgb.shape[:2]
    scale = min(width / source_width, height / source_height)
    return min(width, max(1, round(source_width * scale))), min(height, max(1, round(source_height * scale)))


def pad_to(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Centre an image on a black canvas of `size` (width, height)."""
    width, height = size
    canvas = np.zeros((height, width, *pixels.shape[2:]), dtype=pixels.dtype)
    top = (height - pixels.shape[0]) // 2
    left = (width - pixels.shape[1]) // 2
    canvas[top : top + pixels.shape[0], left : left + pixels.shape[1]] = pixels
    return canvas


def _scaled(cv2, rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    shrinking = width * height < rgb.shape[0] * rgb.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return cv2.resize(rgb, (width, height), interpolation=interpolation)


def canny_edges(rgb: np.ndarray, low: int, high: int) -> np.ndarray:
    """Canny edges of an RGB image as an HxW uint8 map (0 or 255)."""
    import cv2

    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return cv2.Canny(gray, low, high)


def control_images(pixels: np.ndarray, size: tuple[int, int], resize_mode: str, low: int, high: int) -> ControlImages:
    """What the model sees of an image's pixels (as decoded, any mode) at `size` (width, height)."""
    rgb = model_rgb(pixels)
    if resize_mode == "fit":
        # Edges are found before padding: the padding's border is not an edge of the image.
        fitted = resize(rgb, fitted_size(rgb, size), "stretch")
        return ControlImages(rgb=pad_to(fitted, size), canny=pad_to(canny_edges(fitted, low, high), size))
    rgb = resize(rgb, size, resize_mode)
    return ControlImages(rgb=rgb, canny=canny_edges(rgb, low, high))


def prepare_input(
    path: Path,
    width: int | None,
    height: int | None,
    resize_mode: str,
    low: int,
    high: int,
    native: int,
    data: bytes | None = None,
    multiple: int = SIZE_MULTIPLE,
) -> tuple[SourceImage, ControlImages, tuple[int, int]]:
    """Decode an item's image (its file, or `data`, the file's bytes) and make what the model sees at its
    generation size (width, height)."""
    source = load_image(path, data)
    image_height, image_width = source.pixels.shape[:2]
    size = target_size((image_width, image_height), width, height, native, multiple)
    return source, control_images(source.pixels, size, resize_mode, low, high), size


def encode_png(pixels: np.ndarray, text_chunks: dict[str, str] | None = None) -> bytes:
    """PNG bytes of an L or RGB uint8 array, with optional tEXt/iTXt chunks."""
    import io

    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for key, value in (text_chunks or {}).items():
        info.add_itxt(key, value) if not value.isascii() else info.add_text(key, value)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", pnginfo=info, compress_level=6)
    return buffer.getvalue()
