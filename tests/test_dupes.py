"""``clipsort dupes``: copies of real camera photos grouped, and nothing else, whatever the model."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import COLOUR_MODEL, CORPUS, run_cli, save_photo, write_random_model
from PIL import Image, ImageEnhance, ImageOps
from shapes import make_picture

COLOURS = ["--model", f"local-dir:{COLOUR_MODEL}"]


def corpus_jpegs() -> list[Path]:
    if not CORPUS.is_dir():
        pytest.skip("shared corpus not present")
    return sorted(p for p in (CORPUS / "jpg").rglob("*.jpg"))


def upright(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return ImageOps.exif_transpose(image).convert("RGB")


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[set[str]]]:
    """Every corpus JPEG, and for ten of its camera photos: a resized copy, a re-encoded one, one
    stored rotated with an EXIF orientation, one with the rotation applied, one brightened, an
    exact copy, and copies whose pixels an editor turned by 90, 180 and 270 degrees (the last one
    smaller too). Returns the folder and the groups expected (file names)."""
    folder = tmp_path_factory.mktemp("dupes")
    expected: list[set[str]] = []
    for path in corpus_jpegs():
        name = f"{path.parent.name}-{path.name}"
        shutil.copyfile(path, folder / name)
    for kind in ("landscape", "portrait"):  # the corpus's 8 orientations of one picture: copies
        expected.append({f"orientation-{kind}_{n}.jpg" for n in range(1, 9)})
    sources = [p for p in corpus_jpegs() if "orientation" not in str(p) and min(upright(p).size) >= 400][:10]
    assert len(sources) == 10
    copies = folder / "copies"
    copies.mkdir()
    for i, path in enumerate(sources):
        picture, stem = upright(path), f"{i:02d}"
        small = picture.resize((picture.width // 3, picture.height // 3), Image.Resampling.LANCZOS)
        small.save(copies / f"{stem}-small.jpg", quality=75)
        picture.save(copies / f"{stem}-q40.jpg", quality=40)
        save_photo(picture, copies / f"{stem}-stored-rotated.jpg", orientation=6)
        picture.transpose(Image.Transpose.ROTATE_90).transpose(Image.Transpose.ROTATE_270).save(
            copies / f"{stem}-rotation-applied.png"
        )
        ImageEnhance.Brightness(picture).enhance(1.1).save(copies / f"{stem}-brighter.jpg", quality=90)
        shutil.copyfile(path, copies / f"{stem}-exact.jpg")
        picture.transpose(Image.Transpose.ROTATE_90).save(copies / f"{stem}-turned-90.jpg", quality=85)
        picture.transpose(Image.Transpose.ROTATE_180).save(copies / f"{stem}-turned-180.jpg", quality=85)
        turned = picture.transpose(Image.Transpose.ROTATE_270)
        turned.resize((turned.width // 2, turned.height // 2), Image.Resampling.LANCZOS).save(
            copies / f"{stem}-turned-270-small.jpg", quality=80
        )
        names = {f"{path.parent.name}-{path.name}"}
        names |= {f"{stem}-{k}" for k in ("small.jpg", "q40.jpg", "stored-rotated.jpg", "brighter.jpg", "exact.jpg")}
        turned_names = {f"{stem}-turned-90.jpg", f"{stem}-turned-180.jpg", f"{stem}-turned-270-small.jpg"}
        expected.append(names | {f"{stem}-rotation-applied.png"} | turned_names)
    return folder, expected


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("model", ["trained", "random weights"])
def test_copies_of_real_photos_are_grouped_and_nothing_else(library, model, tmp_path: Path, capsys):
    folder, expected = library
    chosen = COLOURS if model == "trained" else ["--model", str(write_random_model(tmp_path / "random"))]
    before = tree_digest(folder)
    code, out, err = run_cli(capsys, "dupes", str(folder), *chosen, "--json")
    assert code == 0, err
    groups = [json.loads(line) for line in out.splitlines()]
    found = [{Path(p["path"]).name for p in g["photos"]} for g in groups]
    assert sorted(map(sorted, found)) == sorted(map(sorted, expected))
    assert all(g["kind"] == "copies" for g in groups)
    assert tree_digest(folder) == before  # dupes changes nothing
    for group in groups:
        keep = group["photos"][0]
        assert keep["relation"] == "keep" and group["keep"] == keep["path"]
        pixels = [p["width"] * p["height"] for p in group["photos"]]
        assert pixels[0] == max(pixels)  # the largest picture is kept
        relations = {Path(p["path"]).name: p["relation"] for p in group["photos"]}
        for name, relation in relations.items():
            if name.endswith("-exact.jpg"):  # the same bytes as the corpus photo it copies
                assert relation in ("exact", "keep"), relations


def test_an_hdr_and_its_plain_shot_are_one_scene_not_copies(library, capsys):
    folder, _ = library
    code, out, _ = run_cli(capsys, "dupes", str(folder), *COLOURS, "--json", "-q")
    names = {Path(p["path"]).name for line in out.splitlines() for p in json.loads(line)["photos"]}
    assert not any("hdr" in name for name in names)
    # --similar groups by CLIP alone: at the lowest threshold every photo is of one scene
    code, out, _ = run_cli(capsys, "dupes", str(folder), *COLOURS, "--json", "-q", "--similar", "--min-similarity", "0")
    [group] = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and group["kind"] == "similar" and len(group["photos"]) == len(list(folder.rglob("*.*")))
    assert "similar" in {p["relation"] for p in group["photos"]}
    assert all(p["similarity"] <= 1.0 for p in group["photos"])  # a cosine, the keeper's own included


def test_the_keeper_is_the_largest_then_the_oldest(tmp_path: Path, capsys):
    rng = random.Random(3)
    picture = make_picture("green", (900, 700), rng, shape="circle")
    save_photo(picture, tmp_path / "a-new.jpg")
    save_photo(picture, tmp_path / "b-old.jpg", quality=80)
    save_photo(picture.resize((450, 350)), tmp_path / "c-small-oldest.jpg")
    os.utime(tmp_path / "b-old.jpg", (1_000_000_000, 1_000_000_000))
    os.utime(tmp_path / "c-small-oldest.jpg", (900_000_000, 900_000_000))
    code, out, err = run_cli(capsys, "dupes", str(tmp_path), *COLOURS)
    assert code == 0, err
    assert out.splitlines()[0].endswith("keep " + str(tmp_path / "b-old.jpg"))
    code, out, _ = run_cli(capsys, "dupes", str(tmp_path), *COLOURS, "--paths", "-q")
    assert out.splitlines() == [str(tmp_path / "a-new.jpg"), str(tmp_path / "c-small-oldest.jpg")]


def test_photos_indexed_before_hashes_were_kept_get_them_when_needed(tmp_path: Path, capsys):
    from clipsort import settings
    from clipsort.store.cache import EmbeddingCache

    rng = random.Random(4)
    picture = make_picture("blue", (800, 600), rng, shape="square")
    save_photo(picture, tmp_path / "photos" / "one.jpg")
    save_photo(picture.resize((400, 300)), tmp_path / "photos" / "two.jpg")
    code, _, _ = run_cli(capsys, "index", str(tmp_path / "photos"), *COLOURS, "-q")
    with EmbeddingCache(settings.cache_file(None)) as cache:  # as a cache of schema 2 left them
        cache.db.execute("UPDATE images SET phash=NULL")
    code, out, err = run_cli(capsys, "dupes", str(tmp_path / "photos"), *COLOURS, "--paths")
    assert code == 0 and out.splitlines() == [str(tmp_path / "photos" / "two.jpg")], err
    with EmbeddingCache(settings.cache_file(None)) as cache:
        assert cache.db.execute("SELECT COUNT(*) FROM images WHERE phash IS NULL").fetchone()[0] == 0


def test_dupes_over_nothing_is_a_one_line_error(tmp_path: Path, capsys):
    code, out, err = run_cli(capsys, "dupes", str(tmp_path), *COLOURS)
    assert code == 1 and out == "" and err.strip() == f"error: no photos under {tmp_path}"


def test_the_perceptual_hash_is_imagehashs():
    imagehash = pytest.importorskip("imagehash")
    from clipsort.photos.decode import load_image
    from clipsort.photos.phash import perceptual_hash

    rng = random.Random(9)
    pictures = [make_picture(c, (rng.randint(64, 900), rng.randint(64, 900)), rng) for c in ("red", "blue") * 20]
    if CORPUS.is_dir():
        pictures += [load_image(p, min_side=224) for p in sorted((CORPUS / "jpg").rglob("*.jpg"))[:40]]
    ours = [perceptual_hash(p) & (2**64 - 1) for p in pictures]
    theirs = [int(str(imagehash.phash(p)), 16) for p in pictures]
    agree = [a == b for a, b in zip(ours, theirs, strict=True)]
    close = [bin(a ^ b).count("1") <= 2 for a, b in zip(ours, theirs, strict=True)]  # a median tie may flip a bit
    assert sum(agree) >= 0.95 * len(pictures) and all(close)


def test_the_hash_of_a_turned_picture_is_derived_from_the_hash_alone():
    from clipsort.photos import phash

    near, far = [], []
    for path in corpus_jpegs()[:40]:
        picture = upright(path)
        own = np.array([phash.perceptual_hash(picture)], dtype=np.int64)
        assert phash.turned(own, 4)[0] == own[0] and phash.turned(phash.turned(own, 1), 3)[0] == own[0]
        for turns in (1, 2, 3):
            real = phash.perceptual_hash(picture.rotate(90 * turns, expand=True))
            near.append(phash.distance(int(phash.turned(own, turns)[0]), real))
            far.append(phash.distance(int(own[0]), real))
            found, bits = phash.nearest_turns(np.array([real]), own)
            assert int(found[0]) == turns and int(bits[0]) == near[-1]
    assert np.median(near) <= 6 and max(near) <= 16 < min(far), (sorted(near), sorted(far))


def test_candidates_match_the_pairs_a_full_comparison_finds():
    from clipsort.commands.candidates import hash_pairs, neighbour_pairs
    from clipsort.photos.phash import distance

    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((700, 8)).astype(np.float16)
    vectors /= np.linalg.norm(vectors.astype(np.float32), axis=1, keepdims=True).astype(np.float16)
    first, second, cosine = neighbour_pairs(vectors, 0.9, per_photo=700, block=128)
    full = vectors.astype(np.float32) @ vectors.astype(np.float32).T
    truth = {(i, j) for i, j in itertools.combinations(range(700), 2) if full[i, j] >= 0.9}
    assert set(zip(first.tolist(), second.tolist(), strict=True)) == truth
    np.testing.assert_allclose(cosine, [full[i, j] for i, j in zip(first, second, strict=True)], atol=1e-5)

    hashes = rng.integers(-(2**63), 2**63 - 1, 400, dtype=np.int64)
    for k in range(0, 400, 4):  # near copies: 1-3 bits flipped
        hashes[k + 1] = hashes[k] ^ np.int64(1 << int(rng.integers(0, 60)))
        hashes[k + 2] = hashes[k] ^ np.int64(0b1011 << int(rng.integers(0, 56)))
    first, second = hash_pairs(hashes, np.ones(400, bool))
    found = set(zip(first.tolist(), second.tolist(), strict=True))
    assert len(found) == len(first) and all(i < j for i, j in found)
    near = {(i, j) for i, j in itertools.combinations(range(400), 2) if distance(int(hashes[i]), int(hashes[j])) <= 3}
    assert near <= found


def test_similarities_are_cosines_never_above_one(tmp_path: Path, capsys):
    """Vectors are kept as float16: a photo's own cosine (the keeper's) or an exact copy's came out
    as 1.0002 now and then. Twelve pictures, each with an exact copy."""
    rng = random.Random(12)
    for n in range(12):
        colour = ["red", "green", "blue", "yellow"][n % 4]
        picture = make_picture(colour, (320 + 16 * n, 240), rng)
        save_photo(picture, tmp_path / f"p{n:02d}.jpg")
        shutil.copy2(tmp_path / f"p{n:02d}.jpg", tmp_path / f"p{n:02d}-copy.jpg")
    code, out, err = run_cli(capsys, "dupes", str(tmp_path), *COLOURS, "--json", "-q")
    assert code == 0, err
    groups = [json.loads(line) for line in out.splitlines()]
    assert len(groups) == 12
    assert all(0.0 < p["similarity"] <= 1.0 for group in groups for p in group["photos"])
