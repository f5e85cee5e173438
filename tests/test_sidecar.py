"""XMP and JSON sidecars: the three keyword fields, merging, idempotency, atomic writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from clipsort.errors import SidecarError
from clipsort.labels.label_set import parse_labels
from clipsort.photos import location as location_module
from clipsort.writes import sidecar as sidecar_module
from clipsort.writes.sidecar import (
    Keywords,
    holds_clipsort_keywords,
    keywords_for,
    merge_xmp,
    read_keywords,
    write_json,
    write_xmp,
    xmp_path,
)

EXIFTOOL = shutil.which("exiftool")
needs_exiftool = pytest.mark.skipif(EXIFTOOL is None, reason="exiftool is not installed")

DARKTABLE = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
    xmlns:darktable="http://darktable.sf.net/"
   xmp:Rating="4"
   xmpMM:DerivedFrom="IMG_0001.jpg"
   darktable:xmp_version="5"
   darktable:history_end="2">
   <dc:subject>
    <rdf:Bag>
     <rdf:li>vacation</rdf:li>
     <rdf:li>red</rdf:li>
    </rdf:Bag>
   </dc:subject>
   <lr:hierarchicalSubject>
    <rdf:Bag>
     <rdf:li>places|Italy|Rome</rdf:li>
    </rdf:Bag>
   </lr:hierarchicalSubject>
   <darktable:history>
    <rdf:Seq>
     <rdf:li darktable:operation="exposure" darktable:enabled="1" darktable:params="0000000000"/>
     <rdf:li darktable:operation="colorin" darktable:enabled="1" darktable:params="gz48eJzjZBgFowABAA=="/>
    </rdf:Seq>
   </darktable:history>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


def kw(*names: str, root: str = "clipsort"):
    labels = parse_labels("\n".join(names) + "\n")
    return keywords_for(labels.labels, root)


def exiftool(path: Path) -> dict:
    out = subprocess.run(
        [EXIFTOOL, "-json", "-struct", "-XMP:all", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out)[0]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def test_keywords_for_hierarchical_labels():
    keywords = kw("animals/dog", "sunset", root="clipsort")
    assert keywords.subjects == ("dog", "sunset")
    assert keywords.hierarchical == ("clipsort|animals|dog", "clipsort|sunset")
    assert keywords.tags_list == ("clipsort/animals/dog", "clipsort/sunset")
    assert kw("animals/dog", root="").hierarchical == ("animals|dog",)


@needs_exiftool
def test_exiftool_reads_the_three_fields_of_a_new_sidecar(tmp_path: Path):
    photo = tmp_path / "p.jpg"
    sidecar = write_xmp(photo, kw("animals/dog", "beach"), "clipsort", "tiny")
    assert sidecar == tmp_path / "p.jpg.xmp"
    tags = exiftool(sidecar)
    assert as_list(tags["Subject"]) == ["dog", "beach"]
    assert as_list(tags["HierarchicalSubject"]) == ["clipsort|animals|dog", "clipsort|beach"]
    assert as_list(tags["TagsList"]) == ["clipsort/animals/dog", "clipsort/beach"]


@needs_exiftool
def test_merge_keeps_other_tools_data(tmp_path: Path):
    photo = tmp_path / "IMG_0001.jpg"
    sidecar = xmp_path(photo)
    sidecar.write_text(DARKTABLE, encoding="utf-8")
    before = exiftool(sidecar)
    write_xmp(photo, kw("red", "animals/dog"), "clipsort", "tiny")
    after = exiftool(sidecar)
    assert as_list(after["Subject"]) == ["vacation", "red", "dog"]
    assert as_list(after["HierarchicalSubject"]) == ["places|Italy|Rome", "clipsort|red", "clipsort|animals|dog"]
    assert as_list(after["TagsList"]) == ["clipsort/red", "clipsort/animals/dog"]
    for key in ("Rating", "DerivedFrom", "Xmp_version", "History_end", "History"):
        assert after[key] == before[key], key
    text = sidecar.read_text(encoding="utf-8")
    assert 'darktable:params="gz48eJzjZBgFowABAA=="' in text
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')


def test_rerun_replaces_only_clipsorts_own_keywords():
    first = merge_xmp(DARKTABLE, kw("red", "blue"), "clipsort", "m")
    second = merge_xmp(first, kw("green"), "clipsort", "m")
    again = merge_xmp(second, kw("green"), "clipsort", "m")
    assert again == second  # byte-identical for the same input
    assert "<rdf:li>vacation</rdf:li>" in second
    assert "<rdf:li>red</rdf:li>" in second  # the user had 'red' before clipsort: it stays
    assert "<rdf:li>blue</rdf:li>" not in second
    assert "clipsort|red" not in second and "clipsort|blue" not in second
    assert "<rdf:li>green</rdf:li>" in second and "clipsort/green" in second
    assert "places|Italy|Rome" in second


def test_no_labels_removes_clipsort_keywords_and_leaves_the_rest():
    tagged = merge_xmp(DARKTABLE, kw("blue"), "clipsort", "m")
    cleared = merge_xmp(tagged, Keywords((), (), ()), "clipsort", "m")
    assert "blue" not in cleared and "clipsort|" not in cleared and "<clipsort:" not in cleared
    assert "vacation" in cleared and "places|Italy|Rome" in cleared and "darktable:history" in cleared


def test_new_sidecar_is_byte_identical_on_rerun_and_round_trips_through_the_parser():
    first = merge_xmp(None, kw("animals/dog"), "clipsort", "m")
    assert merge_xmp(first, kw("animals/dog"), "clipsort", "m") == first
    assert first.startswith("<?xpacket begin=")
    assert first.rstrip().endswith('<?xpacket end="w"?>')


def test_keywords_under_the_tag_root_belong_to_clipsort():
    # digiKam's rule for its auto-tags: a run replaces everything under its own parent.
    existing = DARKTABLE.replace("places|Italy|Rome", "auto|old")  # no clipsort record in this file
    updated = merge_xmp(existing, kw("new", root="auto"), "auto", "m")
    assert "auto|old" not in updated
    assert "auto|new" in updated and "<rdf:li>vacation</rdf:li>" in updated


def test_invalid_existing_sidecar_is_left_untouched(tmp_path: Path):
    photo = tmp_path / "p.jpg"
    sidecar = xmp_path(photo)
    sidecar.write_text("<x:xmpmeta>broken", encoding="utf-8")
    with pytest.raises(SidecarError, match="not valid XMP"):
        write_xmp(photo, kw("red"), "clipsort", "m")
    assert sidecar.read_text(encoding="utf-8") == "<x:xmpmeta>broken"


def test_stem_style_and_atomic_write_leave_no_temp_files(tmp_path: Path):
    photo = tmp_path / "IMG_1.CR2.jpg"
    path = write_xmp(photo, kw("red"), "clipsort", "m", style="stem")
    assert path == tmp_path / "IMG_1.CR2.xmp"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["IMG_1.CR2.xmp"]


def test_existing_sidecar_permissions_are_kept(tmp_path: Path):
    photo = tmp_path / "p.jpg"
    sidecar = xmp_path(photo)
    sidecar.write_text(DARKTABLE, encoding="utf-8")
    sidecar.chmod(0o640)
    write_xmp(photo, kw("red"), "clipsort", "m")
    assert sidecar.stat().st_mode & 0o777 == 0o640


def test_json_sidecar(tmp_path: Path):
    photo = tmp_path / "p.jpg"
    path = write_json(photo, "tiny", {"red": 0.9, "blue": 0.1}, ["red"])
    assert path.name == "p.jpg.clipsort.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data == {"photo": "p.jpg", "model": "tiny", "labels": ["red"], "scores": {"red": 0.9, "blue": 0.1}}
    mtime = path.stat().st_mtime_ns
    write_json(photo, "tiny", {"red": 0.9, "blue": 0.1}, ["red"])
    assert path.stat().st_mtime_ns == mtime  # unchanged content is not rewritten


@needs_exiftool
def test_sidecar_written_by_exiftool_is_merged(tmp_path: Path):
    from PIL import Image

    photo = tmp_path / "p.jpg"
    Image.new("RGB", (32, 32), "red").save(photo)
    sidecar = xmp_path(photo)
    subprocess.run(
        [
            EXIFTOOL,
            "-q",
            "-o",
            str(sidecar),
            "-XMP-dc:Subject=family",
            "-XMP-dc:Title=Holiday",
            "-XMP-xmp:Rating=3",
            "-XMP-digiKam:TagsList=People/Anna",
            str(photo),
        ],
        check=True,
    )
    write_xmp(photo, kw("red"), "clipsort", "m")
    write_xmp(photo, kw("red"), "clipsort", "m")
    tags = exiftool(sidecar)
    assert as_list(tags["Subject"]) == ["family", "red"]
    assert as_list(tags["TagsList"]) == ["People/Anna", "clipsort/red"]
    assert tags["Title"] == "Holiday" and tags["Rating"] == 3


def test_new_fields_are_laid_out_like_their_neighbours_and_clearing_gives_back_the_original():
    """What clipsort adds is indented like the file's own elements, and taking it away again gives
    back the file's own lines byte for byte (only the opening tag's attribute layout differs)."""
    tagged = merge_xmp(DARKTABLE, kw("blue"), "clipsort", "m")
    assert (
        "   </darktable:history>\n"
        "   <digiKam:TagsList>\n"
        "    <rdf:Seq>\n"
        "     <rdf:li>clipsort/blue</rdf:li>\n"
        "    </rdf:Seq>\n"
        "   </digiKam:TagsList>\n"
    ) in tagged
    assert "     <rdf:li>red</rdf:li>\n     <rdf:li>blue</rdf:li>\n    </rdf:Bag>\n" in tagged
    assert tagged.endswith("   <clipsort:model>m</clipsort:model>\n  </rdf:Description>\n </rdf:RDF>\n</x:xmpmeta>\n")
    cleared = merge_xmp(tagged, Keywords((), (), ()), "clipsort", "m")
    assert cleared.split("<dc:subject>", 1)[1] == DARKTABLE.split("<dc:subject>", 1)[1]


def test_fields_added_to_a_file_indented_its_own_way_follow_its_indentation():
    wide = "\n".join("  " * (len(line) - len(line.lstrip(" "))) + line.lstrip(" ") for line in DARKTABLE.splitlines())
    tagged = merge_xmp(wide, kw("blue"), "clipsort", "m")
    assert "\n      </darktable:history>\n      <digiKam:TagsList>\n" in tagged
    assert tagged.endswith(
        "      <clipsort:model>m</clipsort:model>\n    </rdf:Description>\n  </rdf:RDF>\n</x:xmpmeta>\n"
    )


def test_a_sidecar_cleared_of_everything_clipsort_wrote_keeps_a_self_closed_description():
    cleared = merge_xmp(merge_xmp(None, kw("blue"), "clipsort", "m"), Keywords((), (), ()), "clipsort", "m")
    assert 'rdf:about=""/>\n </rdf:RDF>' in cleared


def test_a_single_keyword_written_as_a_plain_value_is_kept():
    bag = DARKTABLE[DARKTABLE.index("<dc:subject>") : DARKTABLE.index("</dc:subject>") + len("</dc:subject>")]
    plain = DARKTABLE.replace(bag, "<dc:subject> vacation </dc:subject>")
    assert "<dc:subject> vacation </dc:subject>" in plain
    tagged = merge_xmp(plain, kw("blue"), "clipsort", "m")
    assert "<rdf:li>vacation</rdf:li>" in tagged and "<rdf:li>blue</rdf:li>" in tagged


def test_a_prefix_taken_by_another_namespace_gets_a_numbered_one():
    other = DARKTABLE.replace('xmlns:dc="http://purl.org/dc/elements/1.1/"', 'xmlns:dc="http://example.com/not-dc/"')
    bag = other[other.index("   <dc:subject>") : other.index("</dc:subject>") + len("</dc:subject>\n")]
    other = other.replace(bag, "")  # no dc:subject of its own
    tagged = merge_xmp(other, kw("blue"), "clipsort", "m")
    assert 'xmlns:dc2="http://purl.org/dc/elements/1.1/"' in tagged and "<dc2:subject>" in tagged
    assert 'xmlns:dc="http://example.com/not-dc/"' in tagged


def test_a_keyword_list_keeps_its_own_kind_of_container():
    seq = DARKTABLE.replace("<dc:subject>\n    <rdf:Bag>", "<dc:subject>\n    <rdf:Seq>", 1).replace(
        "<rdf:li>red</rdf:li>\n    </rdf:Bag>", "<rdf:li>red</rdf:li>\n    </rdf:Seq>", 1
    )
    tagged = merge_xmp(seq, kw("blue"), "clipsort", "m")
    assert "<dc:subject>\n    <rdf:Seq>\n     <rdf:li>vacation</rdf:li>\n     <rdf:li>red</rdf:li>\n" in tagged
    assert "<rdf:li>blue</rdf:li>\n    </rdf:Seq>\n   </dc:subject>" in tagged


@pytest.mark.parametrize("namespace", ["http://example.com/x", "urn:x"])  # sorting before and after RDF's
def test_a_keyword_list_in_a_container_of_another_namespace_becomes_an_rdf_bag(namespace):
    foreign = DARKTABLE.replace(
        "<dc:subject>\n    <rdf:Bag>", f'<dc:subject>\n    <x:Bag xmlns:x="{namespace}">', 1
    ).replace("<rdf:li>red</rdf:li>\n    </rdf:Bag>", "<rdf:li>red</rdf:li>\n    </x:Bag>", 1)
    tagged = merge_xmp(foreign, kw("blue"), "clipsort", "m")
    subject = tagged[tagged.index("<dc:subject>") : tagged.index("</dc:subject>")]
    assert "<rdf:Bag>" in subject and "<rdf:li>blue</rdf:li>" in subject and "x:Bag" not in subject


def test_a_keyword_holding_markup_keeps_its_text():
    marked = DARKTABLE.replace("<rdf:li>vacation</rdf:li>", '<rdf:li>vacation<x:note xmlns:x="urn:x"/></rdf:li>')
    tagged = merge_xmp(marked, kw("blue"), "clipsort", "m")
    assert "<rdf:li>vacation</rdf:li>" in tagged and "<rdf:li>blue</rdf:li>" in tagged


def test_namespace_declarations_come_before_other_attributes():
    tagged = merge_xmp(DARKTABLE, kw("blue"), "clipsort", "m")
    description = tagged[tagged.index("<rdf:Description") : tagged.index(">", tagged.index("<rdf:Description"))]
    names = [part.split("=")[0] for part in description.split()[1:]]
    declared = [n.startswith("xmlns") for n in names]
    assert declared == sorted(declared, reverse=True) and declared[0] and not declared[-1]


@pytest.mark.parametrize("between", ["", " "])
def test_a_sidecar_written_on_one_line_keeps_everything_but_clipsorts_old_keywords(between):
    import re

    compact = re.sub(r">\s+<", f">{between}<", merge_xmp(DARKTABLE, kw("blue"), "clipsort", "m"))
    # the user's own digiKam tag, in the list just before clipsort's records
    compact = compact.replace(
        f"<rdf:li>clipsort/blue</rdf:li>{between}</rdf:Seq>",
        f"<rdf:li>clipsort/blue</rdf:li>{between}<rdf:li>People/Anna</rdf:li>{between}</rdf:Seq>",
    )
    retagged = merge_xmp(compact, kw("green"), "clipsort", "m")
    for kept in (
        "<rdf:li>vacation</rdf:li>",
        "places|Italy|Rome",
        'darktable:operation="colorin"',
        "clipsort/green",
        "People/Anna",
    ):
        assert kept in retagged, kept
    assert "clipsort/blue" not in retagged and "<rdf:li>blue</rdf:li>" not in retagged
    cleared = merge_xmp(retagged, Keywords((), (), ()), "clipsort", "m")
    assert "People/Anna" in cleared and "clipsort/green" not in cleared


def test_a_keyword_written_as_cdata_keeps_its_text_and_a_comment_is_not_part_of_it():
    marked = DARKTABLE.replace("<rdf:li>vacation</rdf:li>", "<rdf:li><![CDATA[Tom & Jerry]]></rdf:li>").replace(
        "<rdf:li>red</rdf:li>", "<rdf:li>red<!-- picked by hand --></rdf:li>"
    )
    tagged = merge_xmp(marked, kw("blue"), "clipsort", "m")
    assert "<rdf:li>Tom &amp; Jerry</rdf:li>" in tagged and "<rdf:li>red</rdf:li>" in tagged
    assert "<rdf:li>blue</rdf:li>" in tagged and "picked by hand" not in tagged


def test_a_rerun_with_the_same_keywords_leaves_an_existing_sidecar_untouched(tmp_path: Path):
    """Not rewritten at all (same file, same time): backup and sync tools see no change."""
    photo = tmp_path / "p.jpg"
    sidecar = xmp_path(photo)
    sidecar.write_text(DARKTABLE, encoding="utf-8")
    write_xmp(photo, kw("red"), "clipsort", "m")
    before = sidecar.stat()
    write_xmp(photo, kw("red"), "clipsort", "m")
    after = sidecar.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_new_sidecars_get_the_permissions_of_any_new_file_of_the_user(tmp_path: Path):
    umask = os.umask(0o022)
    os.umask(umask)
    photo = tmp_path / "p.jpg"
    assert write_xmp(photo, kw("red"), "clipsort", "m").stat().st_mode & 0o777 == 0o666 & ~umask
    assert write_json(photo, "m", {"red": 0.9}, ["red"]).stat().st_mode & 0o777 == 0o666 & ~umask


def test_json_sidecar_keeps_labels_readable_in_utf8(tmp_path: Path):
    path = write_json(tmp_path / "café.jpg", "m", {"crème brûlée": 0.9}, ["crème brûlée"])
    text = path.read_bytes().decode("utf-8")
    assert '"crème brûlée"' in text and '"café.jpg"' in text and "\\u" not in text


def test_json_sidecar_of_a_photo_whose_name_is_not_utf8(tmp_path: Path):
    photo = tmp_path / os.fsdecode(b"caf\xe9.jpg")  # a Latin-1 name from an old camera card or a Windows share
    path = write_json(photo, "m", {"red": 0.9}, ["red"])
    assert os.fsencode(path.name) == b"caf\xe9.jpg.clipsort.json"
    data = json.loads(path.read_bytes().decode("ascii"))
    assert data["photo"] == "caf\udce9.jpg" and data["labels"] == ["red"]


def test_a_sidecar_in_an_object_store_is_merged_not_clobbered():
    """Sidecars beside photos in a bucket (the Ray engine's URLs; fsspec's in-memory store here)
    are merged like local ones: the user's keywords stay."""
    pytest.importorskip("fsspec")
    from clipsort.photos.remote import RemotePath

    photo = RemotePath("memory://clipsort-test-bucket/library/p.jpg")
    sidecar = xmp_path(photo)
    sidecar.write_bytes(DARKTABLE.encode("utf-8"))
    write_xmp(photo, kw("red"), "clipsort", "m")
    found = read_keywords(sidecar)
    assert (
        found["others"]["subject"] == ["vacation", "red"]
        and "places|Italy|Rome" in found["others"]["hierarchicalSubject"]
    )
    assert found["clipsort"]["hierarchicalSubject"] == ["clipsort|red"]
    fresh = RemotePath("memory://clipsort-test-bucket/library/new.jpg")
    write_xmp(fresh, kw("blue"), "clipsort", "m")  # none there yet: made
    assert read_keywords(xmp_path(fresh))["clipsort"]["subject"] == ["blue"]


