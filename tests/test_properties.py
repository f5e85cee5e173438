"""Property-based tests: the decoder never crashes, the mover never loses or overwrites a file."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from clipsort.errors import DecodeError, MoveError
from clipsort.photos.decode import load_image
from clipsort.store.journal import Journal
from clipsort.store.journal_read import read
from clipsort.writes.mover import Mover
from clipsort.writes.recovery import undo_operations

FORMATS = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp"}


def _encoded(fmt: str) -> bytes:
    buffer = io.BytesIO()
    image = Image.linear_gradient("L").resize((96, 64)).convert("RGB")
    image.save(buffer, fmt)
    return buffer.getvalue()


VALID = {fmt: _encoded(fmt) for fmt in FORMATS}
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _decode_or_decode_error(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"x{suffix}"
        path.write_bytes(data)
        try:
            picture = load_image(path, min_side=32)
        except DecodeError as error:
            assert error.reason  # a reason a person can read
        else:
            assert picture.mode == "RGB" and min(picture.size) >= 1


@SETTINGS
@given(data=st.binary(max_size=2048), suffix=st.sampled_from(list(FORMATS.values())))
def test_random_bytes_decode_or_fail_cleanly(data: bytes, suffix: str):
    _decode_or_decode_error(data, suffix)


@SETTINGS
@given(
    fmt=st.sampled_from(list(FORMATS)),
    cut=st.floats(min_value=0.0, max_value=1.0),
    flips=st.lists(st.integers(0, 10_000), max_size=4),
)
def test_truncated_and_corrupted_images_decode_or_fail_cleanly(fmt: str, cut: float, flips: list[int]):
    data = bytearray(VALID[fmt][: int(len(VALID[fmt]) * cut)])
    for position in flips:
        if data:
            data[position % len(data)] ^= 0xFF
    _decode_or_decode_error(bytes(data), FORMATS[fmt])


# ----------------------------------------------------------------------------- mover

names = st.sampled_from(["a.jpg", "b.jpg", "a_1.jpg", "A.jpg", "c.png", "a.png"])
folders = st.sampled_from(["in", "in/sub", "out", "out/red", "out/blue"])
operations = st.lists(
    st.tuples(folders, names, st.booleans(), folders, st.sampled_from(["move", "copy", "link"])),
    min_size=1,
    max_size=12,
)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@SETTINGS
@given(plan=operations, contents=st.lists(st.binary(min_size=1, max_size=64), min_size=12, max_size=12))
def test_random_operations_never_lose_or_overwrite_and_undo_restores(plan, contents):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files: list[Path] = []
        for i, (folder, name, sidecar, _, _) in enumerate(plan):
            path = root / folder / name
            if path.exists():
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(contents[i])
            if sidecar:
                path.with_name(path.name + ".xmp").write_bytes(b"xmp:" + contents[i])
            files.append(path)
        before = _snapshot(root)
        journal = Journal.create("sort", [root], root, {})
        mover = Mover("move", journal)
        modes_used = set()
        for i, (_, _, _, target_folder, mode) in enumerate(plan):
            if i >= len(files) or not files[i].exists():
                continue
            mover.mode = mode
            modes_used.add(mode)
            try:
                mover.execute(mover.plan(files[i], root / target_folder))
            except MoveError:
                pass
        journal.end({})
        journal.close()
        after = _snapshot(root)
        # nothing lost, nothing overwritten: every original content is still there, as often or more
        before_counts: dict[bytes, int] = {}
        for data in before.values():
            before_counts[data] = before_counts.get(data, 0) + 1
        after_values = list(after.values())
        for data, count in before_counts.items():
            assert after_values.count(data) >= count
        if modes_used == {"move"}:
            assert sorted(after_values) == sorted(before.values())  # moves create nothing
        for name in after:  # every sidecar still sits beside a photo of its own content
            if name.endswith(".xmp"):
                assert after[name] == b"xmp:" + after[name[: -len(".xmp")]]
        view = read(journal.path)
        result = undo_operations(view, lambda record: None)
        assert result.refused == []
        assert _snapshot(root) == before


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_valid_images_of_every_format_decode(tmp_path, fmt):
    path = tmp_path / f"x{FORMATS[fmt]}"
    path.write_bytes(VALID[fmt])
    assert load_image(path).size == (96, 64)
    assert min(load_image(path, min_side=32).size) >= 32


# ----------------------------------------------------------------------------- files from elsewhere

_LABEL_ALPHABET = st.sampled_from(
    list("ab \t:|/#{}\\\"'[]=.,\n\r\x00\x1b\u200d\u00e9-0123456789") + ["nan", "inf", "1e999"]
)


def _learned_document(values: list) -> str:
    """A learned label file's shape, with the given values where numbers and names go."""
    import json

    labels = [
        {
            "name": values[i % len(values)],
            "threshold": values[(i + 1) % len(values)],
            "a": values[(i + 2) % len(values)],
            "b": 1.0,
            "direction": [values[(i + j) % len(values)] for j in range(4)],
        }
        for i in range(2)
    ]
    document = {
        "format": "clipsort-learned-labels",
        "version": 1,
        "model": {"name": "m", "identity": "m"},
        "labels": labels,
    }
    return json.dumps(document, allow_nan=True)


