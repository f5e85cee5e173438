"""Property-based tests: the decoder never crashes, the mover never loses or overwrites a file."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from clipsort.decode import load_image
from clipsort.errors import DecodeError, MoveError
from clipsort.journal import Journal, read
from clipsort.mover import Mover
from clipsort.recovery import undo_operations

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
