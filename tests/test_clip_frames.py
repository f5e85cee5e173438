"""A clip's way to its vectors (clipsort.model.clip_frames) and the frames the cache keeps:
embedded in one batch with photos, each clip's vector the normalised mean of its frames'; the
frames kept by content, checked where they enter, carried when clipsort rewrites a clip's
metadata, dropped when no file needs them; a Live Photo's video left to its photo."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from conftest import make_colour_photos

av = pytest.importorskip("av", reason="PyAV reads videos (a dependency: installed by the README's commands)")

from clips import shape_clip, write_clip  # noqa: E402
from PIL import Image  # noqa: E402
from shapes import make_picture  # noqa: E402

from clipsort.model.clip_frames import pooled  # noqa: E402
from clipsort.model.embed import Embedder  # noqa: E402
from clipsort.photos.decode import load_image  # noqa: E402
from clipsort.photos.discover import ImageRef, discover, live_photo_videos  # noqa: E402
from clipsort.photos.formats import FORMATS, available, format_of, is_video  # noqa: E402
from clipsort.photos.location import file_fingerprint  # noqa: E402
from clipsort.run.events import RunOptions  # noqa: E402
from clipsort.run.pipeline import embedded_photos, run_index  # noqa: E402
from clipsort.run.report import Report  # noqa: E402
from clipsort.store.cache import EmbeddingCache  # noqa: E402


def refs(*paths: Path) -> list[ImageRef]:
    return [ImageRef(p, p.stat().st_size, p.stat().st_mtime_ns) for p in paths]


def test_the_format_table_knows_the_video_containers_and_pyav_reads_them():
    videos = [fmt for fmt in FORMATS if fmt.video]
    extensions = {ext for fmt in videos for ext in fmt.extensions}
    assert {".mp4", ".mov", ".m4v", ".3gp", ".mkv", ".webm", ".avi"} <= extensions
    assert all(available(fmt) and fmt.reader == "PyAV (FFmpeg)" for fmt in videos)
    assert is_video("TRIP.MOV") and not is_video("photo.jpg") and not format_of("a.jpg").video


def test_clips_are_embedded_with_the_photos_of_their_batch(tmp_path: Path, colour_model):
    """Photos and clips mixed, in one batch: each gets its own vector, in order; a clip's vector is
    the normalised mean of its frames' vectors, which are kept with their times."""
    photos = sorted(make_colour_photos(tmp_path / "p", ["red", "blue"], 2, max_px=500))
    red = shape_clip(tmp_path / "red.mp4", "red", seed=1)
    blue = shape_clip(tmp_path / "blue.mov", "blue", seed=2)
    files = [photos[0], red, photos[1], blue]
    with EmbeddingCache(tmp_path / "cache.sqlite3") as cache:
        embedder = Embedder(colour_model.spec, "cpu", cache, loader=lambda spec, device, precision: colour_model)
        report = Report("index")
        chunks = list(embedded_photos(refs(*files), embedder, RunOptions(batch_size=8), report, _Silent()))
        got = {ref.path: vector for chunk in chunks for ref, vector in chunk}
        assert list(got) == files and not report.failures
        for path in (photos[0], photos[1]):
            alone = colour_model.encode_images([load_image(path, colour_model.min_side)])[0]
            assert np.allclose(got[path], alone, atol=2e-2)
        model_id = embedder.cache_model_id()
        kept = cache.frames(model_id, [file_fingerprint(red), file_fingerprint(blue)])
        for clip in (red, blue):
            times, vectors = kept[file_fingerprint(clip)]
            assert len(times) == len(vectors) == 4 and list(times) == sorted(times)  # 3 s: the fewest frames
            assert np.allclose(got[clip], pooled(vectors), atol=1e-3)
            assert abs(float(np.linalg.norm(got[clip])) - 1) < 1e-2
        labels = colour_model.encode_texts(["a photo of a red thing", "a photo of a blue thing"])
        assert (got[red] @ labels.T).argmax() == 0 and (got[blue] @ labels.T).argmax() == 1