def test_the_tag_root_itself_is_clipsorts_keyword_under_a_root(tmp_path: Path):
    """Some apps add each parent of a hierarchical keyword as an entry of its own (`clipsort`
    beside `clipsort|red`): with a tag root, both are clipsort's and a re-run replaces them."""
    photo = tmp_path / "p.jpg"
    sidecar = xmp_path(photo)
    parents = "<rdf:li>places|Italy|Rome</rdf:li><rdf:li>clipsort</rdf:li><rdf:li>clipsort|old</rdf:li>"
    sidecar.write_text(DARKTABLE.replace("<rdf:li>places|Italy|Rome</rdf:li>", parents), encoding="utf-8")
    write_xmp(photo, kw("red"), "clipsort", "m")
    hierarchical = read_keywords(sidecar)
    assert "clipsort" not in hierarchical["others"]["hierarchicalSubject"]
    assert "clipsort|old" not in hierarchical["others"]["hierarchicalSubject"]
    assert "places|Italy|Rome" in hierarchical["others"]["hierarchicalSubject"]


def test_reading_keywords_of_a_sidecar_that_is_not_xml_is_one_clear_error(tmp_path: Path):
    sidecar = tmp_path / "p.jpg.xmp"
    sidecar.write_text("<x:xmpmeta><rdf:RDF></x:xmpmeta>", encoding="utf-8")  # not well-formed
    with pytest.raises(SidecarError, match="not valid XMP"):
        read_keywords(sidecar)


