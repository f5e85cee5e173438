"""Video clips read for their frames (clipsort.photos.video): clips made here with PyAV (H.264 in MP4
and MOV), frames spread over the clip whatever its keyframes, turned upright, scaled down, their
creation time in local time; bad clips named, and FFmpeg silent."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av", reason="PyAV reads videos (a dependency: installed by the README's commands)")

from clips import write_clip  # noqa: E402

from clipsort.photos.video import FRAMES, UnreadableVideo, frames_for, read_clip  # noqa: E402

RED, BLUE, GREEN, GREY = (220, 30, 30), (30, 30, 220), (30, 200, 30), (128, 128, 128)


def make_clip(
    path: Path,
    seconds: float = 3.0,
    size: tuple[int, int] = (320, 240),
    colour_at=lambda t: GREY,  # noqa: ANN001 - a function of the time in seconds
    **options,  # noqa: ANN003 - write_clip's
) -> Path:
    """A clip whose frames are plain ``colour_at(t)`` with a green band on the left (to see turns)."""

    def picture_at(t: float) -> np.ndarray:
        pixels = np.zeros((size[1], size[0], 3), np.uint8)
        pixels[:] = colour_at(t)
        pixels[:, : size[0] // 8] = GREEN
        return pixels

    return write_clip(path, picture_at, seconds, size, **options)


def centre(picture) -> np.ndarray:  # noqa: ANN001
    pixels = np.asarray(picture.convert("RGB")).astype(int)
    return pixels[pixels.shape[0] // 2, pixels.shape[1] // 2]


def near(pixel: np.ndarray, colour: tuple[int, int, int]) -> bool:
    return bool(np.abs(pixel - np.array(colour)).max() < 40)


@pytest.mark.parametrize("container", [".mp4", ".mov"])
def test_frames_are_spread_over_the_clip_even_with_one_keyframe(tmp_path: Path, container: str):
    """A clip red only in its last second, with a single keyframe at its start: a frame of the last
    second is among those read (the reader decodes forward from the keyframe, not only keyframes)."""
    clip = read_clip(make_clip(tmp_path / f"late{container}", 4.0, colour_at=lambda t: RED if t >= 3 else GREY))
    times = [f.time for f in clip.frames]
    assert (
        len(clip.frames) == frames_for(4.0) == 4
        and times == sorted(times)
        and 0 <= times[0] < 1
        and 3.5 <= times[-1] < 4
    )
    assert clip.duration == pytest.approx(4.0, abs=0.1)
    assert [near(centre(f.picture), RED) for f in clip.frames] == [t >= 3 for t in times]
    assert all(near(centre(f.picture), GREY) for f in clip.frames if f.time < 3)


@pytest.mark.parametrize(("rotation", "band"), [(90, "bottom"), (-90, "top"), (180, "right")])
def test_frames_are_turned_upright_as_the_clip_says(tmp_path: Path, rotation: int, band: str):
    """A phone held upright writes a landscape stream and a display rotation: the frames come
    upright (as FFmpeg shows them), the grey-green band stored on the left where the turn puts it."""
    clip = read_clip(make_clip(tmp_path / "turned.mp4", 1.0, rotation=rotation))
    pixels = np.asarray(clip.frames[0].picture.convert("RGB")).astype(int)
    height, width = pixels.shape[:2]
    assert (width, height) == ((240, 320) if rotation % 180 else (320, 240))
    edges = {"top": pixels[2, width // 2], "bottom": pixels[-3, width // 2], "left": pixels[height // 2, 2],
             "right": pixels[height // 2, -3]}  # fmt: skip
    assert near(edges[band], GREEN) and sum(near(p, GREEN) for p in edges.values()) == 1


@pytest.mark.parametrize(
    ("name", "codec"),
    [("clip.mkv", "libx264"), ("clip.webm", "libvpx-vp9"), ("clip.avi", "mpeg4"), ("clip.3gp", "libx264"),
     ("clip.m4v", "libx264"), ("clip.mov", "hevc")],
)  # fmt: skip
def test_the_containers_and_codecs_phones_and_cameras_write_are_read(tmp_path: Path, name: str, codec: str):
    clip = read_clip(make_clip(tmp_path / name, 1.0, colour_at=lambda t: BLUE, codec=codec, created=None))
    assert len(clip.frames) >= 4 and all(near(centre(f.picture), BLUE) for f in clip.frames)


def test_big_frames_are_scaled_down_as_they_are_converted(tmp_path: Path):
    clip = read_clip(make_clip(tmp_path / "big.mp4", 0.5, size=(1920, 1080)), min_side=224)
    assert min(clip.frames[0].picture.size) == 448 and clip.frames[0].picture.size[0] == 796
    assert min(read_clip(tmp_path / "big.mp4").frames[0].picture.size) == 1080  # no size asked: as stored


def test_the_creation_time_is_the_local_time(tmp_path: Path, monkeypatch):
    """QuickTime's creation_time is UTC; people and folders mean the local time of the place."""
    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    try:
        clip = read_clip(make_clip(tmp_path / "dated.mov", 0.5, created="2024-07-01T10:00:00.000000Z"))
        assert clip.created == datetime(2024, 7, 1, 12, 0, 0)
        undated = read_clip(make_clip(tmp_path / "undated.mp4", 0.5, created=None))
        assert undated.created is None
        zero = read_clip(make_clip(tmp_path / "zero.mov", 0.5, created="1904-01-01T00:00:00.000000Z"))
        assert zero.created is None
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_bad_clips_are_named_and_ffmpeg_stays_silent(tmp_path: Path, capfd):
    """Audio only, empty, not a video, cut short before its first frame: each a short reason; a clip
    cut short after some frames gives those; FFmpeg prints nothing of its own."""
    audio = tmp_path / "audio.m4a.mp4"
    out = av.open(str(audio), "w")
    stream = out.add_stream("aac", rate=44100)
    samples = np.zeros((1, 1024), np.float32)
    for i in range(20):
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 44100, i * 1024
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mov").write_text("not a video\n" * 100)
    whole = make_clip(tmp_path / "whole.mp4", 3.0, colour_at=lambda t: RED, keyint=24).read_bytes()
    (tmp_path / "head.mp4").write_bytes(whole[:2000])
    capfd.readouterr()
    for name, said in (("audio.m4a.mp4", "no video stream"), ("empty.mp4", "not a video"),
                       ("text.mov", "not a video"), ("head.mp4", "")):  # fmt: skip
        with pytest.raises(UnreadableVideo, match=said or None):
            read_clip(tmp_path / name)
    # moov atom first (as PyAV writes it here is not the case): cut the media data, keep the index
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    try:
        frames = read_clip(cut).frames
    except UnreadableVideo as exc:
        assert str(exc)  # named
    else:
        assert frames and all(near(centre(f.picture), RED) for f in frames)
    out_err = capfd.readouterr()
    assert out_err.out == "" and out_err.err == ""


