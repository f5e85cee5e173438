"""The image and video formats clipsort knows, which of them this installation reads, and what the rest need.

One table (:data:`FORMATS`) is the single place for file extensions: discovery
finds every file of a known format; the decoder reads those whose reader is
installed; the others are counted, per format, with the package that would read
them (``clipsort formats`` prints the table, docs/formats.md explains it).

Readers are plain Pillow, Pillow plugins (pillow-heif, pillow-jxl-plugin,
pillow-avif-plugin), rawpy (LibRaw) for camera RAW files and PyAV (FFmpeg) for videos. Plugins are
registered once, the first time a photo is decoded, so ``--help`` imports none.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Format:
    name: str
    extensions: tuple[str, ...]
    #: The library that reads it, as a person would name it.
    reader: str
    #: What to install when the reader is missing ("" for formats plain Pillow always reads).
    install: str = ""
    raw: bool = False
    #: A video container: judged by a few of its frames (:mod:`clipsort.photos.video`).
    video: bool = False


#: Pillow's wheels carry OpenJPEG; a Pillow built without it needs rebuilding.
_JPEG2000_INSTALL = "pip install --force-reinstall pillow (its wheels read JPEG 2000 through OpenJPEG)"
#: Videos are read by PyAV, whose wheels carry FFmpeg's decoders (docs/formats.md says why).
_VIDEO_READER = "PyAV (FFmpeg)"
_VIDEO_INSTALL = "pip install av"

#: The RAW kinds LibRaw reads, by the extensions their files take: Canon (CR2, CR3, CRW), Nikon
#: (NEF, NRW), Sony (ARW, SRF, SR2), Adobe DNG, Olympus (ORF), Panasonic and Leica (RW2, RAW, RWL),
#: Fujifilm (RAF), Pentax (PEF, PTX), Samsung (SRW), Minolta (MRW, MDC), Sigma (X3F), Phase One
#: (IIQ, CAP, EIP), Leaf (MOS), Hasselblad and Imacon (3FR, FFF), Kodak (DCR, KDC, K25, DCS, DRF),
#: Mamiya (MEF), Epson (ERF), ARRI (ARI), Casio (BAY), GoPro (GPR), Sinar (STI), Logitech (PXN).
RAW_EXTENSIONS = (
    ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".dng", ".orf", ".rw2", ".raw", ".rwl",
    ".raf", ".pef", ".ptx", ".srw", ".mrw", ".mdc", ".x3f", ".iiq", ".mos", ".3fr", ".fff", ".dcr", ".kdc",
    ".k25", ".dcs", ".drf", ".mef", ".erf", ".ari", ".bay", ".gpr", ".sti", ".pxn", ".cap", ".eip",
)  # fmt: skip

FORMATS: tuple[Format, ...] = (
    Format("JPEG", (".jpg", ".jpeg", ".jpe", ".jfif", ".jfi", ".jif"), "Pillow"),
    # Nintendo 3DS, Fujifilm W3, Samsung NX: a JPEG of each eye; the first is the one judged
    Format("MPO (stereo JPEG)", (".mpo",), "Pillow"),
    Format("PNG", (".png",), "Pillow"),
    Format("WebP", (".webp",), "Pillow"),
    Format("TIFF", (".tif", ".tiff"), "Pillow"),
    Format("BMP", (".bmp",), "Pillow"),
    Format("GIF", (".gif",), "Pillow"),
    Format("Photoshop PSD", (".psd",), "Pillow"),  # its composite picture, as saved with the layers
    Format("JPEG 2000", (".jp2", ".j2k", ".j2c", ".jpc", ".jpf", ".jpx"), "Pillow with OpenJPEG", _JPEG2000_INSTALL),
    Format("HEIC/HEIF", (".heic", ".heif", ".hif"), "pillow-heif", "pip install pillow-heif"),
    Format("AVIF", (".avif",), "Pillow (11.3+) or pillow-avif-plugin", "pip install 'clipsort[avif]'"),
    Format("JPEG XL", (".jxl",), "pillow-jxl-plugin", "pip install 'clipsort[jxl]'"),
    Format("camera RAW", RAW_EXTENSIONS, "rawpy (LibRaw)", "pip install rawpy", raw=True),
    Format("MP4 video", (".mp4", ".m4v"), _VIDEO_READER, _VIDEO_INSTALL, video=True),
    Format("QuickTime video", (".mov", ".qt"), _VIDEO_READER, _VIDEO_INSTALL, video=True),
    Format("3GP video", (".3gp", ".3g2"), _VIDEO_READER, _VIDEO_INSTALL, video=True),
    Format("Matroska video", (".mkv",), _VIDEO_READER, _VIDEO_INSTALL, video=True),
    Format("WebM video", (".webm",), _VIDEO_READER, _VIDEO_INSTALL, video=True),
    Format("AVI video", (".avi",), _VIDEO_READER, _VIDEO_INSTALL, video=True),
)

_BY_EXTENSION = {ext: fmt for fmt in FORMATS for ext in fmt.extensions}

#: Every extension (lower case, with the dot) of a known image or video format.
KNOWN_EXTENSIONS = frozenset(_BY_EXTENSION)
#: Same-stem files that belong to a photo and travel with it: Apple's edit files and the video
#: half of a Live Photo (``IMG_0001.HEIC`` + ``IMG_0001.MOV``), which is not a clip of its own.
COMPANION_EXTENSIONS = (".aae", ".mov")
#: The extensions of the video formats.
VIDEO_EXTENSIONS = frozenset(ext for fmt in FORMATS if fmt.video for ext in fmt.extensions)


def format_of(name: str) -> Format | None:
    """The format a file name's extension says, None for names of no known image format."""
    return _BY_EXTENSION.get(os.path.splitext(name)[1].lower())


