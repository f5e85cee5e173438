"""End to end through the installed ``clipsort`` console script, with the trained tiny model.

These are the acceptance scenarios of clipsort 0.1: real photos of coloured shapes
(JPEG and PNG, 300-3000 px, some stored rotated with an EXIF orientation tag,
nested folders, non-ASCII names) that the model has never seen.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import COLOUR_MODEL, CORPUS, make_colour_photos

pytestmark = pytest.mark.slow

CLIPSORT = Path(sys.executable).with_name("clipsort")
MODEL = ["--model", f"local-dir:{COLOUR_MODEL}"]
EXIFTOOL = shutil.which("exiftool")


def clipsort(*args: str) -> subprocess.CompletedProcess:
    assert CLIPSORT.exists(), f"the console script is not installed at {CLIPSORT}"
    return subprocess.run(
        [str(CLIPSORT), *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=dict(os.environ),
        timeout=600,
    )


def tree(folder: Path) -> dict[str, str]:
    """relative path -> content hash, for every file under ``folder``."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """60 unseen photos: file name -> colour."""
    folder = tmp_path_factory.mktemp("library")
    photos = make_colour_photos(folder, ["red", "green", "blue"], 60, seed=2026)
    return folder, {p.name: colour for p, colour in photos.items()}


def test_sort_end_to_end(tmp_path: Path, library, labels_file: Path):
    source, colours = library
    inbox, dest = tmp_path / "Inbox", tmp_path / "Sorted"
    shutil.copytree(source, inbox)
    before = tree(inbox)

    dry = clipsort("sort", str(inbox), "--labels", str(labels_file), *MODEL, "--dest", str(dest), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert re.search(r" on (cpu|cuda|mps) \(", dry.stderr)
    assert tree(inbox) == before and not dest.exists()
    assert len(dry.stdout.splitlines()) == 60 and all(
        line.startswith("would move: ") for line in dry.stdout.splitlines()
    )

    real = clipsort("sort", str(inbox), "--labels", str(labels_file), *MODEL, "--dest", str(dest))
    assert real.returncode == 0, real.stderr
    assert "moved 60" in real.stderr and "from cache 60" in real.stderr  # the dry run filled the cache
    after = tree(dest)
    assert sorted(after.values()) == sorted(before.values())  # every photo exactly once, intact
    assert not any(p.is_file() for p in inbox.rglob("*"))
    right = sum(1 for rel in after if Path(rel).parts[0] == colours[Path(rel).name])
    assert right / len(colours) >= 0.95, f"{right}/{len(colours)} in the right colour folder"

    again = clipsort("sort", str(dest), "--labels", str(labels_file), *MODEL, "--json")
    assert again.returncode == 0, again.stderr
    assert {json.loads(line)["action"] for line in again.stdout.splitlines()} == {"in-place"}
    assert tree(dest) == after


@pytest.mark.skipif(EXIFTOOL is None, reason="exiftool is not installed")
def test_tag_end_to_end_read_back_by_exiftool(tmp_path: Path, library, labels_file: Path):
    source, colours = library
    photos = tmp_path / "Photos"
    shutil.copytree(source, photos)
    result = clipsort("tag", str(photos), "-l", str(labels_file), *MODEL, "--top-k", "1")
    assert result.returncode == 0, result.stderr
    read = subprocess.run(
        [EXIFTOOL, "-json", "-r", "-ext", "xmp", "-Subject", "-HierarchicalSubject", "-TagsList", str(photos)],
        capture_output=True,
        text=True,
        check=True,
    )
    records = json.loads(read.stdout)
    assert len(records) == 60
    right = 0
    for record in records:
        colour = colours[Path(record["SourceFile"]).name[: -len(".xmp")]]
        fields = (record.get("Subject"), record.get("HierarchicalSubject"), record.get("TagsList"))
        right += fields == (colour, f"clipsort|{colour}", f"clipsort/{colour}")
    assert right / 60 >= 0.95, f"{right}/60 sidecars hold the right colour"

    first = tree(photos)
    rerun = clipsort("tag", str(photos), "-l", str(labels_file), *MODEL, "--top-k", "1", "--quiet")
    assert (rerun.returncode, rerun.stderr) == (0, "")
    assert tree(photos) == first  # byte-identical sidecars


def test_bad_files_among_good_ones_exit_3(tmp_path: Path, labels_file: Path):
    make_colour_photos(tmp_path / "p", ["red", "green", "blue"], 100, min_px=64, max_px=200)
    (tmp_path / "p" / "zero.jpg").write_bytes(b"")
    (tmp_path / "p" / "notes.jpg").write_text("this is text, not a photo\n")
    corrupted = CORPUS / "jpg" / "corrupted.jpg"
    if corrupted.exists():  # broken EXIF, intact pixels: it must be tagged
        shutil.copy(corrupted, tmp_path / "p" / "corrupted.jpg")
    expected = 101 if corrupted.exists() else 100
    result = clipsort("tag", str(tmp_path / "p"), "-l", str(labels_file), *MODEL)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("zero.jpg") == 1 and result.stderr.count("notes.jpg") == 1
    found = re.search(r"tagged (\d+)(?:, untagged (\d+))?, failed 2 ", result.stderr)
    assert found, result.stderr
    tagged, untagged = int(found.group(1)), int(found.group(2) or 0)
    assert tagged + untagged == expected and tagged >= 100  # the corpus photo may fit no colour
    assert len(list((tmp_path / "p").rglob("*.xmp"))) == tagged
    if corrupted.exists():
        assert (tmp_path / "p" / "corrupted.jpg.xmp").is_file() == (tagged == 101)


def test_python_dash_m():
    result = subprocess.run([sys.executable, "-m", "clipsort", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("clipsort ")
