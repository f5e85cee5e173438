"""URLs as PATHs (clipsort.photos.remote): named like paths, keyed by URL in the cache, refused where they
cannot work yet. The Ray engine's reading and writing of them is in test_engine_ray.py."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from conftest import COLOUR_MODEL, run_cli

from clipsort.photos.location import (
    cheap_stat,
    file_fingerprint,
    fingerprint_before_decoding,
    location,
    missing,
    path_key,
)
from clipsort.photos.remote import RemotePath
from clipsort.writes.sidecar import json_path, xmp_path


def test_a_url_has_the_parts_of_a_path_the_pipeline_uses():
    photo = location("s3://bucket/2019/summer/IMG_0001.JPG")
    assert isinstance(photo, RemotePath) and str(photo) == "s3://bucket/2019/summer/IMG_0001.JPG"
    assert (photo.name, photo.suffix, photo.stem) == ("IMG_0001.JPG", ".JPG", "IMG_0001")
    assert photo.parent == RemotePath("s3://bucket/2019/summer/")
    assert photo.relative_to(RemotePath("s3://bucket/2019")) == PurePosixPath("summer/IMG_0001.JPG")
    assert str(xmp_path(photo)) == "s3://bucket/2019/summer/IMG_0001.JPG.xmp"
    assert str(xmp_path(photo, "stem")) == "s3://bucket/2019/summer/IMG_0001.xmp"
    assert str(json_path(photo)) == "s3://bucket/2019/summer/IMG_0001.JPG.clipsort.json"
    assert location("photos/2019") == Path("photos/2019")


def test_the_cache_keys_a_url_by_itself_and_scans_below_it():
    assert path_key(RemotePath("s3://bucket/a/b.jpg")) == b"s3://bucket/a/b.jpg"
    assert path_key("s3://bucket/a") == b"s3://bucket/a"
    assert path_key(Path("/photos/a.jpg")) == b"/photos/a.jpg"


def test_urls_need_the_ray_engine_and_sort_refuses_them(capsys, labels_file):
    model = ["--model", str(COLOUR_MODEL)]
    code, _, err = run_cli(capsys, "index", "s3://bucket/photos", *model)
    assert code == 2 and "s3://bucket/photos: URLs are read by the Ray engine: add --engine ray" in err
    code, _, err = run_cli(capsys, "sort", "s3://bucket/photos", "-l", str(labels_file), *model, "--engine", "ray")
    assert code == 2 and "sort cannot move photos in object storage yet" in err
    assert "Traceback" not in err


def test_a_fingerprint_is_the_size_and_the_first_and_last_64_kib_as_caches_of_every_version_hold_it(tmp_path):
    """The fingerprint is kept in caches: it is computed here from its documented rule, for files
    shorter than, exactly and longer than one 64 KiB block, and only the bytes it covers change it."""
    import hashlib
    import random

    def by_the_rule(data: bytes) -> bytes:
        digest = hashlib.blake2b(digest_size=16)
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data[:65536])
        if len(data) > 65536:
            digest.update(data[max(len(data) - 65536, 65536) :][:65536])
        return digest.digest()

    rng = random.Random(3)
    for size in (0, 1000, 65536, 65537, 100_000, 300_000):
        data = bytes(rng.getrandbits(8) for _ in range(size))
        path = tmp_path / f"{size}.jpg"
        path.write_bytes(data)
        assert file_fingerprint(path) == by_the_rule(data), size
        assert fingerprint_before_decoding(path) == by_the_rule(data)
    middle = bytearray((tmp_path / "300000.jpg").read_bytes())
    middle[150_000] ^= 1  # outside both blocks: a copy with an edit there counts as the same content
    (tmp_path / "edited.jpg").write_bytes(bytes(middle))
    assert file_fingerprint(tmp_path / "edited.jpg") == file_fingerprint(tmp_path / "300000.jpg")
    assert fingerprint_before_decoding(RemotePath("s3://bucket/a.jpg")) is None  # read where it is decoded


def test_a_cheap_stat_is_one_stat_of_a_local_file_and_none_elsewhere(tmp_path):
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"x" * 10)
    st = photo.stat()
    assert cheap_stat(photo) == (10, st.st_mtime_ns) and cheap_stat(str(photo)) == (10, st.st_mtime_ns)
    assert cheap_stat(tmp_path / "missing.jpg") is None
    assert cheap_stat(RemotePath("s3://bucket/a.jpg")) is None and cheap_stat("s3://bucket/a.jpg") is None
    assert missing([photo, tmp_path / "gone.jpg", RemotePath("s3://bucket/x")]) == [str(tmp_path / "gone.jpg")]