def is_raw(name: str) -> bool:
    fmt = format_of(name)
    return fmt is not None and fmt.raw


def is_video(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


@functools.cache
def available(fmt: Format) -> bool:
    """Whether this installation can decode ``fmt`` (its reader imports)."""
    if fmt.reader == "Pillow":
        return True
    if fmt.name == "JPEG 2000":
        return _pillow_has("jpg_2000")
    if fmt.name == "HEIC/HEIF":
        return _importable("pillow_heif")
    if fmt.name == "AVIF":
        return _pillow_has("avif") or _importable("pillow_avif")
    if fmt.name == "JPEG XL":
        return _importable("pillow_jxl")
    if fmt.raw:
        return _importable("rawpy")
    if fmt.video:
        return _importable("av")
    return False


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _pillow_has(feature: str) -> bool:
    try:
        from PIL import features

        return bool(features.check(feature))
    except (ImportError, ValueError):
        return False


_registered = False
_lock = threading.Lock()


def register_plugins() -> None:
    """Register the installed Pillow plugins with Pillow (once; thread-safe)."""
    global _registered
    if _registered:
        return
    with _lock:
        if _registered:
            return
        if _importable("pillow_heif"):
            try:
                from pillow_heif import register_heif_opener

                # Thumbnails let draft() decode a small embedded copy when the model needs few pixels.
                register_heif_opener(thumbnails=True)
            except Exception:  # noqa: BLE001 - a broken plugin makes its format unreadable, nothing worse
                pass
        for module in ("pillow_jxl", "pillow_avif"):
            if _importable(module) and not (module == "pillow_avif" and _pillow_has("avif")):
                try:
                    importlib.import_module(module)
                except Exception:  # noqa: BLE001
                    pass
        _registered = True


def status() -> list[dict[str, object]]:
    """One row per format: name, extensions, reader, whether it is readable here, what to install."""
    return [
        {
            "format": fmt.name,
            "extensions": list(fmt.extensions),
            "reader": fmt.reader,
            "readable": available(fmt),
            "install": "" if available(fmt) else fmt.install,
        }
        for fmt in FORMATS
    ]
