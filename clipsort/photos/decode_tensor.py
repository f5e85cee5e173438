"""JPEG bytes -> the model's input pixels on its device: nvJPEG on a CUDA GPU, in batches.

The CPU decoder (:mod:`clipsort.photos.decode`) stays the reference: this path gives the same
picture as it, step by step, for the files it takes, and hands every other file back.

* Only JPEGs whose header Pillow reads as RGB or grey are taken, within the pixel cap;
  CMYK, other formats, and files whose header cannot be read go to the CPU decoder.
* A batch that torchvision cannot decode (a broken or unusual file among them: it returns
  nothing then) is split in halves and tried again, down to the one file, which goes to the
  CPU decoder; so a bad file costs a few retries and never a photo.
* Decoded pixels are reduced by whole factors with a box filter first, as the CPU path's
  draft decoding and ``reduce`` do, then turned upright (the EXIF orientation, read with the
  CPU path's own rule), then put through the model's own preprocessing steps (torchvision's
  ``Resize`` and ``CenterCrop`` run on tensors as they do on pictures), and stay uint8 until
  the model normalises them.
* GPU memory is bounded: a batch holds at most ``budget`` bytes of decoded pixels (a 12 MP
  photo is 36 MB decoded), and each picture is reduced to the model's size before the next.

torchvision decodes on CPU tensors too, so every step here runs, and is tested, without a GPU.
The perceptual hash is computed here too, from the same reduced picture (see :mod:`clipsort.photos.phash`).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipsort.photos import phash
from clipsort.photos.decode import exif_orientation, max_pixels, reduction

if TYPE_CHECKING:
    import torch

#: Files per call of torchvision's batched decoder, at most.
MAX_BATCH = 128
#: Decoded bytes per call (before reduction) when the device does not say: 512 MiB.
DEFAULT_BUDGET = 512 << 20


@dataclass(frozen=True)
class JpegHeader:
    width: int
    height: int
    orientation: int


def read_header(data: bytes | bytearray, path: Path) -> JpegHeader | None:
    """Size and orientation of a JPEG this path can decode; None sends the file to the CPU decoder."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                if image.format != "JPEG" or image.mode not in ("RGB", "L"):
                    return None
                width, height = image.size
                if width * height > max_pixels() or min(width, height) < 1:
                    return None  # the CPU decoder refuses it with the message
                return JpegHeader(width, height, exif_orientation(image, path))
    except Exception:  # noqa: BLE001 - whatever Pillow cannot read, the CPU decoder reports
        return None


def read_jpeg(path: Path) -> tuple[bytearray, JpegHeader] | None:
    """The file's bytes and header, or None for a file the CPU decoder should take."""
    try:
        with open(path, "rb") as handle:
            data = bytearray(handle.read())
    except OSError:
        return None  # the CPU decoder reports why
    header = read_header(data, path)
    return None if header is None else (data, header)


def orient(pixels: torch.Tensor, orientation: int) -> torch.Tensor:
    """Turn (C, H, W) pixels upright for an EXIF orientation, as :data:`clipsort.photos.decode._TRANSPOSE` does."""
    import torch

    if orientation == 2:  # mirrored
        return pixels.flip(2)
    if orientation == 3:  # upside down
        return pixels.flip(1, 2)
    if orientation == 4:  # mirrored upside down
        return pixels.flip(1)
    if orientation == 5:  # transposed
        return pixels.transpose(1, 2)
    if orientation == 6:  # stored a quarter turn anticlockwise: turn it clockwise
        return torch.rot90(pixels, -1, (1, 2))
    if orientation == 7:  # transverse
        return pixels.transpose(1, 2).flip(1, 2)
    if orientation == 8:  # stored a quarter turn clockwise
        return torch.rot90(pixels, 1, (1, 2))
    return pixels


