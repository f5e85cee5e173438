"""--precision int8: the image encoder quantized by ONNX Runtime, built once, same decisions as fp32."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import COLOUR_MODEL, make_colour_photos

from clipsort import score, settings
from clipsort.errors import ModelError, UsageError
from clipsort.model import load_model, parse_spec, resolve_precision

pytest.importorskip("onnxruntime", reason="the int8 extra is not installed")

COLOURS = ("red", "green", "blue", "yellow", "purple")


def encoders() -> list[Path]:
    return sorted((settings.cache_dir() / "int8").glob("*.onnx"))


def test_int8_agrees_with_fp32_on_the_top_label(tmp_path: Path, colour_model):
    from clipsort.decode import load_image

    int8 = load_model(parse_spec(str(COLOUR_MODEL)), "cpu", "int8")
    assert int8.precision == "int8" and int8.describe().startswith("cpu (int8, ")
    photos = make_colour_photos(tmp_path, list(COLOURS), 40, min_px=64, max_px=400)
    prompts = [f"a photo of a {c}." for c in COLOURS]
    pictures = [load_image(p, int8.min_side) for p in photos]
    tops = []
    for model in (colour_model, int8):
        vectors = model.encode_images(pictures)
        tops.append(score.probabilities(vectors, model.encode_texts(prompts), model.logit_scale).argmax(axis=1))
    assert (tops[0] == tops[1]).all()
    # and they are the right colours, not merely the same mistakes
    expected = [COLOURS.index(photos[p]) for p in photos]
    assert (tops[1] == expected).mean() >= 0.95


def test_the_int8_encoder_is_built_once_and_rebuilt_when_damaged(monkeypatch):
    from clipsort import int8

    steps: list[str] = []
    load_model(parse_spec(str(COLOUR_MODEL)), "cpu", "int8", on_step=steps.append)
    [built] = encoders()
    assert len(steps) == 1 and "building the int8 image encoder" in steps[0]  # the user hears why it waits
    stamp = built.stat().st_mtime_ns

    def no_rebuild(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("rebuilt although it was cached")

    with monkeypatch.context() as patch:
        patch.setattr(int8, "build", no_rebuild)
        load_model(parse_spec(str(COLOUR_MODEL)), "cpu", "int8", on_step=steps.append)
    assert built.stat().st_mtime_ns == stamp and len(steps) == 1

    built.write_bytes(b"not an onnx file")
    with pytest.raises(ModelError, match="rebuilt next run"):
        load_model(parse_spec(str(COLOUR_MODEL)), "cpu", "int8")
    assert not built.exists()
    load_model(parse_spec(str(COLOUR_MODEL)), "cpu", "int8").encode_texts(["a photo of a red."])
    assert encoders() == [built]


def test_int8_without_onnxruntime_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what an absent package looks like to import
    with pytest.raises(UsageError, match=r"pip install 'clipsort\[int8\]'"):
        load_model(parse_spec(str(COLOUR_MODEL)), "cpu", "int8")


def test_int8_is_for_cpus_and_never_chosen_by_auto():
    with pytest.raises(UsageError, match="int8 is for CPUs"):
        resolve_precision("int8", "cuda")
    assert resolve_precision("auto", "cpu") in ("bf16", "fp32")
    # refused before anything loads, since a fully cached run never loads the model
    with pytest.raises(UsageError, match="int8 is for CPUs"):
        settings.resolve_model_choice(device="cuda", precision="int8", config={})


def test_int8_vectors_are_cached_apart_from_float_ones(tmp_path: Path, colour_model):
    """A cache filled in fp32 must not serve an int8 run (their vectors differ), nor the other way round."""
    from clipsort.cache import EmbeddingCache
    from clipsort.embed import Embedder
    from clipsort.pipeline import RunOptions, run_index

    make_colour_photos(tmp_path / "p", ["red", "blue"], 6, min_px=64, max_px=200)
    spec = parse_spec(str(COLOUR_MODEL))
    with EmbeddingCache(tmp_path / "c.sqlite3") as cache:
        for precision, embedded in (("fp32", 6), ("int8", 6), ("fp32", 0), ("int8", 0)):
            report = run_index([tmp_path / "p"], Embedder(spec, "cpu", cache, precision), RunOptions(batch_size=4))
            assert (report.embedded, report.cached) == (embedded, 6 - embedded), precision
