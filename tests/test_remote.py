"""URLs as PATHs (clipsort.photos.remote): named like paths, keyed by URL in the cache, refused where they
cannot work yet. The Ray engine's reading and writing of them is in test_engine_ray.py."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from conftest import COLOUR_MODEL, run_cli

from clipsort.photos.location import location, path_key
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