class TensorPreprocess:
    """The model's preprocessing on uint8 (C, H, W) tensors: reduce, orient, resize, crop."""

    def __init__(self, steps: Sequence[Any], min_side: int) -> None:
        self.steps = list(steps)
        self.min_side = min_side

    @classmethod
    def of(cls, pil_steps: Any, min_side: int) -> TensorPreprocess | str:
        """From the picture steps of an open_clip eval transform; a reason instead when a step has
        no tensor form (open_clip's ``ResizeKeepRatio``, which reads a picture's size, for one)."""
        from torchvision import transforms

        kept = []
        for step in getattr(pil_steps, "transforms", [pil_steps]):
            name = type(step).__name__
            if name == "MaybeConvertMode":  # converts pictures, passes tensors through
                continue
            if isinstance(step, transforms.Resize) and step.max_size is None:
                kept.append(step)
            elif isinstance(step, transforms.CenterCrop) or name == "CenterCropOrPad":
                kept.append(step)
            else:
                return f"the model's preprocessing step {name} has no GPU form"
        return cls(kept, min_side)

    def __call__(self, pixels: torch.Tensor, orientation: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(the model's uint8 input, the 32x32 grey picture of the perceptual hash) of decoded pixels."""
        import torch

        if pixels.shape[0] == 1:
            pixels = pixels.expand(3, -1, -1)
        factor = reduction(int(pixels.shape[2]), int(pixels.shape[1]), self.min_side)
        if factor > 1:
            reduced = torch.nn.functional.avg_pool2d(pixels.unsqueeze(0).float(), factor, stride=factor, ceil_mode=True)
            pixels = reduced.squeeze(0).round_().clamp_(0, 255).to(torch.uint8)
        pixels = orient(pixels, orientation)
        grey = _grey32(pixels)
        for step in self.steps:
            pixels = step(pixels)
        return pixels.contiguous(), grey


def _grey32(pixels: torch.Tensor) -> torch.Tensor:
    """Pillow's ``convert("L")`` (ITU-R 601-2 luma, rounded) then its Lanczos resize to 32x32,
    for the perceptual hash: the same grey picture as :func:`clipsort.photos.phash.perceptual_hash` makes."""
    import torch

    r, g, b = pixels.to(torch.int32).unbind(0)
    grey = ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).float()
    height, width = grey.shape
    across = _weights(width, grey.device)
    down = _weights(height, grey.device)
    rows = (grey @ across.T).round_().clamp_(0, 255)
    return (down @ rows).round_().clamp_(0, 255)


def _weights(size: int, device: torch.device) -> torch.Tensor:
    import torch

    return torch.from_numpy(phash.lanczos_matrix(size)).to(device=device, dtype=torch.float32)


class JpegDecoder:
    """Decodes batches of JPEG bytes on ``device`` into the model's input pixels."""

    def __init__(self, preprocess: TensorPreprocess, device: str, budget: int | None = None) -> None:
        # torchvision 0.29 says its decoders will move to TorchCodec; they work, and the warning
        # is not the user's to act on.
        warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision")
        self.preprocess = preprocess
        self.device = device
        self.budget = budget or _budget_of(device)
        self.batch = MAX_BATCH if device.startswith("cuda") else 16

    def decode(self, items: Sequence[tuple[bytearray, JpegHeader]]) -> list[tuple[torch.Tensor, int] | None]:
        """Per item: (the model's uint8 input on the device, the perceptual hash), or None where the
        CPU decoder must take the file."""
        results: list[tuple[torch.Tensor, int] | None] = [None] * len(items)
        group: list[int] = []
        size = 0
        for i, (_, header) in enumerate(items):
            pixels = header.width * header.height * 3
            if group and (size + pixels > self.budget or len(group) >= self.batch):
                self._decode(group, items, results)
                group, size = [], 0
            group.append(i)
            size += pixels
        if group:
            self._decode(group, items, results)
        return results

    def _decode(
        self,
        group: list[int],
        items: Sequence[tuple[bytearray, JpegHeader]],
        results: list[tuple[torch.Tensor, int] | None],
    ) -> None:
        import torch
        from torchvision.io import ImageReadMode, decode_jpeg

        try:
            with torch.inference_mode():
                encoded = [torch.frombuffer(items[i][0], dtype=torch.uint8) for i in group]
                decoded = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=self.device)
                done = []
                for i, pixels in zip(group, decoded, strict=True):
                    header = items[i][1]
                    if tuple(pixels.shape[1:]) != (header.height, header.width):
                        continue  # not what the header promised: the CPU decoder judges it
                    done.append((i, *self.preprocess(pixels, header.orientation)))
                    del pixels
                del decoded
                greys: Any = torch.stack([grey for _, _, grey in done]).cpu().numpy() if done else []
        except RuntimeError:  # a file torchvision cannot decode, or the device ran out of memory
            if len(group) > 1:
                half = len(group) // 2
                self._decode(group[:half], items, results)
                self._decode(group[half:], items, results)
            return
        for (i, prepared, _), grey in zip(done, greys, strict=True):
            results[i] = (prepared, phash.hash_of_grey(grey))


def _budget_of(device: str) -> int:
    """Decoded bytes per batch: a sixteenth of the GPU's memory, at most 4 GiB."""
    if not device.startswith("cuda"):
        return DEFAULT_BUDGET
    import torch

    total = torch.cuda.get_device_properties(torch.device(device)).total_memory
    return int(min(total // 16, 4 << 30))