def test_an_unchanged_clip_costs_a_lookup_and_a_copy_shares_its_frames(tmp_path: Path, colour_model, monkeypatch):
    clip = shape_clip(tmp_path / "lib" / "clip.mp4", "green", seed=3)
    with EmbeddingCache(tmp_path / "cache.sqlite3") as cache:
        embedder = Embedder(colour_model.spec, "cpu", cache, loader=lambda spec, device, precision: colour_model)
        first = run_index([tmp_path / "lib"], embedder)
        assert first.embedded == 1

        import clipsort.model.clip_frames as clip_frames

        def no_decoding(*args: object) -> None:
            raise AssertionError("an unchanged clip was decoded again")

        monkeypatch.setattr(clip_frames, "load_clip", no_decoding)
        copy = tmp_path / "lib" / "copy.mp4"
        copy.write_bytes(clip.read_bytes())
        again = Embedder(colour_model.spec, "cpu", cache, loader=lambda spec, device, precision: colour_model)
        second = run_index([tmp_path / "lib"], again)
        assert second.embedded == 0 and second.cached == 2 and not second.failures
        assert file_fingerprint(copy) in cache.frames(again.cache_model_id(), [file_fingerprint(copy)])


def test_frames_that_do_not_hold_up_are_not_used(tmp_path: Path):
    """A cache may come from elsewhere: frames whose times and vectors disagree in number, whose
    vectors have the wrong length or are not numbers, or whose times are not finite, are left out."""
    with EmbeddingCache(tmp_path / "cache.sqlite3") as cache:
        model_id = cache.model_id("m", "m")
        cache.expect_dimension(model_id, 4)
        good = np.eye(4, dtype=np.float32)[:2]
        cache.put_images(
            model_id,
            [(tmp_path / f"{n}.mp4", 1, 1, n.encode(), good[0], None) for n in ("good", "count", "nan", "short")],
            [(b"good", [0.5, 1.5], good), (b"count", [0.5], good)],  # the second is refused on the way in
        )
        with cache.db:
            rows = {
                b"nan": (np.array([0.5, 1.5], np.float32), np.full((2, 4), np.nan, np.float16)),
                b"short": (np.array([0.5, 1.5], np.float32), np.ones((2, 3), np.float16)),
                b"time": (np.array([0.5, np.inf], np.float32), good.astype(np.float16)),
            }
            for fingerprint, (times, vectors) in rows.items():
                cache.db.execute(
                    "INSERT INTO frames(model_id, fingerprint, times, vectors) VALUES(?, ?, ?, ?)",
                    (model_id, fingerprint, times.tobytes(), vectors.tobytes()),
                )
            cache.db.execute(
                "INSERT INTO frames(model_id, fingerprint, times, vectors) VALUES(?, ?, ?, ?)",
                (model_id, b"text", "not bytes", b"\x00" * 16),
            )
        kept = cache.frames(model_id, [b"good", b"count", b"nan", b"short", b"time", b"text"])
        assert list(kept) == [b"good"]
        assert np.allclose(kept[b"good"][0], [0.5, 1.5]) and np.allclose(kept[b"good"][1], good)


def test_frames_follow_a_retouched_clip_and_prune_drops_those_no_file_needs(tmp_path: Path):
    with EmbeddingCache(tmp_path / "cache.sqlite3") as cache:
        model_id = cache.model_id("m", "m")
        vectors = np.eye(4, dtype=np.float32)[:2]
        clip, gone = tmp_path / "clip.mp4", tmp_path / "gone.mp4"
        clip.write_bytes(b"x")
        cache.put_images(
            model_id,
            [(clip, 1, 1, b"before", vectors[0], None), (gone, 1, 1, b"gone", vectors[1], None)],
            [(b"before", [0.5, 1.5], vectors), (b"gone", [0.5, 1.5], vectors)],
        )
        assert cache.retouched(clip, (1, 1), (2, 2, b"after")) == 1
        assert b"after" in cache.frames(model_id, [b"after"])
        assert cache.prune() == 1  # gone.mp4 is not there
        count = cache.db.execute("SELECT fingerprint FROM frames ORDER BY fingerprint").fetchall()
        assert [bytes(r[0]) for r in count] == [b"after"]
        cache.clear()
        assert cache.db.execute("SELECT COUNT(*) FROM frames").fetchone()[0] == 0


