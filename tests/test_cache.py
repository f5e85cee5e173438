"""The embedding cache: reuse, renames, edits, several models, crashes, locks, damaged files."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import COLOUR_MODEL, make_colour_photos, make_picture, write_random_model
from PIL import Image
from terminal import run_in_terminal

import clipsort.model.clip_frames
from clipsort.commands.tagging import TagOptions, run_tag
from clipsort.errors import ExitCode
from clipsort.labels.label_set import parse_labels
from clipsort.model.embed import Embedder
from clipsort.model.loading import load_model
from clipsort.model.model_spec import parse_spec
from clipsort.photos.location import file_fingerprint
from clipsort.run.events import RunOptions
from clipsort.run.pipeline import run_index
from clipsort.store.cache import EmbeddingCache
from clipsort.store.cache_lock import CacheLock

SMALL = {"min_px": 64, "max_px": 160}
CLI = [sys.executable, "-m", "clipsort"]


class Counting:
    """Records every decode and every model load, calling the real ones."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, model=None) -> None:
        self.decoded: list[Path] = []
        self.loads = 0
        self._model = model
        real = clipsort.model.clip_frames.load_image

        def load_image(path, min_side=None):
            self.decoded.append(Path(path))
            return real(path, min_side)

        monkeypatch.setattr(clipsort.model.clip_frames, "load_image", load_image)

    def loader(self, spec, device, precision):
        self.loads += 1
        if self._model is not None and spec == self._model.spec:
            return self._model
        return load_model(spec, device, "fp32")


@pytest.fixture
def counting(monkeypatch, colour_model):
    return Counting(monkeypatch, colour_model)


def embedder(cache: EmbeddingCache, counting: Counting, model: str = str(COLOUR_MODEL)) -> Embedder:
    return Embedder(parse_spec(model), "cpu", cache, loader=counting.loader)


def test_unchanged_photos_are_neither_decoded_nor_embedded_again(tmp_path, counting, colour_model, rgb_labels):
    make_colour_photos(tmp_path / "p", ["red", "green", "blue"], 30, **SMALL)
    with EmbeddingCache(tmp_path / "c.sqlite3") as cache:
        first = run_tag([tmp_path / "p"], rgb_labels, embedder(cache, counting), TagOptions(), RunOptions(batch_size=8))
        assert (first.embedded, first.cached, len(counting.decoded)) == (30, 0, 30)
        counting.decoded.clear()
        encoded_before, loads_before = colour_model.images_encoded, counting.loads
        second = run_tag(
            [tmp_path / "p"], rgb_labels, embedder(cache, counting), TagOptions(), RunOptions(batch_size=8)
        )
    assert (second.embedded, second.cached, second.actions["tagged"]) == (0, 30, 30)
    assert counting.decoded == [] and colour_model.images_encoded == encoded_before
    assert counting.loads == loads_before  # prompts were cached too: the model was not even loaded


def test_new_labels_rescore_without_decoding(tmp_path, counting, colour_model):
    photos = make_colour_photos(tmp_path / "p", ["red", "blue"], 10, **SMALL)
    with EmbeddingCache(tmp_path / "c.sqlite3") as cache:
        run_index([tmp_path / "p"], embedder(cache, counting))
        counting.decoded.clear()
        encoded = colour_model.images_encoded
        labels = parse_labels("blue\nred\nyellow\n")
        report = run_tag([tmp_path / "p"], labels, embedder(cache, counting), TagOptions(top_k=1, sidecar="json"))
    assert report.actions["tagged"] == 10 and counting.decoded == [] and colour_model.images_encoded == encoded
    for photo, colour in photos.items():
        data = json.loads(photo.with_name(photo.name + ".clipsort.json").read_text(encoding="utf-8"))
        assert data["labels"] == [colour] and set(data["scores"]) == {"blue", "red", "yellow"}


