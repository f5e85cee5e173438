"""``clipsort search``: ranked by description, by example and both, over the cache, as scripts need it."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import COLOUR_MODEL, run_cli, save_photo, write_random_model
from PIL import Image
from shapes import make_picture

SHAPES_MODEL = COLOUR_MODEL.parent / "tiny-shapes"
SHAPES = ["--model", f"local-dir:{SHAPES_MODEL}"]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 red circles among 36 pictures of other colours and shapes, of many sizes, some stored rotated."""
    folder = tmp_path_factory.mktemp("mixed")
    rng = random.Random(21)
    for i in range(12):
        picture = make_picture("red", (rng.randint(200, 900), rng.randint(200, 900)), rng, shape="circle")
        save_photo(picture, folder / f"red-circle-{i:02d}.jpg", orientation=rng.choice([1, 6, 8]))
    others = [("red", "square"), ("red", "triangle"), ("blue", "circle"), ("green", "circle"), ("yellow", "square")]
    for i in range(36):
        colour, shape = others[i % len(others)]
        picture = make_picture(colour, (rng.randint(200, 900), rng.randint(200, 900)), rng, shape=shape)
        save_photo(picture, folder / "other" / f"{colour}-{shape}-{i:02d}.jpg")
    return folder


def test_a_red_circle_query_puts_red_circles_first(mixed: Path, capsys):
    code, out, err = run_cli(capsys, "search", "a red circle", str(mixed), *SHAPES)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 10
    scores = [float(line.split("  ", 1)[0]) for line in lines]
    names = [Path(line.split("  ", 1)[1]).name for line in lines]
    assert scores == sorted(scores, reverse=True)
    assert sum(name.startswith("red-circle") for name in names) >= 9, lines
    assert "embedded 48" in err  # indexed first, with the summary on stderr

    # a second search reads the cache: nothing embedded, the same ranking
    code, again, err = run_cli(capsys, "search", "a red circle", str(mixed), *SHAPES)
    assert code == 0 and again == out and "embedded 0, from cache 48" in err