def test_a_cache_from_before_videos_gains_the_frames_table(tmp_path: Path):
    path = tmp_path / "cache.sqlite3"
    with EmbeddingCache(path) as cache:
        cache.db.execute("DROP TABLE frames")
    with EmbeddingCache(path) as cache:
        assert cache.frames(cache.model_id("m", "m"), [b"x"]) == {}
    db = sqlite3.connect(path)
    assert db.execute("SELECT COUNT(*) FROM frames").fetchone()[0] == 0
    db.close()


def test_a_clip_read_as_one_picture_gives_its_middle_frame(tmp_path: Path):
    """Where one picture stands for a clip (a thumbnail, dupes' check): its middle frame."""
    colours = [(220, 30, 30), (30, 200, 30), (30, 30, 220)]
    clip = write_clip(tmp_path / "rgb.mp4", lambda t: Image.new("RGB", (160, 120), colours[int(t)]), 3.0, (160, 120))
    centre = np.asarray(load_image(clip, 64))[60, 80].astype(int)
    assert np.abs(centre - np.array(colours[1])).max() < 40


def test_a_live_photos_video_stays_its_photos_companion(tmp_path: Path):
    """IMG_1.HEIC + IMG_1.MOV: the video goes with the photo (not judged); a .mp4 beside a photo of
    its name, a .mov alone, and a .mov beside a photo elsewhere are clips of their own."""
    picture = make_picture("red", (120, 90), random.Random(1))
    for name in ("IMG_1.JPG", "IMG_2.jpg", "sub/IMG_3.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        picture.save(tmp_path / name)
    for name in ("IMG_1.MOV", "IMG_2.mp4", "IMG_3.mov", "IMG_4.MOV"):
        write_clip(tmp_path / name, lambda t: picture, 1.0, (120, 90))
    (tmp_path / "IMG_5.heic").write_bytes(b"a HEIC this installation may not read")
    write_clip(tmp_path / "IMG_5.mov", lambda t: picture, 1.0, (120, 90))
    found = list(discover([tmp_path]))
    heic = [r for r in found if r.path.suffix == ".heic"]
    kept, companions = live_photo_videos([r for r in found if r.path.suffix != ".heic"], heic)
    assert sorted(r.path.name for r in companions) == ["IMG_1.MOV", "IMG_5.mov"]
    assert {"IMG_2.mp4", "IMG_3.mov", "IMG_4.MOV", "IMG_1.JPG"} <= {r.path.name for r in kept}


class _Silent:
    def __getattr__(self, name: str):  # noqa: ANN204
        return lambda *args, **kwargs: None


def test_a_clip_of_frames_larger_than_the_limit_is_refused_before_decoding(tmp_path: Path):
    """The decoder holds several frames at full size: frames over --max-megapixels are named, as a
    photo over it is, and nothing is decoded."""
    from clipsort.errors import DecodeError
    from clipsort.photos.decode import load_clip, max_pixels, set_max_megapixels

    clip = shape_clip(tmp_path / "big.mp4", "red", size=(640, 480))
    before = max_pixels()
    set_max_megapixels(0.2)
    try:
        with pytest.raises(DecodeError, match=r"too large to decode safely: frames of 640x480 .*--max-megapixels"):
            load_clip(clip, 64)
    finally:
        set_max_megapixels(before / 1_000_000)
    assert len(load_clip(clip, 64).frames) == 4


def test_the_xmp_inside_a_clip_is_read_from_its_boxes_and_damage_reads_as_none(tmp_path: Path):
    """XMP in an MP4's uuid box and in a MOV's moov/udta/XMP_ box (where exiftool writes them) is
    found; a file cut anywhere, or whose box sizes lie, gives a packet or None, never an error."""
    from clipsort.photos.video import xmp_packet

    packet = b"<x:xmpmeta xmlns:x='adobe:ns:meta/'>clip</x:xmpmeta>"
    uuid = bytes.fromhex("BE7ACFCB97A942E89C71999491E3AFAC")
    box = (8 + 16 + len(packet)).to_bytes(4, "big") + b"uuid" + uuid + packet
    mp4 = shape_clip(tmp_path / "a.mp4", "red").read_bytes()
    (tmp_path / "tagged.mp4").write_bytes(mp4 + box)
    assert xmp_packet(tmp_path / "tagged.mp4", 1 << 20) == packet
    assert xmp_packet(tmp_path / "tagged.mp4", 10) is None  # over the limit: not read
    leaf = (8 + len(packet)).to_bytes(4, "big") + b"XMP_" + packet
    udta = (8 + len(leaf)).to_bytes(4, "big") + b"udta" + leaf
    moov = (8 + len(udta)).to_bytes(4, "big") + b"moov" + udta
    (tmp_path / "tagged.mov").write_bytes(b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  " + moov)
    assert xmp_packet(tmp_path / "tagged.mov", 1 << 20) == packet
    assert xmp_packet(tmp_path / "a.mp4", 1 << 20) is None
    data = (tmp_path / "tagged.mp4").read_bytes()
    rng = random.Random(5)
    for cut in [*range(0, 64), *rng.sample(range(64, len(data)), 40)]:
        (tmp_path / "cut.mp4").write_bytes(data[:cut])
        assert xmp_packet(tmp_path / "cut.mp4", 1 << 20) in (None, packet)
    lying = bytearray(data)
    lying[0:4] = (1 << 31).to_bytes(4, "big")
    (tmp_path / "lying.mp4").write_bytes(bytes(lying))
    assert xmp_packet(tmp_path / "lying.mp4", 1 << 20) is None


def test_a_clips_vector_is_the_unit_mean_of_its_frames_and_never_nan():
    """Frames that show different things average to a shorter vector: it is made unit length again,
    as a photo's is, so that clips and photos score alike; frames that cancel out give zeros (a
    clip that scores nothing), never NaN."""
    apart = pooled(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32))
    assert np.allclose(apart, [0.7071, 0.7071, 0.0], atol=1e-3)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a division by zero would warn
        cancelled = pooled(np.array([[1.0, 0.0], [-1.0, 0.0]], np.float32))
    assert np.isfinite(cancelled).all() and not cancelled.any()


def test_the_picture_handed_on_for_a_clip_is_its_middle_frame(tmp_path: Path, colour_model):
    """A review page's thumbnail of a clip (Embedder.on_picture) is its middle frame: of five frames
    over ten seconds, the one at five seconds."""
    colours = [(220, 30, 30), (30, 200, 30), (30, 30, 220), (220, 220, 30), (200, 30, 200)]
    clip = write_clip(tmp_path / "five.mp4", lambda t: Image.new("RGB", (160, 120), colours[int(t // 2)]), 10.0,
                      (160, 120), keyint=24)  # fmt: skip
    embedder = Embedder(colour_model.spec, "cpu", None, loader=lambda spec, device, precision: colour_model)
    handed: list = []
    embedder.on_picture = lambda path, picture: handed.append(picture)
    list(embedded_photos(refs(clip), embedder, RunOptions(), Report("index"), _Silent()))
    centre = np.asarray(handed[0].convert("RGB"))[handed[0].height // 2, handed[0].width // 2].astype(int)
    assert len(handed) == 1 and np.abs(centre - np.array(colours[2])).max() < 40


def test_a_rewritten_clip_replaces_the_original_only_when_its_streams_are_the_same(tmp_path: Path):
    """`tag --into photo` accepts exiftool's rewrite of a clip only when every stream's packets are
    the same bytes at the same times: metadata alone may change. Another picture, a re-encoding, a
    cut-short copy or a file that is not a clip is refused, never an error."""
    from clipsort.photos.image_data import same_picture

    clip = shape_clip(tmp_path / "a.mp4", "red", seed=1)
    tagged = tmp_path / "tagged.mp4"
    tagged.write_bytes(clip.read_bytes() + b"\x00\x00\x00\x10free" + b"\x00" * 8)  # a box more: metadata only
    assert same_picture(clip, tagged)
    other = shape_clip(tmp_path / "b.mp4", "red", seed=2)
    reencoded = shape_clip(tmp_path / "c.mp4", "red", seed=1, bit_rate=100_000)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a clip" * 100)
    assert not any(same_picture(clip, candidate) for candidate in (other, reencoded, cut, junk))
