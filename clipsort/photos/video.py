"""The frames a video clip is judged by, read with PyAV (FFmpeg's decoders, shipped in its wheels).

A clip is not decoded in full. It is judged by a few frames (:func:`frames_for`: one every
:data:`SECONDS_PER_FRAME` seconds, :data:`FEWEST_FRAMES` to :data:`FRAMES`), at the middle of as
many equal spans. For each time the reader seeks to the keyframe before it; when that keyframe
lies within half a span of the time (a phone writes one every second or two) it is the frame
taken: one frame decoded. Otherwise the reader decodes forward to the time, at most
:data:`DECODE_LIMIT` frames, and times that start from the same keyframe (the container's index
says which) are reached in one pass: a clip with one keyframe is decoded once through and still
seen to its last second. Frames are scaled down as they are converted (a 4K frame is never made
into a 4K picture when the model sees 224 pixels), turned upright as the clip's display matrix
says (a phone held upright writes a landscape stream and a rotation), and duplicates (two times
that land on one frame) are kept once.

Bad clips are named, never a crash or a run without end: no video stream (audio only), no
frame that decodes (zero length, cut short before its first keyframe), headers that declare
ten hours for a clip of seconds (FFmpeg takes the duration from the frames' own table), ten
hours long (still :data:`FRAMES` seeks). The clip's creation time (QuickTime
``creation_time``, UTC as the format defines it) is given in the local time, as cameras and
phones mean it.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

#: Frames taken from a clip, spread over it: one every SECONDS_PER_FRAME, from FEWEST_FRAMES to
#: FRAMES (a minute's clip then costs about five photos' work on a CPU: docs/performance.md).
FRAMES = 5
FEWEST_FRAMES = 4
SECONDS_PER_FRAME = 2.0
#: Frames decoded at most after each seek before the frame reached is taken.
DECODE_LIMIT = 120
#: FFmpeg's time unit for a container's duration.
_AV_TIME_BASE = 1_000_000
_LOG_LOCK = threading.Lock()


class UnreadableVideo(Exception):  # noqa: N818 - a condition, named as the photos' ones are
    """A clip with no frame to judge it by; the message says why, in a few words."""


@dataclass(frozen=True)
class Frame:
    """One frame of a clip: its time in seconds from the start, and its picture (RGB, upright)."""

    time: float
    picture: Any


@dataclass(frozen=True)
class Clip:
    """What a clip gives: its frames in time order, its duration as declared (None when it
    declares none) and its creation time in local time (None when it has none)."""

    frames: tuple[Frame, ...]
    duration: float | None
    created: datetime | None


def read_clip(path: Path, min_side: int | None = None, count: int | None = None, max_pixels: int | None = None) -> Clip:
    """The frames of ``path`` (see the module), each scaled so its short side is at least
    ``min_side`` (None: as stored); ``count`` frames (None: :func:`frames_for` its duration); a clip
    whose frames are larger than ``max_pixels`` is refused before any is decoded (the decoder
    holds several at full size). Raises :class:`UnreadableVideo`."""
    av = _pyav()
    try:
        container = av.open(str(path), metadata_errors="replace")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise UnreadableVideo(_reason(exc)) from None
    with container:
        if not container.streams.video:
            raise UnreadableVideo("no video stream (audio only?)")
        stream = container.streams.video[0]
        pixels = (stream.width or 0) * (stream.height or 0)
        if max_pixels and pixels > max_pixels:
            raise UnreadableVideo(
                f"too large to decode safely: frames of {stream.width}x{stream.height} are"
                f" {pixels / 1e6:.0f} megapixels (limit {max_pixels / 1e6:.0f}; see --max-megapixels)"
            )
        # slice threads: a frame decoded after a seek comes out at once (frame threads hold a frame
        # per thread in flight first); measured faster on 2 cores, alone and in whole runs
        stream.thread_type = "SLICE"
        duration = _duration(container, stream)
        wanted = count or frames_for(duration)
        frames: dict[int | None, Frame] = {}
        # half the span each frame stands for (as when the clip is judged, when fewer are asked:
        # the one frame that stands for a clip is its middle one, not its first keyframe)
        tolerance = (duration or 0.0) / max(wanted, frames_for(duration)) / 2
        for group in _plan(_targets(duration, wanted), _keyframes(stream), tolerance):
            try:
                found = _walk(container, stream, group, tolerance)
            except (av.error.FFmpegError, OSError, ValueError, MemoryError):
                found = []  # cut short here: the other times may still decode
            for target, frame in found:
                if frame.pts not in frames:
                    frames[frame.pts] = Frame(_seconds(frame, target), _picture(frame, min_side))
        if not frames:
            raise UnreadableVideo("no frame could be decoded (empty or cut short)")
        created = _created(container.metadata)
    return Clip(tuple(sorted(frames.values(), key=lambda f: f.time)), duration, created)


@dataclass(frozen=True)
class ClipFacts:
    """What a clip's container says of it: its creation time (local time, None when it has none),
    and the camera or phone that made it where the container names them."""

    created: datetime | None
    make: str | None = None
    model: str | None = None


#: Container metadata keys naming the maker and model (Apple's QuickTime keys, Android's, plain ones).
_MAKE_KEYS = ("com.apple.quicktime.make", "com.android.manufacturer", "make")
_MODEL_KEYS = ("com.apple.quicktime.model", "com.android.model", "model")


def read_facts(path: Path) -> ClipFacts:
    """The clip's :class:`ClipFacts` from its container's header (no frame decoded). Never raises:
    a clip that cannot be opened has no facts."""
    try:
        av = _pyav()
        with av.open(str(path), metadata_errors="replace") as container:
            metadata = dict(container.metadata or {})
            for stream in container.streams:  # MOV keeps creation_time in its tracks too
                for key, value in (stream.metadata or {}).items():
                    metadata.setdefault(key, value)
    except Exception:  # noqa: BLE001 - metadata is optional; the frames say whether the clip reads
        return ClipFacts(None)
    make = next((metadata[k].strip() for k in _MAKE_KEYS if metadata.get(k, "").strip()), None)
    model = next((metadata[k].strip() for k in _MODEL_KEYS if metadata.get(k, "").strip()), None)
    return ClipFacts(_created(metadata), make, model)


def dimensions(path: Path) -> tuple[int, int] | None:
    """The clip's frame size as stored (width, height; its display rotation aside), from its
    header; None for a file that is not a readable clip."""
    try:
        av = _pyav()
        with av.open(str(path), metadata_errors="replace") as container:
            stream = container.streams.video[0]
            size = (int(stream.width), int(stream.height))
    except Exception:  # noqa: BLE001 - unreadable: no size
        return None
    return size if min(size) > 0 else None


def streams_digest(path: Path) -> bytes:
    """A digest of every stream of the clip (its codec parameters, and each packet's bytes and
    times, in the order stored): the same for two files that differ only in their metadata, as
    when exiftool has written XMP into a clip. Nothing is decoded. Raises ValueError for a file
    that is not a readable clip."""
    import hashlib

    av = _pyav()
    digest = hashlib.sha256()
    try:
        with av.open(str(path), metadata_errors="replace") as container:
            for stream in container.streams:
                digest.update(repr((stream.index, stream.type, stream.codec_context.name)).encode())
                digest.update(bytes(stream.codec_context.extradata or b""))
            for packet in container.demux():
                if packet.size == 0 and packet.pts is None:
                    continue  # the flush packet demux ends each stream with
                digest.update(repr((packet.stream.index, packet.pts, packet.dts, packet.is_keyframe)).encode())
                digest.update(bytes(packet))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise ValueError(_reason(exc)) from None
    return digest.digest()


#: The UUID of the box that holds XMP in MP4 files (Adobe's XMP specification, part 3).
_XMP_UUID = bytes.fromhex("BE7ACFCB97A942E89C71999491E3AFAC")


def xmp_packet(path: Path, limit: int) -> bytes | None:
    """The XMP packet inside an MP4, MOV or 3GP clip (a top-level ``uuid`` box, or ``moov/udta/XMP_``
    where QuickTime keeps it), None when it has none, it is larger than ``limit`` bytes or the file
    cannot be read. Only box headers are read on the way."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, 2)
            for kind, start, end in iso_boxes(handle, 0, size):
                if kind == b"uuid" and end - start >= 16:
                    handle.seek(start)
                    if handle.read(16) == _XMP_UUID:
                        return _payload(handle, start + 16, end, limit)
                elif kind == b"moov":
                    for inner, inner_start, inner_end in iso_boxes(handle, start, end):
                        if inner == b"udta":
                            for leaf, leaf_start, leaf_end in iso_boxes(handle, inner_start, inner_end):
                                if leaf == b"XMP_":
                                    return _payload(handle, leaf_start, leaf_end, limit)
    except (OSError, ValueError):
        return None
    return None