def test_a_sidecar_write_that_fails_says_why_and_leaves_the_old_sidecar_and_no_temp_file(tmp_path: Path, monkeypatch):
    """A full disk (simulated at the flush): the sidecar stays as it was, no temp file is left,
    and the error says why in words."""
    photo = tmp_path / "p.jpg"
    sidecar = xmp_path(photo)
    sidecar.write_text(DARKTABLE, encoding="utf-8")

    def disk_full(_handle):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as faults:
        faults.setattr(os, "fsync", disk_full)
        with pytest.raises(SidecarError) as failed:
            write_xmp(photo, kw("red"), "clipsort", "m")
    assert failed.value.reason == "cannot write sidecar: No space left on device"
    assert sidecar.read_text(encoding="utf-8") == DARKTABLE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.jpg.xmp"]


def test_a_temp_file_removed_by_someone_else_before_the_rename_is_still_one_clear_error(tmp_path: Path, monkeypatch):
    photo = tmp_path / "p.jpg"
    real_replace = os.replace

    def replace_after_cleanup(source, target):
        os.unlink(source)  # another program cleaned the folder's temp files meanwhile
        return real_replace(source, target)

    with monkeypatch.context() as faults:
        faults.setattr(os, "replace", replace_after_cleanup)
        with pytest.raises(SidecarError, match="cannot write sidecar: No such file or directory"):
            write_xmp(photo, kw("red"), "clipsort", "m")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["xmp", "json"])