def test_like_a_photo_finds_it_first_and_its_copies_next(mixed: Path, tmp_path: Path, capsys):
    original = mixed / "red-circle-03.jpg"
    library = tmp_path / "library"
    library.mkdir()
    for photo in mixed.rglob("*.jpg"):
        os.link(photo, library / photo.name)
    with Image.open(original) as image:
        from PIL import ImageOps

        upright = ImageOps.exif_transpose(image).convert("RGB")
    upright.resize((upright.width // 3, upright.height // 3)).save(library / "small copy.jpg", quality=70)
    upright.save(library / "re-encoded copy.jpg", quality=35)
    code, out, err = run_cli(capsys, "search", "--like", str(original), str(library), *SHAPES, "--top", "3", "--paths")
    assert code == 0, err
    first, *rest = out.splitlines()
    assert Path(first).name == original.name
    assert {Path(p).name for p in rest} == {"small copy.jpg", "re-encoded copy.jpg"}


def test_output_for_scripts_json_paths_nul_top_and_min_score(mixed: Path, capsys):
    code, out, _ = run_cli(capsys, "search", "red", str(mixed), *SHAPES, "--json", "--top", "5", "-q")
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["rank"] for r in records] == [1, 2, 3, 4, 5]
    assert all(set(r) == {"rank", "score", "path"} and Path(r["path"]).is_file() for r in records)

    code, out, _ = run_cli(capsys, "search", "red", str(mixed), *SHAPES, "-0", "--top", "3", "-q")
    names = out.split("\0")
    assert code == 0 and names[-1] == "" and [n for n in names[:-1]] == [r["path"] for r in records[:3]]

    code, out, _ = run_cli(capsys, "search", "red", str(mixed), *SHAPES, "--top", "0", "-q")
    assert len(out.splitlines()) == 48  # every photo
    threshold = float(out.splitlines()[5].split()[0]) - 0.00005  # printed rounded to 4 places
    code, out, _ = run_cli(capsys, "search", "red", str(mixed), *SHAPES, "--top", "0", "--min-score", str(threshold))
    assert code == 0 and all(float(line.split()[0]) >= threshold for line in out.splitlines())
    assert 6 <= len(out.splitlines()) < 48
    code, out, err = run_cli(capsys, "search", "red", str(mixed), *SHAPES, "--min-score", "1.5")
    assert code == 0 and out == "" and "no photo scored 1.5 or more" in err


def test_the_default_path_is_the_current_folder(mixed: Path, capsys, monkeypatch):
    monkeypatch.chdir(mixed / "other")
    code, out, _ = run_cli(capsys, "search", "a blue circle", *SHAPES, "--paths", "--top", "0", "-q")
    assert code == 0 and len(out.splitlines()) == 36
    assert all(not Path(line).is_absolute() and Path(line).is_file() for line in out.splitlines())


def test_no_index_searches_the_cache_from_any_folder(mixed: Path, tmp_path: Path, capsys, monkeypatch):
    code, _, _ = run_cli(capsys, "index", str(mixed), *SHAPES, "-q")
    assert code == 0
    monkeypatch.chdir(tmp_path)  # the cache names photos by absolute path: found from elsewhere too
    relative = os.path.relpath(mixed, tmp_path)
    code, out, err = run_cli(capsys, "search", "a red circle", relative, *SHAPES, "--no-index")
    assert code == 0, err
    assert sum(Path(line.split("  ", 1)[1]).name.startswith("red-circle") for line in out.splitlines()) >= 9
    assert all(Path(line.split("  ", 1)[1]).exists() for line in out.splitlines())
    assert "embedded 0" in err


def test_no_index_over_a_cache_of_another_model_says_which(mixed: Path, tmp_path: Path, capsys):
    code, _, _ = run_cli(capsys, "index", str(mixed / "other"), *SHAPES, "-q")
    other = write_random_model(tmp_path / "other-model")
    code, out, err = run_cli(capsys, "search", "red", str(mixed / "other"), "--model", str(other), "--no-index")
    assert code == 1 and out == ""
    assert "no vectors of this model" in err and "tiny-shapes" in err and "--model" in err
    assert len(err.strip().splitlines()) <= 2 and "Traceback" not in err


def test_bad_queries_are_one_line_errors(mixed: Path, tmp_path: Path, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no photos here")
    cases = [
        (["search", "", str(mixed)], 2, "the query is empty"),
        (["search", "   ", str(mixed)], 2, "the query is empty"),
        (["search", "--like", str(broken), str(mixed)], 2, f"--like {broken}: cannot decode"),
        (["search", "--like", str(tmp_path / "gone.jpg"), str(mixed)], 2, "no such photo"),
        (["search", "red:0", str(mixed)], 2, "a weight must be a number above 0"),
        (["search", "--minus", "red", str(mixed)], 2, "nothing to search for"),
        (["search", "red", str(empty)], 1, f"no photos under {empty}"),
        (["search", "red", str(tmp_path / "nowhere")], 2, "no such file or folder"),
    ]
    for args, expected, message in cases:
        code, out, err = run_cli(capsys, *args, *SHAPES)
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert (code, out) == (expected, ""), (args, err)
        assert len(lines) == 1 and message in lines[0], (args, err)
        assert "Traceback" not in err


def test_like_with_only_a_folder_takes_the_folder_as_the_path(mixed: Path, capsys):
    """``search --like photo.jpg FOLDER``: FOLDER is where to search, not a description."""
    code, out, err = run_cli(capsys, "search", "--like", str(mixed / "red-circle-00.jpg"), str(mixed), *SHAPES)
    assert code == 0, err
    assert Path(out.splitlines()[0].split("  ", 1)[1]).name == "red-circle-00.jpg"


def test_weights_and_minus_follow_the_documented_arithmetic(colour_embedder):
    from clipsort.commands.search import parse_query, query_vector, weighted
    from clipsort.labels.label_set import query_prompts
    from clipsort.labels.score import label_embedding, normalise

    assert weighted("beach:2", "q") == ("beach", 2.0)
    assert weighted("ratio 16:9", "q") == ("ratio 16", 9.0)
    assert weighted("time: now", "q") == ("time: now", 1.0)
    assert weighted("red:.5", "q") == ("red", 0.5)
    terms = parse_query("red:2", minus=["blue:0.5"])
    assert [(t.text, t.weight) for t in terms] == [("red", 2.0), ("blue", -0.5)]
    red = label_embedding(colour_embedder.text_vectors(list(query_prompts("red"))))
    blue = label_embedding(colour_embedder.text_vectors(list(query_prompts("blue"))))
    expected = normalise((2 * red - 0.5 * blue)[None, :])[0]
    np.testing.assert_allclose(query_vector(terms, colour_embedder), expected, atol=1e-6)
    raw = query_vector(parse_query("a red thing"), colour_embedder, raw=True)
    np.testing.assert_allclose(raw, normalise(colour_embedder.text_vectors(["a red thing"]))[0], atol=1e-6)
    assert query_prompts("A dog on a beach")[0] == "a photo of a dog on a beach."


def test_ranking_keeps_the_best_over_chunks_of_any_size():
    from clipsort.commands.library import Photos
    from clipsort.commands.search import rank

    rng = np.random.default_rng(4)
    vectors = rng.standard_normal((5000, 16)).astype(np.float16)
    query = rng.standard_normal(16).astype(np.float32)
    query /= np.linalg.norm(query)
    paths = [Path(f"/p/{i:05d}.jpg") for i in range(len(vectors))]

    def chunks(size: int):
        for start in range(0, len(vectors), size):
            keys = [str(p).encode() for p in paths[start : start + size]]
            count = len(keys)
            yield Photos(
                keys,
                vectors[start : start + size],
                np.zeros(count, np.int64),
                np.zeros(count, bool),
                [],
                np.zeros(count, np.int64),
                name=lambda key: Path(key.decode()),
            )

    as_float = vectors.astype(np.float32)
    scores = (as_float @ query) / np.linalg.norm(as_float, axis=1)  # cosines
    best = [paths[i] for i in np.argsort(-scores, kind="stable")[:25]]
    for size in (1, 7, 1000, 5000):
        assert [hit.path for hit in rank(chunks(size), query, top=25)] == best
    assert len(rank(chunks(333), query, top=0)) == 5000