@SETTINGS
@given(
    form=st.sampled_from(["txt", "toml", "json"]),
    pieces=st.lists(_LABEL_ALPHABET, max_size=120),
    values=st.lists(
        st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.text(max_size=6), st.booleans()),
        min_size=1,
        max_size=6,
    ),
    depth=st.integers(0, 3000),
)
@example(form="json", pieces=[], values=[float("nan"), "x"], depth=1)
@example(form="json", pieces=[], values=["dog", 0.5, 1e308], depth=1)
@example(form="toml", pieces=["a\x1b"], values=[0.5], depth=2000)
def test_any_label_file_loads_sound_labels_or_is_refused_in_one_line(tmp_path_factory, form, pieces, values, depth):
    """Promise: a label file of any content, in any form, gives labels whose names are safe to write and
    whose numbers are finite, or one LabelFileError of one line; nothing else."""
    import math

    from clipsort.errors import LabelFileError
    from clipsort.labels.label_file import load_labels
    from clipsort.labels.names import control_characters

    text = "".join(pieces)
    if form == "toml":
        text = (
            f'threshold = {values[0]!r}\ntag_root = "{text[:20]}"\nx = {"[" * depth}{"]" * depth}\n[labels."{text}"]\n'
        )
    elif form == "json":
        text = _learned_document(values) if depth % 2 else "[" * depth + text
    path = tmp_path_factory.mktemp("labels") / f"labels.{form}"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        labels = load_labels(path)
    except LabelFileError as error:
        assert "\n" not in str(error) and str(error).startswith(str(path))
        return
    for label in labels.labels:
        assert not any(control_characters(part) for part in label.path)
        assert label.threshold is None or 0.0 <= label.threshold <= 1.0
        if label.vector is not None:
            assert all(math.isfinite(v) for v in label.vector) and any(label.vector)
            assert label.calibration is not None and all(math.isfinite(v) for v in label.calibration)
    assert labels.tag_root is None or not control_characters(labels.tag_root)


_XMP_HEAD = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">'
)
_XMP_TAIL = "</rdf:Description></rdf:RDF></x:xmpmeta>"


@SETTINGS
@given(
    shape=st.sampled_from(["random", "keywords", "nested", "doctype", "truncated"]),
    data=st.binary(max_size=600),
    keywords=st.lists(st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12), max_size=8),
    depth=st.integers(1, 5000),
)
@example(shape="keywords", data=b"", keywords=["red", "Tom & Jerry", " spaced "], depth=1)
@example(shape="nested", data=b"", keywords=[], depth=5000)
@example(shape="doctype", data=b"x", keywords=[], depth=1)
def test_any_existing_sidecar_is_merged_keeping_its_keywords_or_left_untouched(
    tmp_path_factory, shape, data, keywords, depth
):
    """Promise: whatever a sidecar holds (random bytes, deep nesting, entities, a cut-short file), tag
    either merges into it, keeping every keyword it held, or leaves it byte for byte as it was."""
    from xml.dom import minidom
    from xml.sax.saxutils import escape

    from clipsort.errors import SidecarError
    from clipsort.labels.label_set import parse_labels
    from clipsort.writes.sidecar import keywords_for, read_keywords, write_xmp

    items = "".join(f"<rdf:li>{escape(k)}</rdf:li>" for k in keywords)
    text = {
        "random": data,
        "keywords": (_XMP_HEAD + f"<dc:subject><rdf:Bag>{items}</rdf:Bag></dc:subject>" + _XMP_TAIL).encode(),
        "nested": (_XMP_HEAD + "<dc:x>" * depth + "</dc:x>" * depth + _XMP_TAIL).encode(),
        "doctype": b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "'
        + data[:50].hex().encode()
        + b'">]>'
        + (_XMP_HEAD + "&a;" + _XMP_TAIL).encode(),
        "truncated": (_XMP_HEAD + f"<dc:subject><rdf:Bag>{items}</rdf:Bag></dc:subject>" + _XMP_TAIL).encode()[
            : max(1, depth % 200)
        ],
    }[shape]
    folder = tmp_path_factory.mktemp("sidecar")
    photo = folder / "p.jpg"
    photo.write_bytes(b"not read")
    sidecar = folder / "p.jpg.xmp"
    sidecar.write_bytes(text)
    try:
        write_xmp(photo, keywords_for(parse_labels("red\n").labels), "clipsort", "m")
    except SidecarError as error:
        assert "\n" not in error.reason and sidecar.read_bytes() == text
        return
    minidom.parse(str(sidecar))  # well-formed
    found = read_keywords(sidecar)
    held = keywords if shape == "keywords" else []
    assert found["others"]["subject"] == held  # every keyword it held, in order
    assert found["clipsort"]["subject"] == ([] if "red" in held else ["red"])