def test_only_a_sidecar_with_clipsort_keywords_counts_as_tagged(tmp_path: Path, kind):
    """What `--only-untagged` asks of each sidecar: one without clipsort's keywords (empty labels,
    the user's own keywords only, or not readable at all) does not count as tagged."""
    photo = tmp_path / "p.jpg"
    if kind == "json":
        tagged = write_json(photo, "m", {"red": 0.9}, ["red"])
        assert holds_clipsort_keywords(tagged)
        assert not holds_clipsort_keywords(write_json(photo, "m", {"red": 0.1}, []))
    else:
        tagged = write_xmp(photo, kw("red"), "clipsort", "m")
        assert holds_clipsort_keywords(tagged)
        tagged.write_text(DARKTABLE, encoding="utf-8")
        assert not holds_clipsort_keywords(tagged)
        tagged.write_text("<x:xmpmeta><rdf:RDF></x:xmpmeta>", encoding="utf-8")
        assert not holds_clipsort_keywords(tagged)
    for damaged in ("not json at all", '["a", "list"]'):
        json_sidecar = tmp_path / "q.jpg.clipsort.json"
        json_sidecar.write_text(damaged, encoding="utf-8")
        assert not holds_clipsort_keywords(json_sidecar)


def test_a_large_sidecar_merge_leaves_the_garbage_collector_as_it_was(tmp_path: Path, monkeypatch):
    """Large sidecars are merged with the collector paused; it runs again afterwards (a run of
    100,000 photos would otherwise grow without bound). The size that counts as large is lowered
    here, so that a small sidecar takes that path."""
    import gc

    monkeypatch.setattr(sidecar_module, "_LARGE", 100)
    photo = tmp_path / "p.jpg"
    xmp_path(photo).write_text(DARKTABLE, encoding="utf-8")
    assert gc.isenabled()
    write_xmp(photo, kw("red"), "clipsort", "m")
    assert gc.isenabled()
    gc.disable()
    try:
        write_xmp(photo, kw("blue"), "clipsort", "m")
        assert not gc.isenabled()  # left off when it was off
    finally:
        gc.enable()
    assert read_keywords(xmp_path(photo))["clipsort"]["subject"] == ["blue"]