def test_renamed_photos_reuse_vectors_and_an_edited_photo_is_embedded_again(tmp_path, counting):
    photos = make_colour_photos(tmp_path / "p", ["red", "green"], 100, **SMALL)
    with EmbeddingCache(tmp_path / "c.sqlite3") as cache:
        run_index([tmp_path / "p"], embedder(cache, counting))
        renamed = []
        for i, photo in enumerate(sorted(photos)):
            target = tmp_path / "p" / "renamed" / f"r{i:03d}{photo.suffix}"
            target.parent.mkdir(exist_ok=True)
            os.rename(photo, target)
            renamed.append(target)
        edited = renamed[7]
        with Image.open(edited) as image:
            picture = image.convert("RGB")
        picture.paste((0, 0, 255), (0, 0, picture.width // 2, picture.height))
        picture.save(edited)
        counting.decoded.clear()
        report = run_index([tmp_path / "p"], embedder(cache, counting))
    assert counting.decoded == [edited]
    assert (report.embedded, report.cached) == (1, 99)


def test_copies_share_a_fingerprint_and_edits_change_it(tmp_path):
    a = tmp_path / "a.jpg"
    Image.new("RGB", (800, 600), "red").save(a, quality=95)
    b = tmp_path / "b.jpg"
    b.write_bytes(a.read_bytes())
    assert file_fingerprint(a) == file_fingerprint(b)
    Image.new("RGB", (800, 600), "blue").save(b, quality=95)
    assert file_fingerprint(a) != file_fingerprint(b)


def test_two_models_keep_separate_vectors(tmp_path, counting):
    make_colour_photos(tmp_path / "p", ["red"], 5, **SMALL)
    other = write_random_model(tmp_path / "random-model")
    with EmbeddingCache(tmp_path / "c.sqlite3") as cache:
        for model in (str(COLOUR_MODEL), str(other)):
            assert run_index([tmp_path / "p"], embedder(cache, counting, model)).embedded == 5
        counting.decoded.clear()
        for model in (str(COLOUR_MODEL), str(other)):
            report = run_index([tmp_path / "p"], embedder(cache, counting, model))
            assert (report.embedded, report.cached) == (0, 5)
        infos = cache.models()
        assert len(infos) == 2 and all(info.images == 5 for info in infos)
        ids = [cache.model_id(info.identity, info.name) for info in infos]
        path = next((tmp_path / "p").rglob("*.*"))
        st = path.stat()
        vectors = [cache.lookup_path(i, path, st.st_size, st.st_mtime_ns) for i in ids]
    assert counting.decoded == []
    assert not np.allclose(vectors[0], vectors[1])


def test_json_output_is_the_same_with_or_without_cached_vectors(tmp_path, labels_file):
    make_colour_photos(tmp_path / "p", ["red", "green", "blue"], 6, **SMALL)
    model = ["--model", str(COLOUR_MODEL)]
    common = ["tag", str(tmp_path / "p"), "-l", str(labels_file), *model, "--json", "--dry-run"]
    outputs = [
        subprocess.run([*CLI, *common, *extra], capture_output=True, text=True, check=True).stdout
        for extra in ([], [], ["--no-cache"])
    ]
    assert outputs[0] == outputs[1] == outputs[2] and len(outputs[0].splitlines()) == 6


def _rows(cache_path: Path) -> int:
    db = sqlite3.connect(f"file:{cache_path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


@pytest.mark.slow
def test_sigkill_mid_run_keeps_what_was_committed(tmp_path):
    make_colour_photos(tmp_path / "p", ["red", "green", "blue"], 240, min_px=600, max_px=1400)
    cache_path = tmp_path / "c.sqlite3"
    args = [*CLI, "index", str(tmp_path / "p"), "--model", str(COLOUR_MODEL), "--cache", str(cache_path)]
    process = subprocess.Popen([*args, "--batch-size", "4", "--workers", "1"], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not cache_path.exists() or _rows(cache_path) < 20):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    committed = _rows(cache_path)
    assert 20 <= committed < 240, "the run was not killed mid-way"
    again = subprocess.run(args, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert f"embedded {240 - committed}, from cache {committed}" in again.stderr
    with EmbeddingCache(cache_path) as cache:
        assert cache.integrity() == "ok" and cache.image_count() == 240


def test_second_run_waits_or_exits_75_while_the_cache_is_in_use(tmp_path, labels_file):
    make_colour_photos(tmp_path / "p", ["red"], 2, **SMALL)
    cache_path = tmp_path / "c.sqlite3"
    args = [*CLI, "index", str(tmp_path / "p"), "--model", str(COLOUR_MODEL), "--cache", str(cache_path)]
    with CacheLock(cache_path):
        busy = subprocess.run([*args, "--no-wait"], capture_output=True, text=True)
        assert busy.returncode == ExitCode.BUSY == 75
        assert f"process {os.getpid()}" in busy.stderr and "--no-wait" in busy.stderr
        waiting = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
        time.sleep(4)
        assert waiting.poll() is None  # still waiting for the lock
    _, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0 and "waiting for it to finish" in err and "indexed 2" in err


def test_concurrent_runs_do_not_corrupt_the_cache(tmp_path):
    make_colour_photos(tmp_path / "p", ["red", "blue"], 40, **SMALL)
    cache_path = tmp_path / "c.sqlite3"
    args = [*CLI, "index", str(tmp_path / "p"), "--model", str(COLOUR_MODEL), "--cache", str(cache_path)]
    runs = [subprocess.Popen(args, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(run.wait(timeout=180), run.stderr.read()) for run in runs]  # type: ignore[union-attr]
    assert [code for code, _ in results] == [0, 0], results
    embedded = sorted(int(err.split("embedded ")[1].split(",")[0]) for _, err in results)
    assert embedded == [0, 40]  # the second waited, then found everything cached
    with EmbeddingCache(cache_path) as cache:
        assert cache.integrity() == "ok" and cache.image_count() == 40


@pytest.mark.parametrize("content", [b"this is not a database at all" * 100, "foreign"])
def test_damaged_or_foreign_cache_is_moved_aside_and_rebuilt(tmp_path, content, counting):
    cache_path = tmp_path / "c.sqlite3"
    if content == "foreign":
        db = sqlite3.connect(cache_path)
        db.execute("CREATE TABLE photos(name TEXT)")
        db.commit()
        db.close()
    else:
        cache_path.write_bytes(content)
    warnings: list[str] = []
    make_colour_photos(tmp_path / "p", ["red"], 2, **SMALL)
    with EmbeddingCache(cache_path, warn=warnings.append) as cache:
        assert run_index([tmp_path / "p"], embedder(cache, counting)).embedded == 2
        assert cache.integrity() == "ok"
    assert len(warnings) == 1 and "moved it to" in warnings[0]
    assert len(list(tmp_path.glob("c.sqlite3.broken-*"))) == 1


def test_cache_commands(tmp_path, labels_file):
    photos = make_colour_photos(tmp_path / "p", ["red"], 4, **SMALL)
    cache_path = tmp_path / "c.sqlite3"
    model = ["--model", str(COLOUR_MODEL)]
    subprocess.run([*CLI, "index", str(tmp_path / "p"), *model, "--cache", str(cache_path), "-q"], check=True)
    info = subprocess.run([*CLI, "cache", "info", "--cache", str(cache_path)], capture_output=True, text=True)
    assert info.returncode == 0 and str(cache_path) in info.stdout and "4 photos" in info.stdout
    for photo in list(photos)[:3]:
        photo.unlink()
    prune = subprocess.run([*CLI, "cache", "prune", "--cache", str(cache_path)], capture_output=True, text=True)
    assert prune.returncode == 0 and "dropped 3" in prune.stderr
    clear = subprocess.run(
        [*CLI, "cache", "clear", "--model", "tiny-colours", "--cache", str(cache_path)], capture_output=True, text=True
    )
    assert clear.returncode == 0 and "1 model" in clear.stderr
    with EmbeddingCache(cache_path) as cache:
        assert cache.image_count() == 0 and cache.models() == []


def test_prune_drops_the_models_left_with_no_photo_and_clear_asks_at_a_terminal(tmp_path):
    photos = make_colour_photos(tmp_path / "p", ["red"], 3, **SMALL)
    cache_path = tmp_path / "c.sqlite3"
    index = [*CLI, "index", str(tmp_path / "p"), "--model", str(COLOUR_MODEL), "--cache", str(cache_path), "-q"]
    subprocess.run(index, check=True)
    with EmbeddingCache(cache_path) as cache:  # a model tried once, that holds prompts but no photo
        empty = cache.model_id("junk-identity", "junk-model")
        cache.put_texts(empty, ["a photo of red"], np.ones((1, 4), dtype=np.float32))
    prune = subprocess.run([*CLI, "cache", "prune", "--cache", str(cache_path)], capture_output=True, text=True)
    assert prune.returncode == 0 and "dropped 1 model(s) with no photo's vector: junk-model" in prune.stderr
    with EmbeddingCache(cache_path) as cache:
        identities = [m.identity for m in cache.models()]
        assert identities != [] and "junk-identity" not in identities
        assert cache.image_count() == 3

    # at a terminal, clear asks; no (the default) keeps everything, yes drops it
    args = ["cache", "clear", "--cache", str(cache_path)]
    kept = run_in_terminal(args, typed=b"\n")
    assert "drop the vectors of 3 photos of 1 model(s)" in kept and "nothing dropped" in kept, kept
    with EmbeddingCache(cache_path) as cache:
        assert cache.image_count() == 3
    dropped = run_in_terminal(args, typed=b"y\n")
    assert "dropped the vectors of 1 model(s)" in dropped, dropped
    with EmbeddingCache(cache_path) as cache:
        assert cache.image_count() == 0

    # the run's photos all gone: prune drops the model too
    subprocess.run(index, check=True)
    for photo in photos:
        photo.unlink()
    prune = subprocess.run([*CLI, "cache", "prune", "--cache", str(cache_path)], capture_output=True, text=True)
    assert "dropped 3 entries" in prune.stderr and "dropped 1 model(s)" in prune.stderr
    with EmbeddingCache(cache_path) as cache:
        assert cache.models() == []


def test_environment_names_the_cache_and_log_appends(tmp_path, labels_file, monkeypatch):
    make_colour_photos(tmp_path / "p", ["red"], 2, **SMALL)
    (tmp_path / "p" / "bad.jpg").write_bytes(b"")
    monkeypatch.setenv("CLIPSORT_CACHE", str(tmp_path / "library.sqlite3"))
    log = tmp_path / "clipsort.log"
    args = [*CLI, "tag", str(tmp_path / "p"), "-l", str(labels_file), "--model", str(COLOUR_MODEL), "--log", str(log)]
    for _ in range(2):
        result = subprocess.run([*args, "--quiet"], capture_output=True, text=True)
        assert result.returncode == 3 and result.stdout == ""
        assert result.stderr.strip() == f"error: {tmp_path / 'p' / 'bad.jpg'}: empty file (0 bytes)"
    assert (tmp_path / "library.sqlite3").is_file()
    lines = log.read_text(encoding="utf-8").splitlines()
    assert sum("start (pid" in line for line in lines) == 2
    assert sum("error: " in line and "bad.jpg" in line for line in lines) == 2
    assert sum("done: tagged 2, failed 1" in line and "(exit 3)" in line for line in lines) == 2


@pytest.mark.slow
def test_memory_does_not_grow_with_the_number_of_photos(tmp_path):
    def peak_rss(count: int) -> int:
        folder = tmp_path / f"n{count}"
        folder.mkdir()
        for i in range(count):
            Image.new("RGB", (24, 24), (i % 256, 40, 90)).save(folder / f"{i:05d}.png")
        script = (
            "import resource, sys\n"
            "from clipsort.cli import main\n"
            "try:\n"
            f"    main(['index', {str(folder)!r}, '--model', {str(COLOUR_MODEL)!r}, '--quiet',"
            f" '--cache', {str(tmp_path / f'c{count}.sqlite3')!r}])\n"
            "except SystemExit as exit:\n"
            "    assert not exit.code, exit.code\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
        )
        return int(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout)

    small, large = peak_rss(400), peak_rss(4000)
    assert large <= small * 1.10, f"peak RSS {small} KiB for 400 photos, {large} KiB for 4000"


def test_fully_cached_run_does_not_import_torch(tmp_path, labels_file):
    make_colour_photos(tmp_path / "p", ["red", "blue"], 3, **SMALL)
    args = ["tag", str(tmp_path / "p"), "-l", str(labels_file), "--model", str(COLOUR_MODEL), "--quiet"]
    subprocess.run([*CLI, *args], check=True)  # fills the cache, images and prompts
    script = (
        "import sys\nfrom clipsort.cli import main\ntry:\n"
        f"    main({args!r})\n"
        "except SystemExit as exit:\n    assert not exit.code, exit.code\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


SCHEMA_1 = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE models(id INTEGER PRIMARY KEY, identity TEXT UNIQUE NOT NULL, name TEXT NOT NULL,
    logit_scale REAL, used_ns INTEGER NOT NULL);
CREATE TABLE images(model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE, path BLOB NOT NULL,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, fingerprint BLOB NOT NULL, vector BLOB NOT NULL,
    PRIMARY KEY(model_id, path)) WITHOUT ROWID;
CREATE INDEX images_by_fingerprint ON images(model_id, fingerprint);
CREATE TABLE texts(model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE, text TEXT NOT NULL,
    vector BLOB NOT NULL, PRIMARY KEY(model_id, text)) WITHOUT ROWID;
"""


def test_a_schema_1_cache_is_migrated_keeping_every_vector_and_shrinks(tmp_path):
    """Schema 1 kept 1 KB vectors in WITHOUT ROWID tables, one overflow page per photo."""
    import sqlite3

    from clipsort.store.cache import EmbeddingCache, to_blob
    from clipsort.store.cache_file import APPLICATION_ID

    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_1)
    db.execute(f"PRAGMA application_id={APPLICATION_ID}")
    db.execute("INSERT INTO meta VALUES('schema_version', '1')")
    db.execute("INSERT INTO models VALUES(1, 'arch|tag|decode-1', 'arch (tag)', 100.0, 1)")
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3000, 512)).astype(np.float16)
    db.executemany(
        "INSERT INTO images VALUES(1, ?, ?, ?, ?, ?)",
        [
            (f"/photos/{i}.jpg".encode(), 1000 + i, 7 + i, i.to_bytes(16, "big"), to_blob(v))
            for i, v in enumerate(vectors)
        ],
    )
    db.execute("INSERT INTO texts VALUES(1, 'a photo of a dog.', ?)", (to_blob(vectors[0]),))
    db.commit()
    db.close()
    before = path.stat().st_size

    with EmbeddingCache(path) as cache:
        assert cache.model_id("arch|tag|decode-1", "arch (tag)") == 1
        assert cache.image_count() == 3000
        for i in (0, 1234, 2999):
            found = cache.lookup_path(1, Path(f"/photos/{i}.jpg"), 1000 + i, 7 + i)
            np.testing.assert_array_equal(found, vectors[i].astype(np.float32))
        known = cache.lookup_fingerprint(1, (5).to_bytes(16, "big"))
        assert known is not None and known[1] is None  # no perceptual hash before schema 3
        np.testing.assert_array_equal(known[0], vectors[5].astype(np.float32))
        assert list(cache.texts(1, ["a photo of a dog."])) == ["a photo of a dog."]
        assert cache.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "3"
        assert cache.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert path.stat().st_size < before / 3


def test_a_schema_2_cache_gains_perceptual_hashes_and_keeps_its_vectors(tmp_path):
    import sqlite3

    from clipsort.photos.location import path_key
    from clipsort.store.cache import EmbeddingCache, to_blob
    from clipsort.store.cache_file import APPLICATION_ID

    path = tmp_path / "v2.sqlite3"
    with EmbeddingCache(path):
        pass
    db = sqlite3.connect(path)  # what a schema 2 file holds: no phash column
    db.execute("ALTER TABLE images DROP COLUMN phash")
    db.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
    db.execute("INSERT INTO models VALUES(1, 'arch|tag|decode-1', 'arch (tag)', 100.0, 1)")
    vector = np.arange(512, dtype=np.float16)
    db.execute(
        "INSERT INTO images(model_id, path, size, mtime_ns, fingerprint, vector) VALUES(1, ?, 10, 20, ?, ?)",
        (b"/photos/a.jpg", b"f" * 16, to_blob(vector)),
    )
    db.commit()
    db.close()
    assert APPLICATION_ID
    with EmbeddingCache(path) as cache:
        np.testing.assert_array_equal(cache.lookup_path(1, Path("/photos/a.jpg"), 10, 20), vector.astype(np.float32))
        [[row]] = [list(chunk) for chunk in cache.scan(1, [Path("/photos")])]
        assert row[0] == path_key("/photos/a.jpg") and row[5] is None
        cache.set_phashes(1, [(row[0], -5)])
        [[row]] = [list(chunk) for chunk in cache.scan(1, [Path("/photos")], columns="path, phash")]
        assert row == (path_key("/photos/a.jpg"), -5)


def test_paths_are_kept_absolute_and_a_folder_scan_takes_its_own_rows_once(tmp_path, monkeypatch):
    from clipsort.photos.location import path_key
    from clipsort.store.cache import EmbeddingCache

    monkeypatch.chdir(tmp_path)
    vector = np.ones(4, dtype=np.float32)
    with EmbeddingCache(tmp_path / "c.sqlite3") as cache:
        model = cache.model_id("m", "m")
        rows = [(Path(name), 1, 2, b"x" * 16, vector, None) for name in ("a/1.jpg", "a/b/2.jpg", "ab/3.jpg", "a.jpg")]
        cache.put_images(model, rows)
        (tmp_path / "elsewhere").mkdir()
        monkeypatch.chdir(tmp_path / "elsewhere")  # another working folder: the absolute names still serve
        assert cache.lookup_path(model, tmp_path / "a" / "1.jpg", 1, 2) is not None
        scanned = [r[0] for chunk in cache.scan(model, [tmp_path / "a", tmp_path / "a" / "b"]) for r in chunk]
        assert sorted(scanned) == sorted([path_key(tmp_path / "a/1.jpg"), path_key(tmp_path / "a/b/2.jpg")])
        assert [r[0] for c in cache.scan(model, [tmp_path / "a.jpg"]) for r in c] == [path_key(tmp_path / "a.jpg")]


def test_many_photos_are_looked_up_at_once_each_by_its_path_size_and_mtime(tmp_path):
    from clipsort.store.cache import LOOKUP_CHUNK

    count = LOOKUP_CHUNK * 2 + 100  # three queries
    with EmbeddingCache(tmp_path / "c.sqlite3") as cache:
        model = cache.model_id("m", "m")
        other = cache.model_id("other", "other")
        paths = [tmp_path / f"{i:04d}.jpg" for i in range(count)]
        vectors = [np.full(4, i, dtype=np.float32) for i in range(count)]
        cache.put_images(
            model, [(p, 100 + i, 7, b"%16d" % i, v, None) for i, (p, v) in enumerate(zip(paths, vectors, strict=True))]
        )
        cache.put_images(other, [(tmp_path / "only-other.jpg", 1, 1, b"o" * 16, vectors[0], None)])
        asked = [(p, 100 + i, 7) for i, p in reversed(list(enumerate(paths)))]
        asked += [
            (paths[3], 103, 8),  # modified since (another mtime)
            (paths[4], 99, 7),  # another size
            (tmp_path / "never.jpg", 1, 1),
            (tmp_path / "only-other.jpg", 1, 1),  # another model's photo
            (paths[5], 105, 7),  # asked twice
        ]
        found = cache.lookup_paths(model, asked)
    assert len(found) == len(asked)
    for (path, _, _), vector in zip(asked[:count], found[:count], strict=True):
        assert vector is not None and vector[0] == float(paths.index(path))
    assert found[count : count + 4] == [None, None, None, None]
    assert found[-1] is not None and found[-1][0] == 5.0


def test_a_rerun_mixing_cached_and_edited_photos_keeps_each_photo_its_own_vector(tmp_path, counting, rgb_labels):
    from clipsort.run.engine_local import LOOKUP_BLOCK

    photos = make_colour_photos(tmp_path / "p", ["red", "green", "blue"], LOOKUP_BLOCK + 60, **SMALL)
    with EmbeddingCache(tmp_path / "c.sqlite3") as cache:
        run_index([tmp_path / "p"], embedder(cache, counting), RunOptions(batch_size=8))
        ordered = sorted(photos)
        edited = {ordered[5]: "blue", ordered[LOOKUP_BLOCK - 1]: "red", ordered[LOOKUP_BLOCK + 30]: "green"}
        for photo, colour in edited.items():  # another picture, another colour
            with Image.open(photo) as image:
                size = image.size
            make_picture(colour, size, random.Random(photo.name)).save(photo)
            photos[photo] = colour
        counting.decoded.clear()
        report = run_tag(
            [tmp_path / "p"],
            rgb_labels,
            embedder(cache, counting),
            TagOptions(top_k=1, sidecar="json"),
            RunOptions(batch_size=8),
        )
    assert sorted(counting.decoded) == sorted(edited)
    assert (report.embedded, report.cached) == (3, len(photos) - 3)
    for photo, colour in photos.items():
        data = json.loads(photo.with_name(photo.name + ".clipsort.json").read_text(encoding="utf-8"))
        assert data["labels"] == [colour], photo