def test_a_clip_whose_duration_lies_is_read_in_bounded_time(tmp_path: Path):
    """The container's headers say ten hours; the clip lasts two seconds: its frames are taken over
    the two seconds its samples last, not over ten declared hours."""
    path = make_clip(tmp_path / "liar.mp4", 2.0, colour_at=lambda t: BLUE, keyint=24)
    data = bytearray(path.read_bytes())
    # version 0 headers, 32-bit fields after the type: version+flags, created, modified, then
    # mvhd and mdhd: timescale, duration; tkhd: track id, reserved, duration (in mvhd's timescale)
    movie = data.find(b"mvhd")
    movie_scale = int.from_bytes(data[movie + 16 : movie + 20], "big")
    data[movie + 20 : movie + 24] = (10 * 3600 * movie_scale).to_bytes(4, "big")
    track = data.find(b"tkhd")
    data[track + 24 : track + 28] = (10 * 3600 * movie_scale).to_bytes(4, "big")
    media = data.find(b"mdhd")
    media_scale = int.from_bytes(data[media + 16 : media + 20], "big")
    data[media + 20 : media + 24] = (10 * 3600 * media_scale).to_bytes(4, "big")
    path.write_bytes(bytes(data))
    clip = read_clip(path)
    assert clip.duration == pytest.approx(2.0, abs=0.1)  # the frames' own times (FFmpeg's sample table) win
    assert clip.frames and all(f.time < 2.5 for f in clip.frames)
    assert all(near(centre(f.picture), BLUE) for f in clip.frames)


def test_a_phone_clip_gives_its_keyframes_one_frame_decoded_for_each_time(tmp_path: Path):
    """Keyframes every 2 s, as phones write them, over 16 s: each of the five times takes the keyframe
    before it (within half the 3.2 s each frame stands for) instead of decoding forward to it."""
    clip = read_clip(make_clip(tmp_path / "phone.mp4", 16.0, size=(160, 120), keyint=48, rate=24))
    targets = [16.0 * (i + 0.5) / FRAMES for i in range(FRAMES)]
    assert frames_for(16.0) == FRAMES == len(clip.frames)
    for frame, target in zip(clip.frames, targets, strict=True):
        assert round(frame.time, 3) % 2 == 0 and target - 16 / FRAMES / 2 <= frame.time <= target


def test_a_clip_with_one_keyframe_is_decoded_once_through_to_its_last_times(tmp_path: Path):
    """20 s and a single keyframe: the times after it are reached in one pass from that keyframe
    (not by decoding from the start again for each), so the last one is still reached."""
    clip = read_clip(make_clip(tmp_path / "one.mp4", 20.0, size=(160, 120), keyint=100_000, rate=24,
                               colour_at=lambda t: RED if t >= 17 else GREY))  # fmt: skip
    assert len(clip.frames) == FRAMES and clip.frames[-1].time > 17 and near(centre(clip.frames[-1].picture), RED)