def test_new_fields_go_into_the_first_description_of_a_sidecar_that_has_several(tmp_path: Path):
    photo = tmp_path / "p.jpg"
    xmp_path(photo).write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="3"/>'
        '<rdf:Description rdf:about="" xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Make="Canon"/>'
        "</rdf:RDF></x:xmpmeta>",
        encoding="utf-8",
    )
    write_xmp(photo, kw("red"), "clipsort", "m")
    first, second = xmp_path(photo).read_text(encoding="utf-8").split("<rdf:Description")[1:]
    assert "<dc:subject>" in first and "dc:subject" not in second and 'tiff:Make="Canon"' in second


def test_append_mode_keeps_earlier_clipsort_keywords_and_adds_new_ones(tmp_path: Path):
    photo = tmp_path / "p.jpg"
    xmp_path(photo).write_text(DARKTABLE, encoding="utf-8")
    write_xmp(photo, kw("green"), "clipsort", "m")
    write_xmp(photo, kw("blue", "green"), "clipsort", "m", append=True)
    found = read_keywords(xmp_path(photo))
    assert found["clipsort"]["subject"] == ["green", "blue"]
    assert found["clipsort"]["hierarchicalSubject"] == ["clipsort|green", "clipsort|blue"]
    assert "vacation" in found["others"]["subject"]  # the user's own, still there