def iso_boxes(handle: Any, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """The (type, payload start, payload end) of the ISO base media boxes (MP4, MOV, CR3, HEIF)
    between ``start`` and ``end`` of an open file; a box that does not fit ends the list."""
    found: list[tuple[bytes, int, int]] = []
    at = start
    while at + 8 <= end and len(found) < 10_000:
        handle.seek(at)
        header = handle.read(16)
        if len(header) < 8:
            break
        size, kind = int.from_bytes(header[:4], "big"), header[4:8]
        body = at + 8
        if size == 1 and len(header) == 16:  # a 64-bit size follows
            size, body = int.from_bytes(header[8:16], "big"), at + 16
        elif size == 0:  # to the end
            size = end - at
        if size < body - at or at + size > end:
            break  # a box that does not fit: the rest is not read
        found.append((kind, body, at + size))
        at += size
    return found


def _payload(handle: Any, start: int, end: int, limit: int) -> bytes | None:
    if end - start > limit:
        return None
    handle.seek(start)
    data = handle.read(end - start)
    return data if data.strip(b"\x00 \r\n\t") else None


def frames_for(duration: float | None) -> int:
    """How many frames a clip of ``duration`` seconds is judged by: one every
    :data:`SECONDS_PER_FRAME` seconds, at least :data:`FEWEST_FRAMES`, at most :data:`FRAMES`."""
    if not duration:
        return 1
    return max(FEWEST_FRAMES, min(FRAMES, math.ceil(duration / SECONDS_PER_FRAME)))


def _keyframes(stream: Any) -> list[float]:
    """The times of the stream's keyframes from the container's index (MP4 and MOV have one from
    the start; others may not: then none, and each time is sought on its own)."""
    try:
        entries = stream.index_entries
        base = stream.time_base
        if base is None:
            return []
        return sorted({float(e.timestamp * base) for e in entries if e.is_keyframe and e.timestamp is not None})
    except (AttributeError, TypeError, ValueError):
        return []


def _plan(targets: list[float], keyframes: list[float], tolerance: float) -> list[list[float]]:
    """The times in groups, each reached from one seek: a time whose keyframe before it (in the
    container's index) is more than ``tolerance`` earlier joins the previous time's group when both
    start from that keyframe, so a clip with few keyframes is decoded forward once, not from its
    first keyframe again for every time. Without an index every time is a group of its own."""
    groups: list[list[float]] = []
    starts: list[float | None] = []
    for target in targets:
        before = max((k for k in keyframes if k <= target), default=None) if keyframes else None
        far = before is None or target - before > tolerance
        if far and keyframes and groups and starts[-1] == before:
            groups[-1].append(target)
        else:
            groups.append([target])
            starts.append(before if far else None)
    return groups


def _walk(container: Any, stream: Any, targets: list[float], tolerance: float) -> list[tuple[float, Any]]:
    """Seek to the keyframe before the first of ``targets`` and take it when it is within
    ``tolerance`` of that time (one frame decoded), else decode forward, taking the first frame at
    or after each time: at most :data:`DECODE_LIMIT` frames a time, then the frame reached."""
    first = targets[0]
    if stream.time_base is not None and first > 0:
        container.seek(int(first / stream.time_base), stream=stream, backward=True, any_frame=False)
    else:
        container.seek(0)
    found: list[tuple[float, Any]] = []
    pending = list(targets)
    budget = DECODE_LIMIT * len(pending)
    last = None
    for decoded, frame in enumerate(container.decode(stream)):
        if decoded == 0 and (frame.time is None or frame.time >= first - tolerance):
            found.append((pending.pop(0), frame))  # the keyframe is near enough
        last = frame
        while pending and (frame.time is None or frame.time >= pending[0]):
            found.append((pending.pop(0), frame))
        if not pending or decoded >= budget:
            break
    if pending and last is not None:
        found.append((pending[0], last))
    return found


def _pyav() -> Any:
    try:
        import av
    except ImportError:
        raise UnreadableVideo("videos need PyAV: pip install av") from None
    with _LOG_LOCK:
        av.logging.set_level(None)  # FFmpeg's own lines stay off clipsort's stderr; errors are raised
    return av


def _reason(exc: BaseException) -> str:
    text = str(exc).split(": '", 1)[0].strip() or type(exc).__name__
    return f"not a video FFmpeg can read ({text})"


def _duration(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / _AV_TIME_BASE
    return None


def _targets(duration: float | None, count: int) -> list[float]:
    """The times to take frames at: the middle of ``count`` equal spans, or the start when the
    duration is unknown."""
    if not duration:
        return [0.0]
    return [duration * (i + 0.5) / count for i in range(count)]


def _seconds(frame: Any, target: float) -> float:
    return float(frame.time) if frame.time is not None else target


def _picture(frame: Any, min_side: int | None) -> Any:
    """The frame as an upright RGB picture, scaled down as it is converted when it is bigger than
    ``min_side`` needs."""
    from PIL import Image

    width, height = frame.width, frame.height
    if min_side and min(width, height) > 2 * min_side:
        scale = 2 * min_side / min(width, height)  # twice the model's size: its own resize does the rest
        width, height = max(2, round(width * scale)), max(2, round(height * scale))
    picture = frame.to_image(width=width, height=height)
    turn = int(round(getattr(frame, "rotation", 0) or 0)) % 360
    # the display matrix turns counter-clockwise by ``rotation`` degrees to show the frame upright
    transposes = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}
    if turn in transposes:
        picture = picture.transpose(transposes[turn])
    return picture


def _created(metadata: dict[str, str]) -> datetime | None:
    """The container's ``creation_time`` (ISO 8601, UTC) in local time, None when it has none or
    it is not a date (or the zero date some cameras write)."""
    text = (metadata or {}).get("creation_time", "").strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.year < 1971:  # QuickTime's zero (1904) or a camera that never set its clock
        return None
    if moment.tzinfo is None:
        from datetime import timezone

        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone().replace(tzinfo=None)
