"""The pipeline with the trained tiny model: real decisions, real files, counted work."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from conftest import corpus, make_colour_photos, save_photo
from PIL import Image
from shapes import make_picture

from clipsort.commands.sorting import SortOptions, run_sort
from clipsort.commands.tagging import TagOptions, run_tag
from clipsort.errors import ExitCode, UsageError
from clipsort.labels.label_set import DEFAULT_TEMPLATES, parse_labels
from clipsort.photos.discover import ImageRef
from clipsort.run.events import RunOptions, SilentEvents
from clipsort.run.pipeline import embedded_photos
from clipsort.run.report import Report
from clipsort.writes.sidecar import json_path, xmp_path

SMALL = {"min_px": 200, "max_px": 700}


class Recorder:
    """Events that remember what they were told."""

    def __init__(self) -> None:
        self.results = []
        self.failures = []
        self.total = None
        self.progress = 0

    def discovering(self, count):
        pass

    def started(self, total):
        self.total = total

    def advanced(self, count):
        self.progress += count

    def photo(self, result):
        self.results.append(result)

    def failed(self, failure):
        self.failures.append(failure)

    def warned(self, message):
        pass


def test_tag_writes_the_right_colour_keyword(tmp_path: Path, colour_embedder, rgb_labels):
    photos = make_colour_photos(tmp_path, ["red", "green", "blue"], 12, **SMALL)
    events = Recorder()
    report = run_tag([tmp_path], rgb_labels, colour_embedder, TagOptions(top_k=1), RunOptions(batch_size=5), events)
    assert report.exit_code == ExitCode.OK and report.found == 12 and events.total == 12
    for photo, colour in photos.items():
        text = xmp_path(photo).read_text(encoding="utf-8")
        assert f"<rdf:li>{colour}</rdf:li>" in text and f"clipsort|{colour}" in text, photo
    assert {r.action for r in events.results} == {"tagged"}
    assert all(0.0 <= v <= 1.0 for r in events.results for v in r.scores.values())


def test_every_photo_is_embedded_once_and_bad_files_are_counted(
    tmp_path: Path, colour_model, colour_embedder, rgb_labels
):
    make_colour_photos(tmp_path, ["red", "blue"], 7, **SMALL)
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "notes.png").write_text("hello")
    before = colour_model.images_encoded
    events = Recorder()
    report = run_tag([tmp_path], rgb_labels, colour_embedder, TagOptions(), RunOptions(batch_size=3), events)
    assert colour_model.images_encoded - before == 7
    assert report.actions["tagged"] == 7 and len(report.failures) == 2
    assert (report.embedded, report.cached) == (7, 0)
    assert events.progress == 9  # the progress bar reaches its total
    assert sorted(f.path.name for f in events.failures) == ["notes.png", "zero.jpg"]
    assert report.exit_code == ExitCode.PARTIAL


def test_json_sidecar_and_dry_run(tmp_path: Path, colour_embedder, rgb_labels):
    photos = make_colour_photos(tmp_path, ["green"], 2, **SMALL)
    run_tag([tmp_path], rgb_labels, colour_embedder, TagOptions(sidecar="json", dry_run=True))
    assert not any(json_path(p).exists() for p in photos)
    run_tag([tmp_path], rgb_labels, colour_embedder, TagOptions(sidecar="json"))
    assert all('"green"' in json_path(p).read_text(encoding="utf-8") for p in photos)


def test_sort_moves_by_colour_and_a_second_run_moves_nothing(tmp_path: Path, colour_embedder, rgb_labels):
    inbox, dest = tmp_path / "in", tmp_path / "sorted"
    photos = make_colour_photos(inbox, ["red", "green", "blue"], 9, **SMALL)
    report = run_sort([inbox], rgb_labels, colour_embedder, SortOptions(dest=dest))
    assert report.actions["moved"] == 9
    for photo, colour in photos.items():
        assert (dest / colour / photo.name).is_file()
    assert not any(p.is_file() for p in inbox.rglob("*"))
    before = sorted(p for p in dest.rglob("*"))
    again = run_sort([dest], rgb_labels, colour_embedder, SortOptions(dest=dest))
    assert again.actions == {"in-place": 9}
    assert sorted(p for p in dest.rglob("*")) == before


def test_sort_gives_scores_and_verdicts_to_events_that_read_them_and_the_same_decisions_to_all(
    tmp_path: Path, colour_embedder, rgb_labels
):
    class NotReading(Recorder):
        wants_details = False  # a plain run's progress bar: no scores shown

    make_colour_photos(tmp_path / "in", ["red", "green", "blue"], 6, **SMALL)
    options = SortOptions(dest=tmp_path / "sorted", dry_run=True)
    reading, plain = Recorder(), NotReading()
    run_sort([tmp_path / "in"], rgb_labels, colour_embedder, options, events=reading)
    run_sort([tmp_path / "in"], rgb_labels, colour_embedder, options, events=plain)
    assert len(reading.results) == 6
    for shown, quiet in zip(reading.results, plain.results, strict=True):
        assert set(shown.scores) == {"red", "green", "blue"} and set(shown.explained) == {"red", "green", "blue"}
        assert quiet.scores == {} and quiet.explained == {}
        assert (shown.path, shown.labels, shown.destination) == (quiet.path, quiet.labels, quiet.destination)


def test_sort_in_place_defaults_dest_to_the_folder(tmp_path: Path, colour_embedder, rgb_labels):
    photos = make_colour_photos(tmp_path, ["blue"], 2, **SMALL)
    run_sort([tmp_path], rgb_labels, colour_embedder, SortOptions())
    assert all((tmp_path / "blue" / p.name).is_file() for p in photos)
    with pytest.raises(UsageError, match="--dest"):
        run_sort([tmp_path, tmp_path / "blue"], rgb_labels, colour_embedder, SortOptions())


def test_sort_dry_run_changes_nothing(tmp_path: Path, colour_embedder, rgb_labels):
    photos = make_colour_photos(tmp_path / "in", ["red", "blue"], 4, **SMALL)
    events = Recorder()
    report = run_sort(
        [tmp_path / "in"], rgb_labels, colour_embedder, SortOptions(dest=tmp_path / "out", dry_run=True), events=events
    )
    assert report.dry_run and report.actions["moved"] == 4
    assert all(p.exists() for p in photos) and not (tmp_path / "out").exists()
    assert all(r.dry_run and r.destination.parent.name in ("red", "blue") for r in events.results)


def test_hierarchical_labels_nest_folders_and_sidecars_travel(tmp_path: Path, colour_embedder):
    labels = parse_labels("colours/red\ncolours/blue\n")
    photo = save_photo(make_picture("red", (300, 200), random.Random(3)), tmp_path / "in/p.jpg")
    run_tag([tmp_path / "in"], labels, colour_embedder, TagOptions(top_k=1))
    run_sort([tmp_path / "in"], labels, colour_embedder, SortOptions(dest=tmp_path / "out"))
    moved = tmp_path / "out/colours/red/p.jpg"
    assert moved.is_file() and xmp_path(moved).is_file() and not photo.exists()
    assert "clipsort|colours|red" in xmp_path(moved).read_text(encoding="utf-8")


def _uncertain_labels():
    # 'scarlet' uses exactly the prompts of 'red': every red photo is split 50/50 between them.
    return parse_labels("red\nscarlet: " + " | ".join(t.format("red") for t in DEFAULT_TEMPLATES) + "\nblue\n")


def test_below_threshold_goes_to_unsorted_or_stays(tmp_path: Path, colour_embedder):
    labels = _uncertain_labels()
    photos = make_colour_photos(tmp_path / "in", ["red"], 2, **SMALL)
    report = run_sort(
        [tmp_path / "in"],
        labels,
        colour_embedder,
        SortOptions(dest=tmp_path / "out", threshold=0.6, leave_unsorted=True),
    )
    assert report.actions == {"left": 2} and all(p.exists() for p in photos)
    report = run_sort(
        [tmp_path / "in"], labels, colour_embedder, SortOptions(dest=tmp_path / "out", threshold=0.6, unsorted="misc")
    )
    assert report.actions == {"unsorted": 2}
    assert sorted(p.name for p in (tmp_path / "out/misc").iterdir()) == sorted(p.name for p in photos)
    report = run_sort(
        [tmp_path / "out"], labels, colour_embedder, SortOptions(dest=tmp_path / "out", threshold=0.6, unsorted="misc")
    )
    assert report.actions == {"in-place": 2}


def test_unsorted_name_may_not_be_a_label(tmp_path: Path, colour_embedder):
    with pytest.raises(UsageError, match="also a label"):
        run_sort([tmp_path], parse_labels("red\nMisc\n"), colour_embedder, SortOptions(unsorted="misc"))


def test_corpus_orientation_samples_get_the_same_vectors(tmp_path: Path, colour_embedder):
    # landscape_2..8 store one picture rotated and flipped seven ways, each with the EXIF
    # orientation that undoes it: the pipeline must give them the same vector. (landscape_1,
    # stored upright, was encoded differently: its vector is further off, 0.83; its pixels
    # are compared in test_decode.py.) Ignoring the orientation gives cosines of 0.63-0.93.
    folder = corpus("jpg", "orientation")
    refs = [ImageRef(p, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.glob("landscape_[2-8].jpg"))]
    report = Report("test")
    vectors = [
        v for chunk in embedded_photos(refs, colour_embedder, RunOptions(), report, SilentEvents()) for _, v in chunk
    ]
    assert len(vectors) == 7 and not report.failures
    unit = np.stack(vectors) / np.linalg.norm(np.stack(vectors), axis=1, keepdims=True)
    assert (unit @ unit.T).min() >= 0.95


def test_corpus_corrupted_jpeg_is_tagged(tmp_path: Path, colour_embedder, rgb_labels):
    photo = tmp_path / "corrupted.jpg"
    photo.write_bytes(corpus("jpg", "corrupted.jpg").read_bytes())
    report = run_tag([photo], rgb_labels, colour_embedder, TagOptions())
    # Broken EXIF, intact pixels: decoded and judged (a street photo fits none of red, green, blue).
    assert report.actions["tagged"] + report.actions["untagged"] == 1 and not report.failures
    assert xmp_path(photo).is_file() == (report.actions["tagged"] == 1)


def test_decoding_failure_does_not_stop_the_batch(tmp_path: Path, colour_embedder, rgb_labels):
    Image.new("RGB", (64, 64), "red").save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    Image.new("RGB", (64, 64), "blue").save(tmp_path / "c.png")
    events = Recorder()
    report = run_tag([tmp_path], rgb_labels, colour_embedder, TagOptions(top_k=1), RunOptions(batch_size=2), events)
    assert [r.labels for r in events.results] == [("red",), ("blue",)]
    assert [f.path.name for f in report.failures] == ["b.png"]


def test_batch_size_defaults_to_the_models_choice_for_its_device(
    tmp_path: Path, colour_model, colour_embedder, rgb_labels, monkeypatch
):
    make_colour_photos(tmp_path, ["red", "blue"], 8, min_px=40, max_px=80)
    colour_embedder.unrelated_level()  # the model's calibration (plain pictures) is measured once, first
    sizes: list[int] = []
    encode = colour_model.encode_prepared
    monkeypatch.setattr(colour_model, "batch_size", 3)
    monkeypatch.setattr(colour_model, "encode_prepared", lambda batch: sizes.append(len(batch)) or encode(batch))
    report = run_tag([tmp_path], rgb_labels, colour_embedder, TagOptions(), RunOptions())
    assert report.embedded == 8 and sizes == [3, 3, 2]


def _vectors(embedder, folder: Path, batch_size: int | None = 4) -> dict[Path, list[float]]:
    from clipsort.run.pipeline import embedded_photos, find_photos
    from clipsort.run.report import Report

    class Quiet:
        def __getattr__(self, name):  # noqa: ANN001, ANN204 - every event is ignored
            return lambda *args, **kwargs: None

    report = Report("index")
    refs = find_photos([folder], report, Quiet())
    chunks = embedded_photos(refs, embedder, RunOptions(batch_size=batch_size), report, Quiet())
    return {ref.path: vector.tolist() for chunk in chunks for ref, vector in chunk}


def _count_decodes(monkeypatch):  # noqa: ANN001, ANN202
    """A semaphore released once for every photo decoded from now on."""
    import threading

    import clipsort.model.clip_frames as embed_module

    decoded = threading.Semaphore(0)
    load_image = embed_module.load_image

    def counting_load_image(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        picture = load_image(*args, **kwargs)
        decoded.release()
        return picture

    monkeypatch.setattr(embed_module, "load_image", counting_load_image)
    return decoded


@pytest.mark.parametrize("hint", ["right", "too small"])
def test_photos_are_decoded_while_the_model_loads(tmp_path: Path, colour_model, monkeypatch, hint):
    """The model loads in its own thread; photos decoded meanwhile end up with the very same vectors."""
    import clipsort.model.model_files as model_files
    from clipsort.model.embed import Embedder

    make_colour_photos(tmp_path / "p", ["red", "blue"], 12, min_px=40, max_px=300)
    reference = _vectors(Embedder(colour_model.spec, "cpu", None, loader=lambda *a: colour_model), tmp_path / "p")
    if hint == "too small":  # a config that understates the input size: early photos are decoded again
        monkeypatch.setattr(model_files, "image_size_hint", lambda spec: colour_model.min_side // 3)
    decoded = _count_decodes(monkeypatch)

    def slow_loader(spec, device, precision):  # noqa: ANN001, ANN202
        for _ in range(6):  # the model is "loading" until six photos have been decoded
            assert decoded.acquire(timeout=20), "no photo was decoded while the model loaded"
        return colour_model

    embedder = Embedder(colour_model.spec, "cpu", None, loader=slow_loader)
    vectors = _vectors(embedder, tmp_path / "p")
    assert vectors.keys() == reference.keys()
    for path, vector in vectors.items():
        np.testing.assert_allclose(vector, reference[path], atol=1e-6)


def test_beside_a_gpu_the_decoders_work_on_through_a_long_model_load(tmp_path: Path, colour_model, monkeypatch):
    """On a GPU the model takes seconds to load (torch, CUDA, open_clip) and only then says its
    batch size; meanwhile the decoders must go on in the GPU's batches, not stop after a CPU's
    few (they stopped at 192 photos: six batches of the CPU's 32)."""
    from clipsort.model.embed import Embedder

    make_colour_photos(tmp_path / "p", ["red", "blue"], 600, min_px=16, max_px=24)
    decoded = _count_decodes(monkeypatch)

    def slow_loader(spec, device, precision):  # noqa: ANN001, ANN202
        for count in range(500):  # "loading" until 500 photos have been decoded meanwhile
            assert decoded.acquire(timeout=30), f"decoding stopped after {count} photos while the model loaded"
        return colour_model

    embedder = Embedder(colour_model.spec, "cpu", None, loader=slow_loader)
    embedder.device = "cuda"  # what the run plans its decoding by; the model itself runs on the CPU here
    vectors = _vectors(embedder, tmp_path / "p", batch_size=None)
    assert len(vectors) == 600 and embedder.embedded == 600


def test_a_model_that_fails_to_load_in_the_background_stops_the_run(tmp_path: Path, rgb_labels):
    import json

    from conftest import COLOUR_MODEL

    from clipsort.errors import ModelError
    from clipsort.model.embed import Embedder
    from clipsort.model.model_spec import parse_spec

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text((COLOUR_MODEL / "open_clip_config.json").read_text())
    (folder / "open_clip_model.safetensors").write_bytes(b"not weights")
    make_colour_photos(tmp_path / "p", ["red"], 6, min_px=40, max_px=80)
    embedder = Embedder(parse_spec(str(folder)), "cpu", None, precision="fp32")
    with pytest.raises(ModelError):
        run_tag([tmp_path / "p"], rgb_labels, embedder, TagOptions(), RunOptions(batch_size=2))
    assert json.loads((folder / "open_clip_config.json").read_text())  # untouched


def test_two_photos_never_share_a_stem_sidecar(tmp_path: Path, colour_embedder, rgb_labels):
    """photo.jpg and photo.png would both write photo.xmp with --xmp-name stem."""

    def subjects() -> str:
        text = (tmp_path / "photo.xmp").read_text(encoding="utf-8")
        return "red" if "<rdf:li>red</rdf:li>" in text and "<rdf:li>blue</rdf:li>" not in text else text

    save_photo(make_picture("red", (64, 64), random.Random(1)), tmp_path / "photo.jpg")
    save_photo(make_picture("blue", (64, 64), random.Random(2)), tmp_path / "photo.png")
    options = TagOptions(top_k=1, xmp_name="stem")
    report = run_tag([tmp_path], rgb_labels, colour_embedder, options, RunOptions(batch_size=2))
    assert report.exit_code == ExitCode.PARTIAL
    [failure] = report.failures
    assert failure.path == tmp_path / "photo.png" and "belongs to photo.jpg" in failure.reason
    assert "--xmp-name full" in failure.reason
    assert subjects() == "red"  # photo.jpg's keyword, not overwritten by the blue photo.png
    again = run_tag([tmp_path], rgb_labels, colour_embedder, options, RunOptions(batch_size=2))
    assert [f.path for f in again.failures] == [tmp_path / "photo.png"]
    assert subjects() == "red"


def test_a_run_that_ends_before_its_model_has_loaded_leaves_its_closed_cache_alone(tmp_path: Path, colour_model):
    """The first photo to decode starts loading the model in the background; when every photo
    fails before it is loaded, the run ends and closes its cache: the loading thread must not
    write to it then (it did, once, and crashed the process)."""
    import threading

    from clipsort.model.embed import Embedder
    from clipsort.run.pipeline import run_index
    from clipsort.store.cache import EmbeddingCache

    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a whole jpeg")
    gate = threading.Event()

    def slow_loader(spec, device, precision):
        gate.wait(60)
        return colour_model

    with EmbeddingCache(tmp_path / "c.sqlite3") as cache:
        embedder = Embedder(colour_model.spec, "cpu", cache, "fp32", loader=slow_loader)
        report = run_index([tmp_path / "p"], embedder, RunOptions(workers=1))
        assert len(report.failures) == 1 and embedder.loading
    gate.set()
    embedder._loading.join(60)
    assert embedder._load_error is None and embedder.loaded is colour_model
    with EmbeddingCache(tmp_path / "c.sqlite3") as cache:  # registered when the model is first used
        embedder.cache = cache
        embedder.model()
        assert cache.logit_scale(embedder.cache_model_id()) == pytest.approx(colour_model.logit_scale)


@pytest.mark.parametrize("command", ["tag", "sort"])
def test_photos_are_decoded_while_the_model_loads_before_the_labels_need_it(tmp_path, monkeypatch, command):
    """Issue 28: a model's first run prepares it for seconds. The labels' vectors need it too, and
    asked for first they held the run until it was there; now the first photos are read and decoded
    meanwhile (the first decoded starts the model's loading), the labels embedded after."""
    from conftest import COLOUR_MODEL

    from clipsort.model.embed import Embedder
    from clipsort.model.model_spec import parse_spec

    make_colour_photos(tmp_path / "p", ["red", "blue"], 8, min_px=64, max_px=200)
    decoded: list[Path] = []
    decoded_when_labels_asked: list[int] = []
    decode, text_vectors = Embedder.decode, Embedder.text_vectors

    def counting_decode(self, resolved):  # noqa: ANN001, ANN202
        decoded.append(resolved.ref.path)
        return decode(self, resolved)

    def noting_text_vectors(self, prompts):  # noqa: ANN001, ANN202
        decoded_when_labels_asked.append(len(decoded))
        return text_vectors(self, prompts)

    monkeypatch.setattr(Embedder, "decode", counting_decode)
    monkeypatch.setattr(Embedder, "text_vectors", noting_text_vectors)
    embedder = Embedder(parse_spec(f"local-dir:{COLOUR_MODEL}"), "cpu", cache=None)
    labels = parse_labels("red\nblue\n", "labels.txt")
    if command == "tag":
        report = run_tag([tmp_path / "p"], labels, embedder, TagOptions(dry_run=True))
    else:
        report = run_sort([tmp_path / "p"], labels, embedder, SortOptions(dest=tmp_path / "s", dry_run=True))
    assert decoded_when_labels_asked and decoded_when_labels_asked[0] > 0, decoded_when_labels_asked
    assert len(decoded) == 8 and report.found == 8 and not report.failures
    assert sum(report.per_label.values()) == 8  # every photo judged, with the labels embedded late