def test_a_sidecar_declaring_only_a_doctype_is_refused_too(tmp_path: Path):
    photo = tmp_path / "p.jpg"
    data = '<?xml version="1.0"?><!DOCTYPE x:xmpmeta SYSTEM "http://example.com/xmp.dtd">' + DARKTABLE.split("?>", 1)[1]
    xmp_path(photo).write_text(data, encoding="utf-8")
    with pytest.raises(SidecarError, match="DOCTYPE or entities"):
        write_xmp(photo, kw("red"), "clipsort", "m")
    with pytest.raises(SidecarError, match="DOCTYPE or entities"):
        read_keywords(xmp_path(photo))
    assert xmp_path(photo).read_text(encoding="utf-8") == data


def test_reading_keywords_of_a_sidecar_nested_too_deeply_is_one_clear_error(tmp_path: Path):
    sidecar = tmp_path / "p.jpg.xmp"
    depth = 200_000
    sidecar.write_text(DARKTABLE.replace("<rdf:li>vacation</rdf:li>", "<a>" * depth + "</a>" * depth), encoding="utf-8")
    with pytest.raises(SidecarError, match="nested too deeply"):
        read_keywords(sidecar)


def test_a_sidecar_in_an_object_store_that_cannot_be_read_is_named_not_replaced(monkeypatch):
    pytest.importorskip("fsspec")
    from clipsort.photos.remote import RemotePath

    photo = RemotePath("memory://clipsort-test-bucket/forbidden/p.jpg")
    xmp_path(photo).write_bytes(DARKTABLE.encode("utf-8"))

    def forbidden(self):
        raise PermissionError(13, "Forbidden")

    with monkeypatch.context() as faults:
        faults.setattr(RemotePath, "read_bytes", forbidden)
        with pytest.raises(SidecarError) as refused:
            write_xmp(photo, kw("red"), "clipsort", "m")
    assert refused.value.reason == "cannot read existing sidecar: Forbidden"
    assert xmp_path(photo).read_bytes() == DARKTABLE.encode("utf-8")


def test_json_sidecar_scores_have_six_decimals_and_two_space_indents(tmp_path: Path):
    path = write_json(tmp_path / "p.jpg", "m", {"red": 0.123456789, "blue": 0.5}, ["red"])
    text = path.read_text(encoding="utf-8")
    assert json.loads(text)["scores"] == {"red": 0.123457, "blue": 0.5}
    assert text.splitlines()[1] == '  "photo": "p.jpg",' and text.endswith("}\n")
    odd = write_json(tmp_path / os.fsdecode(b"caf\xe9.jpg"), "m", {"red": 0.5}, ["red"])
    assert odd.read_bytes().decode("ascii").splitlines()[1] == '  "photo": "caf\\udce9.jpg",'


def test_the_stem_style_chosen_on_the_command_line_is_used(tmp_path: Path):
    """The style arrives as a string made at run time (not the literal this module compares with)."""
    style = "".join(["st", "em"])
    assert write_xmp(tmp_path / "p.jpg", kw("red"), "clipsort", "m", style=style) == tmp_path / "p.xmp"


def test_a_rerun_without_append_replaces_clipsorts_keywords(tmp_path: Path):
    photo = tmp_path / "p.jpg"
    xmp_path(photo).write_text(DARKTABLE, encoding="utf-8")
    write_xmp(photo, kw("green"), "clipsort", "m")
    write_xmp(photo, kw("blue"), "clipsort", "m")
    found = read_keywords(xmp_path(photo))
    assert found["clipsort"]["subject"] == ["blue"] and "vacation" in found["others"]["subject"]


@pytest.mark.parametrize("mode", [0o755, 0o777, 0o601])
def test_an_existing_sidecars_permission_bits_are_kept_whatever_they_are(tmp_path: Path, mode):
    """Files on FAT, exFAT or SMB mounts often show every execute bit set: kept as they were."""
    photo = tmp_path / "p.jpg"
    sidecar = xmp_path(photo)
    sidecar.write_text(DARKTABLE, encoding="utf-8")
    sidecar.chmod(mode)
    write_xmp(photo, kw("red"), "clipsort", "m")
    assert sidecar.stat().st_mode & 0o7777 == mode


def test_a_sidecar_swapped_for_a_link_after_it_was_checked_is_not_read_through_it(tmp_path: Path, monkeypatch):
    """The check (not a link) and the read are two steps; a link put in between is still refused
    when the file is opened (simulated: the check is made to pass)."""
    outside = tmp_path / "outside.xmp"
    outside.write_text(DARKTABLE, encoding="utf-8")
    photo = tmp_path / "lib" / "p.jpg"
    photo.parent.mkdir()
    xmp_path(photo).symlink_to(outside)
    monkeypatch.setattr(location_module, "regular_or_absent", lambda path, follow=False: os.stat(path))
    with pytest.raises(SidecarError, match="is a symbolic link"):
        sidecar_module.read_existing(xmp_path(photo))


def test_a_sidecar_that_cannot_be_read_says_why_in_words(tmp_path: Path, monkeypatch):
    photo = tmp_path / "p.jpg"
    xmp_path(photo).write_text(DARKTABLE, encoding="utf-8")

    def bad_disk(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(location_module, "read_regular", bad_disk)
    with pytest.raises(SidecarError) as failed:
        write_xmp(photo, kw("red"), "clipsort", "m")
    assert failed.value.reason == "cannot read existing sidecar: Input/output error"


def test_a_sidecar_whose_folder_is_gone_is_one_clear_error(tmp_path: Path):
    with pytest.raises(SidecarError) as failed:
        write_json(tmp_path / "gone" / "p.jpg", "m", {"red": 0.9}, ["red"])
    assert failed.value.reason == "cannot write sidecar: No such file or directory"


def test_a_sidecar_in_an_object_store_that_refuses_the_write_is_named(monkeypatch):
    pytest.importorskip("fsspec")
    from clipsort.photos.remote import RemotePath

    def forbidden(self, data):
        raise PermissionError(13, "Forbidden")

    monkeypatch.setattr(RemotePath, "write_bytes", forbidden)
    with pytest.raises(SidecarError) as failed:
        write_xmp(RemotePath("memory://clipsort-test-bucket/read-only/p.jpg"), kw("red"), "clipsort", "m")
    assert failed.value.reason == "cannot write sidecar: Forbidden"
